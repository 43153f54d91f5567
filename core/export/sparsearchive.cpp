#include "export/sparsearchive.h"

#include <algorithm>

#include "analysis/compressionestimate.h"
#include "base/error.h"
#include "model/layerweights.h"
#include "model/model.h"

#ifdef LATHE_HAVE_HDF5
#include "base/h5util.h"
#endif

#include <cmath>

namespace lathe {

uint64_t compactBytes(const PrunedMatrix &m, const SparsityPattern &p, int bytesPerValue) {
    return compactMatrixBytes(m.rows, m.cols, m.rows * m.cols - m.pruned, p, bytesPerValue);
}

uint64_t archiveMatrixBytes(int64_t rows, int64_t cols, int64_t kept, const SparsityPattern &pattern) {
    const uint64_t values = uint64_t(kept) * sizeof(float), mask = (uint64_t(rows * cols) + 7) / 8;
    if (pattern.isNm())
        return values + uint64_t(kept) * sizeof(uint8_t) + mask;
    return values + uint64_t(kept) * sizeof(int32_t) + uint64_t(rows + 1) * sizeof(int64_t) + mask;
}

PruningResult pruningFromZeros(const Model &model, const std::vector<std::string> &tensors, const SparsityPattern &pattern) {
    PruningResult r;
    r.pattern = pattern;
    int loaded = -1;
    BlockWeights block;
    for (const PruningTarget &t : blockLinears(model)) {
        if (std::find(tensors.begin(), tensors.end(), t.tensor) == tensors.end())
            continue;
        if (t.layer != loaded) {
            block = loadBlockWeights(model, t.layer);
            loaded = t.layer;
        }
        Mat w = (block.*t.member).w;
        std::vector<uint8_t> mask(size_t(w.size()));
        for (int64_t i = 0; i < w.size(); ++i)
            mask[size_t(i)] = w.data()[i] != 0.0f;
        PrunedMatrix m = applyMask(t, w, mask);
        m.weightError = 0;
        r.pruned += m.pruned;
        r.targetEntries += m.rows * m.cols;
        r.matrices.push_back(std::move(m));
    }
    return r;
}

#ifdef LATHE_HAVE_HDF5

using namespace h5;

bool sparseArchiveAvailable() { return true; }

void writeSparseArchive(const std::string &path, const Model &model, const PruningResult &result,
                        const nlohmann::json &attributes) {
    const SparsityPattern &pattern = result.pattern;
    // Upper bound of the file: per matrix its kept values, their indices (CSR: column + row pointers; N:M: one
    // byte each), the mask bits and the label, plus HDF5's per-object overhead.
    uint64_t bound = 4 * kObjectOverheadBound + attributes.dump().size();
    for (const PrunedMatrix &m : result.matrices) {
        uint64_t kept = 0;
        for (uint8_t byte : m.maskBits)
            kept += uint64_t(__builtin_popcount(byte));
        bound += 2 * kObjectOverheadBound + m.label.size() + m.maskBits.size() + kept * (sizeof(float) + sizeof(int32_t)) +
                 uint64_t(m.rows + 1) * sizeof(int64_t);
    }
    writeFileAtomically(path, "check the output folder is writable and has space", bound, [&](H5::H5File &file) {
            H5::Group root = file.openGroup("/");
            writeStringAttr(root, "format", "lathe-sparse");
            writeAttr<int64_t>(root, "version", 1);
            writeStringAttr(root, "pattern", pattern.describe());
            for (const auto &[k, v] : attributes.items())
                writeStringAttr(root, k.c_str(), v.is_string() ? v.get<std::string>() : v.dump());
            H5::Group mats = file.createGroup("/matrices");
            int loaded = -1; // one block in memory at a time (matrices come in block order)
            BlockWeights block;
            for (const PrunedMatrix &m : result.matrices) {
                if (m.layer != loaded) {
                    block = loadBlockWeights(model, m.layer);
                    loaded = m.layer;
                }
                const Mat &w = (block.*m.member).w;
                const std::vector<uint8_t> mask = unpackBits(m.maskBits, m.rows * m.cols);
                H5::Group g = mats.createGroup(m.label);
                writeAttr<int64_t>(g, "rows", m.rows);
                writeAttr<int64_t>(g, "cols", m.cols);
                writeAttr<int64_t>(g, "layer", m.layer);
                std::vector<float> values;
                if (pattern.isNm()) {
                    writeStringAttr(g, "format", "nm");
                    writeAttr<int64_t>(g, "n", pattern.n);
                    writeAttr<int64_t>(g, "m", pattern.m);
                    std::vector<uint8_t> positions;
                    for (int64_t i = 0; i < w.size(); ++i)
                        if (mask[size_t(i)]) {
                            values.push_back(w.data()[i]);
                            positions.push_back(uint8_t((i % m.cols) % pattern.m));
                        }
                    writeVector(g, "positions", positions, predType<uint8_t>());
                } else {
                    writeStringAttr(g, "format", "csr");
                    std::vector<int32_t> col;
                    std::vector<int64_t> rowPtr{0};
                    for (int64_t r = 0; r < m.rows; ++r) {
                        for (int64_t c = 0; c < m.cols; ++c)
                            if (mask[size_t(r * m.cols + c)]) {
                                values.push_back(w(r, c));
                                col.push_back(int32_t(c));
                            }
                        rowPtr.push_back(int64_t(values.size()));
                    }
                    writeVector(g, "col_index", col, predType<int32_t>());
                    writeVector(g, "row_ptr", rowPtr, predType<int64_t>());
                }
                writeVector(g, "values", values, predType<float>());
                writeVector(g, "mask", m.maskBits, predType<uint8_t>());
            }
        });
}

std::vector<float> readSparseMatrix(const std::string &path, const std::string &label, int64_t &rows, int64_t &cols) {
    H5::Exception::dontPrint();
    return LATHE_H5_HINT(path, "the run archive is damaged or was not written by this Lathe", [&] {
        H5::H5File file(path, H5F_ACC_RDONLY);
        H5::Group g = file.openGroup("/matrices/" + label);
        rows = readAttr<int64_t>(g, "rows");
        cols = readAttr<int64_t>(g, "cols");
        const std::vector<float> values = readVector<float>(g.openDataSet("values"), predType<float>());
        const std::vector<uint8_t> bits = readVector<uint8_t>(g.openDataSet("mask"), predType<uint8_t>());
        const std::vector<uint8_t> mask = unpackBits(bits, rows * cols);
        std::vector<float> dense(size_t(rows * cols), 0.0f);
        if (readStringAttr(g, "format") == "csr") {
            const auto col = readVector<int32_t>(g.openDataSet("col_index"), predType<int32_t>());
            const auto ptr = readVector<int64_t>(g.openDataSet("row_ptr"), predType<int64_t>());
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t k = ptr[size_t(r)]; k < ptr[size_t(r + 1)]; ++k)
                    dense[size_t(r * cols + col[size_t(k)])] = values[size_t(k)];
        } else {
            const int64_t m = readAttr<int64_t>(g, "m");
            const auto pos = readVector<uint8_t>(g.openDataSet("positions"), predType<uint8_t>());
            // Each group of M keeps exactly M - N values, stored group by group in row-major order.
            const int64_t n = readAttr<int64_t>(g, "n");
            const int64_t perGroup = m - n, groupsPerRow = cols / m;
            require(perGroup > 0 && int64_t(values.size()) == rows * groupsPerRow * perGroup && pos.size() == values.size(),
                    path, label + ": N:M data has the wrong size");
            for (size_t k = 0; k < values.size(); ++k) {
                const int64_t group = int64_t(k) / perGroup;
                const int64_t r = group / groupsPerRow, c = (group % groupsPerRow) * m + pos[k];
                dense[size_t(r * cols + c)] = values[k];
            }
        }
        return dense;
    }());
}

#else

bool sparseArchiveAvailable() { return false; }

void writeSparseArchive(const std::string &path, const Model &, const PruningResult &, const nlohmann::json &) {
    throw LatheError(path + ": this build has no HDF5 support", "rebuild with LATHE_USE_HDF5=ON");
}

std::vector<float> readSparseMatrix(const std::string &path, const std::string &, int64_t &, int64_t &) {
    throw LatheError(path + ": this build has no HDF5 support", "rebuild with LATHE_USE_HDF5=ON");
}

#endif

} // namespace lathe
