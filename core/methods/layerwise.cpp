#include "methods/layerwise.h"

#include "base/error.h"
#include "engine/calibration.h"
#include "numeric/blas.h"

#include <algorithm>

namespace lathe {

LayerwiseSignals::LayerwiseSignals(Transformer &engine, const CalibrationSet &set, int64_t rowsPerChunk) {
    require(!set.sequences.empty() && set.seqLen > 0, "calibration", "the calibration set is empty");
    const int64_t perChunk = std::max<int64_t>(1, rowsPerChunk / set.seqLen);
    const int64_t n = int64_t(set.sequences.size());
    for (int64_t first = 0; first < n; first += perChunk) {
        const int64_t count = std::min(perChunk, n - first);
        TokenBatch b;
        b.batch = count;
        b.seq = set.seqLen;
        for (int64_t s = 0; s < count; ++s) {
            const auto &seq = set.sequences[size_t(first + s)];
            b.tokens.insert(b.tokens.end(), seq.begin(), seq.end());
        }
        m_chunks.push_back(engine.embed(b));
        m_batches.push_back(std::move(b));
    }
}

int64_t LayerwiseSignals::rows() const {
    int64_t r = 0;
    for (const Mat &c : m_chunks)
        r += c.rows();
    return r;
}

uint64_t LayerwiseSignals::bytes() const {
    uint64_t b = 0;
    for (const Mat &c : m_chunks)
        b += uint64_t(c.size()) * sizeof(float);
    return b;
}

void LayerwiseSignals::runBlock(Transformer &engine, int layer, const BlockHooks *hooks,
                                const ProgressCallback &progress, double from, double to, const std::string &stage) {
    for (int i = 0; i < chunks(); ++i) {
        reportProgress(progress, from + (to - from) * double(i) / double(chunks()),
                       stage + " (" + std::to_string(i + 1) + "/" + std::to_string(chunks()) + ")");
        engine.runBlock(layer, m_chunks[size_t(i)], m_batches[size_t(i)], hooks);
    }
}

int64_t LayerwiseSignals::width() const { return m_chunks.empty() ? 0 : m_chunks.front().cols(); }

SafetensorsBlob LayerwiseSignals::blob() const {
    SafetensorsBlob b;
    b.shape = {rows(), width()};
    b.produce = [this](const SafetensorsBlob::Sink &sink) {
        for (const Mat &c : m_chunks)
            sink(c.data(), size_t(c.size()) * sizeof(float));
    };
    return b;
}

void LayerwiseSignals::load(const float *data, int64_t width) {
    for (Mat &c : m_chunks) {
        Mat x(c.rows(), width);
        std::copy(data, data + x.size(), x.data());
        data += x.size();
        c.swap(x);
    }
}

GramAccumulator::GramAccumulator(int64_t width) : m_width(width), m_h(size_t(width * width), 0.0) {}

void GramAccumulator::add(const Mat &x) {
    assert(x.cols() == m_width);
    // fp64 copies in slabs so the conversion buffer stays small next to the signal.
    const int64_t slab = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, m_width));
    for (int64_t r0 = 0; r0 < x.rows(); r0 += slab) {
        const int64_t rows = std::min(slab, x.rows() - r0);
        m_buffer.resize(size_t(rows * m_width));
        const float *src = x.data() + r0 * m_width;
        std::copy(src, src + rows * m_width, m_buffer.begin());
        dsyrkLowerAtA(m_width, rows, m_buffer.data(), m_h.data());
    }
    m_rows += x.rows();
}

const std::vector<double> &GramAccumulator::finish() {
    // dsyrkLowerAtA fills the lower triangle of the row-major result; mirror it.
    for (int64_t i = 0; i < m_width; ++i)
        for (int64_t j = i + 1; j < m_width; ++j)
            m_h[size_t(i * m_width + j)] = m_h[size_t(j * m_width + i)];
    return m_h;
}

} // namespace lathe
