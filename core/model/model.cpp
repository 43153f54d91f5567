#include "model/model.h"

#include "model/architecture.h"

#include "base/error.h"
#include "base/halfconv.h"
#include "numeric/backend.h"
#include "numeric/dequantize.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace lathe {

const char *sourceFormatName(SourceFormat f) {
    switch (f) {
    case SourceFormat::HfFolder: return "hf-safetensors";
    case SourceFormat::Gguf: return "gguf";
    case SourceFormat::Llama2c: return "llama2c";
    }
    return "?";
}

std::string TensorInfo::shapeString() const {
    std::ostringstream s;
    s << '[';
    for (size_t i = 0; i < shape.size(); ++i)
        s << (i ? ", " : "") << shape[i];
    s << ']';
    return s.str();
}

const TensorInfo *Model::find(const std::string &name) const {
    auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

const TensorInfo *Model::find(TensorRole role, int layer, bool isBias) const {
    for (const auto &t : m_tensors)
        if (t.role == role && t.layer == layer && t.isBias == isBias)
            return &t;
    return nullptr;
}

void Model::addTensor(TensorInfo t) {
    if (m_index.count(t.name))
        throw LatheError(sourcePath + ": tensor '" + t.name + "' appears twice");
    m_index.emplace(t.name, m_tensors.size());
    m_tensors.push_back(std::move(t));
}

namespace {

// Within each head, row 2i+j of the interleaved order is row j*half+i of the rotate-half order (j = 0: the first
// component of rotary pair i, j = 1: the second).
void reorderHeadRows(float *data, int64_t rows, int64_t cols, int heads, bool toRotateHalf) {
    const int64_t headDim = rows / heads;
    const int64_t half = headDim / 2;
    std::vector<float> tmp(static_cast<size_t>(headDim * cols));
    for (int h = 0; h < heads; ++h) {
        float *base = data + int64_t(h) * headDim * cols;
        std::memcpy(tmp.data(), base, tmp.size() * sizeof(float));
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const int64_t interleaved = 2 * i + j, rotateHalf = j * half + i;
                const int64_t to = toRotateHalf ? rotateHalf : interleaved, from = toRotateHalf ? interleaved : rotateHalf;
                std::memcpy(base + to * cols, tmp.data() + from * cols, size_t(cols) * sizeof(float));
            }
    }
}

} // namespace

void ropeUnpermuteRows(float *data, int64_t rows, int64_t cols, int heads) {
    reorderHeadRows(data, rows, cols, heads, true);
}

void ropePermuteRows(float *data, int64_t rows, int64_t cols, int heads) {
    reorderHeadRows(data, rows, cols, heads, false);
}

std::vector<float> Model::loadFloat(const TensorInfo &t) const {
    if (!dtypeInfo(t.dtype).floatConvertible)
        throw LatheError(sourcePath + ": tensor '" + t.name + "' has integer type " + dtypeName(t.dtype) +
                         " and cannot be read as floating point");
    const int64_t n = t.numel();
    std::vector<float> out(static_cast<size_t>(n));
    if (n == 0)
        return out; // an empty tensor (a LoSparse part with no kept rows) has no bytes to read
    if (t.transform == TensorTransform::Transpose) {
        // stored (cols x rows) where the canonical shape is (rows x cols)
        std::vector<float> stored(static_cast<size_t>(n));
        dequantizeCpu(t.dtype, t.bytes(), size_t(n), stored.data());
        const int64_t rows = t.shape[0], cols = n / rows;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                out[size_t(r * cols + c)] = stored[size_t(c * rows + r)];
        return out;
    }
    dequantizeCpu(t.dtype, t.bytes(), size_t(n), out.data());
    if (t.transform == TensorTransform::RopeUnpermute) {
        const int64_t rows = t.shape[0];
        ropeUnpermuteRows(out.data(), rows, n / rows, t.transformHeads);
    }
    return out;
}

std::vector<float> Model::loadFloat(const std::string &name) const {
    const TensorInfo *t = find(name);
    if (!t)
        throw LatheError(sourcePath + ": no tensor named '" + name + "'");
    return loadFloat(*t);
}

std::vector<uint16_t> Model::loadBf16(const TensorInfo &t) const {
    std::vector<uint16_t> out(static_cast<size_t>(t.numel()));
    if (t.dtype == DType::BF16 && t.transform == TensorTransform::None) {
        std::memcpy(out.data(), t.bytes(), out.size() * 2);
        return out;
    }
    const std::vector<float> f = loadFloat(t);
    for (size_t i = 0; i < f.size(); ++i)
        out[i] = floatToBf16(f[i]);
    return out;
}

void Model::setFloat(const std::string &name, std::vector<float> data, std::vector<int64_t> shape) {
    auto it = m_index.find(name);
    if (it == m_index.end())
        throw LatheError(sourcePath + ": no tensor named '" + name + "'");
    TensorInfo &t = m_tensors[it->second];
    std::vector<uint8_t> bytes(data.size() * sizeof(float));
    std::memcpy(bytes.data(), data.data(), bytes.size());
    t.shape = std::move(shape);
    t.dtype = DType::F32;
    t.storage = std::make_shared<OwnedBytes>(std::move(bytes));
    t.offset = 0;
    t.nbytes = t.storage->size();
    t.transform = TensorTransform::None;
    t.transformHeads = 0;
}

void Model::setFloat(TensorRole role, int layer, bool isBias, std::vector<float> data, std::vector<int64_t> shape) {
    if (const TensorInfo *t = find(role, layer, isBias)) {
        setFloat(t->name, std::move(data), std::move(shape));
        return;
    }
    const auto name = ArchitectureAdapter::forFamily(config.family).hfName(role, layer, isBias);
    if (!name)
        throw LatheError(sourcePath + ": a " + familyName(config.family) + " model has no " + roleName(role) + " tensor");
    TensorInfo t;
    t.name = *name;
    t.sourceName = *name;
    t.role = role;
    t.layer = layer;
    t.isBias = isBias;
    t.shape = {0};
    t.storage = std::make_shared<OwnedBytes>(std::vector<uint8_t>());
    addTensor(std::move(t));
    setFloat(*name, std::move(data), std::move(shape));
}

void Model::removeTensor(const std::string &name) {
    auto it = m_index.find(name);
    if (it == m_index.end())
        return;
    m_tensors.erase(m_tensors.begin() + long(it->second));
    m_index.clear();
    for (size_t i = 0; i < m_tensors.size(); ++i)
        m_index.emplace(m_tensors[i].name, i);
}

void Model::roundFloatTensorsTo(DType storage) {
    if (storage == DType::F32)
        return;
    require(storage == DType::F16 || storage == DType::BF16, sourcePath, "rounding is to F16 or BF16 only");
    for (size_t i = 0; i < m_tensors.size(); ++i) {
        const TensorInfo &t = m_tensors[i];
        if (t.role == TensorRole::Buffer || !dtypeInfo(t.dtype).floatConvertible || t.dtype == storage)
            continue;
        std::vector<float> v = loadFloat(t);
        for (float &x : v)
            x = storage == DType::BF16 ? bf16ToFloat(floatToBf16(x)) : f16ToFloat(floatToF16(x));
        setFloat(t.name, std::move(v), t.shape);
    }
}

int64_t Model::parameterCount() const {
    int64_t n = 0;
    for (const auto &t : m_tensors)
        if (t.role != TensorRole::Buffer)
            n += t.numel();
    return n;
}

std::vector<NonFiniteReport> Model::scanNonFinite(ComputeBackend *backend) {
    std::vector<NonFiniteReport> reports;
    std::vector<float> v;
    for (const auto &t : m_tensors) {
        if (!dtypeInfo(t.dtype).floatConvertible)
            continue;
        // Counting needs no canonical layout, so the stored order is read as is.
        v.resize(static_cast<size_t>(t.numel()));
        if (backend)
            backend->dequantize(t.dtype, t.bytes(), v.size(), v.data());
        else
            dequantizeCpu(t.dtype, t.bytes(), v.size(), v.data());
        NonFiniteReport r{t.name, 0, 0};
        for (float x : v) {
            if (std::isnan(x))
                ++r.nanCount;
            else if (std::isinf(x))
                ++r.infCount;
        }
        if (r.nanCount || r.infCount) {
            warnings.push_back("tensor '" + t.name + "' has " + std::to_string(r.nanCount) + " NaN and " +
                               std::to_string(r.infCount) + " Inf values");
            reports.push_back(r);
        }
    }
    return reports;
}

} // namespace lathe
