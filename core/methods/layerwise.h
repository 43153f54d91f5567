#pragma once

#include "base/progress.h"
#include "engine/transformer.h"
#include "io/safetensorsfile.h"
#include "numeric/mat.h"

#include <cstdint>
#include <vector>

namespace lathe {

struct CalibrationSet;

// The calibration signal of a layer-by-layer method (Wanda, SliceGPT): the residual stream of every calibration
// sequence at the current block boundary, held in host memory as chunks of whole sequences (row b*seq + t of a
// chunk is token t of its sequence b). A method runs one block over every chunk, edits the block, and moves on, so
// the model never has to be held twice and errors of earlier layers propagate forward as they will at inference.
class LayerwiseSignals {
public:
    // Embeds every sequence. `rowsPerChunk` bounds the rows run through a block at once (memory of the attention
    // and MLP intermediates); chunks hold at least one sequence.
    LayerwiseSignals(Transformer &engine, const CalibrationSet &set, int64_t rowsPerChunk = 8192);

    int chunks() const { return int(m_chunks.size()); }
    Mat &chunk(int i) { return m_chunks[size_t(i)]; }
    const TokenBatch &batch(int i) const { return m_batches[size_t(i)]; }
    int64_t rows() const;
    uint64_t bytes() const;

    // Runs block `layer` over every chunk in place (hooks see each chunk's signals), checking for cancellation
    // between chunks. `stage` prefixes the progress text; `from`..`to` is the fraction range of this pass.
    void runBlock(Transformer &engine, int layer, const BlockHooks *hooks, const ProgressCallback &progress,
                  double from, double to, const std::string &stage);

    // For layer checkpoints: the signals as one rows x width fp32 blob (streamed from the chunks; valid while the
    // signals are), and the reverse from rows x `width` floats in that order.
    int64_t width() const;
    SafetensorsBlob blob() const;
    void load(const float *data, int64_t width);

private:
    std::vector<Mat> m_chunks;
    std::vector<TokenBatch> m_batches;
};

// Accumulates H = sum x^T x over the rows of fp32 signals in fp64 (SliceGPT's PCA input; the lower triangle is
// filled, then mirrored by finish()).
class GramAccumulator {
public:
    explicit GramAccumulator(int64_t width);
    void add(const Mat &x);
    // The full symmetric matrix (row-major, width x width).
    const std::vector<double> &finish();
    int64_t width() const { return m_width; }
    int64_t rows() const { return m_rows; }

private:
    int64_t m_width;
    int64_t m_rows = 0;
    std::vector<double> m_h;
    std::vector<double> m_buffer;
};

} // namespace lathe
