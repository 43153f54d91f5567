// SliceGPT's engine on a CUDA device (core/methods/slicegptengine.h); the algorithm itself is core's slicegpt.cpp.
//
// The calibration signals stay in one fp32 buffer of rows x hiddenSize (the widest the stream gets) for the whole
// run, holding the rows of every sequence at the current width w, packed (row r at r * w): in GPU memory when they
// fit, else in page-locked host memory, streamed chunk by chunk (slower: every pass crosses PCIe twice). Passes go
// chunk by chunk (whole sequences): a chunk is copied into the block runner, run in the compute precision, its
// fp64 Gram matrix added by DSYRK, and written back at the pass's output width. A pass widens the stream
// (w -> hiddenSize) and walks the chunks last to first; a projection narrows it (w -> d) and walks them first to
// last, so that in-place writes never overwrite rows not yet read. Weight rotations are fp64 DGEMMs.

#include "blockrunner.cuh"
#include "cudaslicegpt.h"
#include "gpucontext.h"

#include "engine/calibration.h"
#include "methods/slicegptengine.h"

#include <spdlog/spdlog.h>

#include <memory>
#include <vector>

namespace lathe::gpu {

namespace {

__global__ void toFloatKernel(const double *in, int64_t n, float *out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = float(in[i]);
}

template <typename T> class CudaSliceGptEngine final : public SliceGptEngine {
public:
    CudaSliceGptEngine(GpuContext &ctx, const Model &model, const CalibrationSet &set,
                       const SliceGptEngineOptions &options)
        : m_precision(options.precision) {
        const ModelConfig &c = model.config;
        require(!set.sequences.empty() && set.seqLen > 0, "calibration", "the calibration set is empty");
        ctx.activate();
        m_props = ctx.properties();
        m_cublas = ctx.blas(); // the thread's handle of the device's context (pedantic fp32 math mode)
        m_run = std::make_unique<BlockRunner<T>>(model, m_cublas, 0);
        m_D = c.hiddenSize;
        m_seq = set.seqLen;
        m_sequences = int64_t(set.sequences.size());
        m_rows = m_sequences * m_seq;
        m_chunkSequences = std::max<int64_t>(1, options.rowsPerChunk / m_seq);

        // Everything held for the run, checked against free memory before any allocation of size.
        const int64_t chunkRows = m_chunkSequences * m_seq;
        const size_t signalBytes = size_t(m_rows * m_D) * sizeof(float);
        const size_t work = m_run->activationBytes(chunkRows, m_seq) + size_t(chunkRows * m_D) * sizeof(double) +
                            size_t(m_D * m_D) * sizeof(double) + 2 * size_t(m_run->blockWeights().largest) +
                            (size_t(1) << 30);
        size_t freeBytes = 0, totalBytes = 0;
        LATHE_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
        if (work > freeBytes)
            throw LatheError("SliceGPT on the GPU needs " + std::to_string(work >> 20) + " MiB of work buffers, but " +
                                 std::string(m_props.name) + " has " + std::to_string(freeBytes >> 20) + " MiB free",
                             "use shorter calibration sequences, or run SliceGPT on the CPU (device cpu)");
        if (options.hostSignals || signalBytes + work > freeBytes) {
            spdlog::info("SliceGPT: {} MiB of signals held in host memory (GPU: {} MiB free)", signalBytes >> 20,
                         freeBytes >> 20);
            m_signals.resizePinned(signalBytes);
            m_stage.resize(size_t(chunkRows * m_D) * sizeof(float));
        } else {
            m_signals.resize(signalBytes);
        }
        m_width = m_D;

        // Embed every sequence: the fused embedding (and learned positions) of the model as it is now.
        const EmbeddingWeights e = loadEmbeddingWeights(model);
        DeviceMemory token(size_t(e.token.size()) * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(token.as(), e.token.data(), token.bytes(), cudaMemcpyHostToDevice));
        DeviceMemory position;
        if (e.position.size()) {
            position.resize(size_t(e.position.size()) * sizeof(float));
            LATHE_CUDA_CHECK(cudaMemcpy(position.as(), e.position.data(), position.bytes(), cudaMemcpyHostToDevice));
        }
        std::vector<int32_t> ids;
        ids.reserve(size_t(m_rows));
        for (const auto &s : set.sequences) {
            for (int32_t id : s)
                require(id >= 0 && id < e.token.rows(), "calibration", "token id " + std::to_string(id) +
                                                                         " is outside the vocabulary");
            ids.insert(ids.end(), s.begin(), s.end());
        }
        m_ids.resize(ids.size() * sizeof(int32_t));
        LATHE_CUDA_CHECK(cudaMemcpy(m_ids.as(), ids.data(), m_ids.bytes(), cudaMemcpyHostToDevice));
        for (int64_t s0 = 0; s0 < m_sequences; s0 += m_chunkSequences) {
            const int64_t r0 = s0 * m_seq, rows = std::min(m_chunkSequences, m_sequences - s0) * m_seq;
            float *dst = m_signals.pinnedHost() ? m_stage.as<float>() : m_signals.as<float>() + r0 * m_D;
            embedKernel<<<unsigned(rows), kRowThreads>>>(m_ids.as<int32_t>() + r0, token.as<float>(),
                                                          position.empty() ? nullptr : position.as<float>(), m_seq,
                                                          c.family == ArchFamily::Opt ? 2 : 0, m_D, dst);
            LATHE_CUDA_CHECK(cudaGetLastError());
            if (m_signals.pinnedHost())
                store(dst, r0, rows, m_D);
        }
        LATHE_CUDA_CHECK(cudaDeviceSynchronize());
    }

    ~CudaSliceGptEngine() override {
        m_block.reset();
        m_run.reset();
    }

    std::string describe() const override {
        return std::string(m_props.name) + ", blocks in " + precisionName(m_precision);
    }
    int64_t signalRows() const override { return m_rows; }
    uint64_t signalBytes() const override { return uint64_t(m_rows) * uint64_t(m_D) * sizeof(float); }

    std::vector<double> signalGram() override {
        startGram(m_width);
        for (int64_t s0 = 0; s0 < m_sequences; s0 += m_chunkSequences) {
            const int64_t rows = std::min(m_chunkSequences, m_sequences - s0) * m_seq;
            addGram(chunk(s0 * m_seq, rows, m_width), rows, m_width);
        }
        return finishGram(m_width);
    }

    void projectSignals(const MatD &qd) override {
        require(qd.rows() == m_width && qd.cols() <= m_width, "SliceGPT", "projection of the wrong shape");
        const int64_t d = qd.cols();
        const Mat qf = qd.cast<float>();
        DeviceMemory q(size_t(qf.size()) * sizeof(float));
        LATHE_CUDA_CHECK(cudaMemcpy(q.as(), qf.data(), q.bytes(), cudaMemcpyHostToDevice));
        const int64_t chunkRows = m_chunkSequences * m_seq;
        m_out.ensure(size_t(chunkRows * d) * sizeof(float));
        const float one = 1.0f, zero = 0.0f;
        // Narrowing: first chunk to last, each written at its new (packed) place.
        for (int64_t s0 = 0; s0 < m_sequences; s0 += m_chunkSequences) {
            const int64_t r0 = s0 * m_seq, rows = std::min(m_chunkSequences, m_sequences - s0) * m_seq;
            // Row-major y (rows x d) = x (rows x w) Q (w x d): column-major y^T = Q^T x^T.
            LATHE_CUDA_CHECK(cublasSgemm(m_cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(d), int(rows), int(m_width), &one,
                                         q.as<float>(), int(d), chunk(r0, rows, m_width), int(m_width), &zero,
                                         m_out.as<float>(), int(d)));
            store(m_out.as<float>(), r0, rows, d);
        }
        m_width = d;
        LATHE_CUDA_CHECK(cudaDeviceSynchronize());
    }

    void setBlock(int layer, const BlockWeights &w) override {
        m_block.reset();
        m_block = std::make_unique<DeviceBlock>(m_run->uploadBlock(w));
        m_blockLayer = layer;
    }

    std::vector<double> runBlock(int layer, BlockPart part, const ProgressCallback &progress, double from, double to,
                                 const std::string &stage) override {
        require(m_block && m_blockLayer == layer, "SliceGPT", "block " + std::to_string(layer) + " was not set");
        const DeviceBlock &w = *m_block;
        const int64_t inWidth = part == BlockPart::Mlp ? w.up.in : w.q.in;
        require(inWidth == m_width, "SliceGPT", "the block reads a different width than the signals have");
        const int64_t outWidth = part == BlockPart::Attention ? w.o.out : w.down.out;
        require(outWidth >= m_width, "SliceGPT", "a block pass may only widen the stream");
        startGram(outWidth);
        // Widening in place: last chunk to first (see the file comment).
        std::vector<int64_t> starts;
        for (int64_t s0 = 0; s0 < m_sequences; s0 += m_chunkSequences)
            starts.push_back(s0);
        std::reverse(starts.begin(), starts.end());
        for (size_t i = 0; i < starts.size(); ++i) {
            reportProgress(progress, from + (to - from) * double(i) / double(starts.size()), stage);
            const int64_t s0 = starts[i], batches = std::min(m_chunkSequences, m_sequences - s0);
            const int64_t r0 = s0 * m_seq, rows = batches * m_seq;
            m_run->ensureBuffers(rows, m_seq);
            float *hidden = m_run->hidden(), *scratch = m_run->hiddenScratch();
            LATHE_CUDA_CHECK(cudaMemcpyAsync(hidden, m_signals.as<float>() + r0 * m_width,
                                             size_t(rows * m_width) * sizeof(float), cudaMemcpyDefault));
            m_run->runBlock(w, hidden, scratch, batches, m_seq, part);
            addGram(hidden, rows, outWidth);
            store(hidden, r0, rows, outWidth);
        }
        m_width = outWidth;
        return finishGram(outWidth);
    }

    // W (out x in) <- W Q_d: column-major (d x out) = Q^T-view x W^T-view, one DGEMM.
    void rotateInput(Mat &w, const MatD &qd) override {
        if (!w.size())
            return;
        require(w.cols() == qd.rows(), "SliceGPT", "rotation of the wrong shape");
        const int64_t out = w.rows(), in = w.cols(), d = qd.cols();
        DeviceMemory dw = toDeviceDouble(w.data(), size_t(w.size())), dq = toDevice(qd.data(), size_t(qd.size()));
        DeviceMemory dc(size_t(out * d) * sizeof(double));
        const double one = 1.0, zero = 0.0;
        LATHE_CUDA_CHECK(cublasDgemm(m_cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(d), int(out), int(in), &one,
                                     dq.as<double>(), int(d), dw.as<double>(), int(in), &zero, dc.as<double>(), int(d)));
        w.resize(out, d);
        fromDeviceDouble(dc, w.data(), size_t(w.size()));
    }

    // W (D x in) <- Q_d^T W: column-major (in x d) = W^T-view x Q-view; the bias on the host (a matrix-vector).
    void rotateOutput(LinearWeights &l, const MatD &qd) override {
        if (!l.present())
            return;
        require(l.w.rows() == qd.rows(), "SliceGPT", "rotation of the wrong shape");
        const int64_t D = l.w.rows(), in = l.w.cols(), d = qd.cols();
        DeviceMemory dw = toDeviceDouble(l.w.data(), size_t(l.w.size())), dq = toDevice(qd.data(), size_t(qd.size()));
        DeviceMemory dc(size_t(d * in) * sizeof(double));
        const double one = 1.0, zero = 0.0;
        LATHE_CUDA_CHECK(cublasDgemm(m_cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(in), int(d), int(D), &one, dw.as<double>(),
                                     int(in), dq.as<double>(), int(d), &zero, dc.as<double>(), int(in)));
        l.w.resize(d, in);
        fromDeviceDouble(dc, l.w.data(), size_t(l.w.size()));
        if (l.hasBias())
            l.b = (qd.transpose() * l.b.cast<double>()).cast<float>();
    }

    // Row-major C (p x q) = a^T (p x n) b (n x q): column-major C^T = b^T-view x a-view^T.
    MatD transposedProduct(const MatD &a, const MatD &b) override {
        require(a.rows() == b.rows(), "SliceGPT", "product of the wrong shapes");
        const int64_t n = a.rows(), p = a.cols(), q = b.cols();
        DeviceMemory da = toDevice(a.data(), size_t(a.size())), db = toDevice(b.data(), size_t(b.size()));
        DeviceMemory dc(size_t(p * q) * sizeof(double));
        const double one = 1.0, zero = 0.0;
        LATHE_CUDA_CHECK(cublasDgemm(m_cublas, CUBLAS_OP_N, CUBLAS_OP_T, int(q), int(p), int(n), &one, db.as<double>(),
                                     int(q), da.as<double>(), int(p), &zero, dc.as<double>(), int(q)));
        MatD c(p, q);
        LATHE_CUDA_CHECK(cudaMemcpy(c.data(), dc.as(), dc.bytes(), cudaMemcpyDeviceToHost));
        return c;
    }

    int64_t signalWidth() const override { return m_width; }

    // The packed signals piece by piece: straight from page-locked host memory, or through a host buffer of one
    // chunk when they are on the device.
    SafetensorsBlob signalBlob() override {
        SafetensorsBlob b;
        b.shape = {m_rows, m_width};
        b.produce = [this](const SafetensorsBlob::Sink &sink) {
            LATHE_CUDA_CHECK(cudaDeviceSynchronize());
            const int64_t chunkRows = m_chunkSequences * m_seq;
            std::vector<float> host;
            for (int64_t r0 = 0; r0 < m_rows; r0 += chunkRows) {
                const size_t n = size_t(std::min(chunkRows, m_rows - r0) * m_width);
                const float *src = m_signals.as<float>() + r0 * m_width;
                if (!m_signals.pinnedHost()) {
                    host.resize(n);
                    LATHE_CUDA_CHECK(cudaMemcpy(host.data(), src, n * sizeof(float), cudaMemcpyDeviceToHost));
                    src = host.data();
                }
                sink(src, n * sizeof(float));
            }
        };
        return b;
    }

    void loadSignals(const float *data, int64_t width) override {
        require(width > 0 && width <= m_D, "SliceGPT", "signals of the wrong width");
        LATHE_CUDA_CHECK(cudaMemcpy(m_signals.as(), data, size_t(m_rows * width) * sizeof(float), cudaMemcpyDefault));
        m_width = width;
    }

private:
    // Rows [r0, r0 + rows) of the signals at `width`, on the device: in place, or copied into the staging buffer
    // when the signals are in host memory.
    const float *chunk(int64_t r0, int64_t rows, int64_t width) {
        const float *src = m_signals.as<float>() + r0 * width;
        if (!m_signals.pinnedHost())
            return src;
        LATHE_CUDA_CHECK(cudaMemcpyAsync(m_stage.as(), src, size_t(rows * width) * sizeof(float), cudaMemcpyDefault));
        return m_stage.as<float>();
    }
    // Device rows -> the signals at rows [r0, r0 + rows), `width` wide (packed), wherever they are held; ordered on
    // the default stream with the kernels around it.
    void store(const float *src, int64_t r0, int64_t rows, int64_t width) {
        LATHE_CUDA_CHECK(cudaMemcpyAsync(m_signals.as<float>() + r0 * width, src, size_t(rows * width) * sizeof(float),
                                         cudaMemcpyDefault));
    }

    DeviceMemory toDevice(const double *host, size_t n) {
        DeviceMemory d(n * sizeof(double));
        LATHE_CUDA_CHECK(cudaMemcpy(d.as(), host, d.bytes(), cudaMemcpyHostToDevice));
        return d;
    }
    // fp32 host -> fp64 device (converted on the device: half the transfer).
    DeviceMemory toDeviceDouble(const float *host, size_t n) {
        DeviceMemory f(n * sizeof(float)), d(n * sizeof(double));
        LATHE_CUDA_CHECK(cudaMemcpy(f.as(), host, f.bytes(), cudaMemcpyHostToDevice));
        convertKernel<double><<<gridFor(int64_t(n)), 256>>>(f.as<float>(), int64_t(n), d.as<double>());
        LATHE_CUDA_CHECK(cudaGetLastError());
        return d;
    }
    void fromDeviceDouble(const DeviceMemory &d, float *host, size_t n) {
        DeviceMemory f(n * sizeof(float));
        toFloatKernel<<<gridFor(int64_t(n)), 256>>>(d.as<double>(), int64_t(n), f.as<float>());
        LATHE_CUDA_CHECK(cudaGetLastError());
        LATHE_CUDA_CHECK(cudaMemcpy(host, f.as(), n * sizeof(float), cudaMemcpyDeviceToHost));
    }

    void startGram(int64_t width) {
        m_gram.ensure(size_t(width * width) * sizeof(double));
        LATHE_CUDA_CHECK(cudaMemset(m_gram.as(), 0, size_t(width * width) * sizeof(double)));
    }
    // H += x^T x for row-major x (rows x width) in fp32: converted to fp64, then DSYRK. Row-major x is the
    // column-major (width x rows) x^T =: A, and A A^T = x^T x; the column-major lower triangle is filled.
    void addGram(const float *x, int64_t rows, int64_t width) {
        m_f64.ensure(size_t(rows * width) * sizeof(double));
        convertKernel<double><<<gridFor(rows * width), 256>>>(x, rows * width, m_f64.as<double>());
        LATHE_CUDA_CHECK(cudaGetLastError());
        const double one = 1.0;
        LATHE_CUDA_CHECK(cublasDsyrk(m_cublas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(width), int(rows), &one,
                                     m_f64.as<double>(), int(width), &one, m_gram.as<double>(), int(width)));
    }
    // The full symmetric matrix, row-major: the column-major lower triangle is the row-major upper one; mirror it.
    std::vector<double> finishGram(int64_t width) {
        std::vector<double> h(size_t(width * width));
        LATHE_CUDA_CHECK(cudaMemcpy(h.data(), m_gram.as(), h.size() * sizeof(double), cudaMemcpyDeviceToHost));
        for (int64_t i = 0; i < width; ++i)
            for (int64_t j = i + 1; j < width; ++j)
                h[size_t(j * width + i)] = h[size_t(i * width + j)];
        return h;
    }

    ComputePrecision m_precision;
    cudaDeviceProp m_props{};
    cublasHandle_t m_cublas = nullptr;
    std::unique_ptr<BlockRunner<T>> m_run;
    std::unique_ptr<DeviceBlock> m_block;
    int m_blockLayer = -1;
    int64_t m_D = 0, m_seq = 0, m_sequences = 0, m_rows = 0, m_chunkSequences = 1, m_width = 0;
    DeviceMemory m_signals, m_stage, m_ids, m_out, m_gram, m_f64;
};

} // namespace

std::unique_ptr<SliceGptEngine> makeCudaSliceGptEngine(GpuContext &ctx, const Model &model, const CalibrationSet &set,
                                                       const SliceGptEngineOptions &options) {
    switch (options.precision) {
    case ComputePrecision::Fp32: return std::make_unique<CudaSliceGptEngine<float>>(ctx, model, set, options);
    case ComputePrecision::Bf16: return std::make_unique<CudaSliceGptEngine<__nv_bfloat16>>(ctx, model, set, options);
    case ComputePrecision::Fp16: return std::make_unique<CudaSliceGptEngine<__half>>(ctx, model, set, options);
    }
    return nullptr;
}

} // namespace lathe::gpu
