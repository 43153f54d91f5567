#include "methods/slicegptengine.h"

#include "base/error.h"
#include "engine/transformer.h"
#include "methods/layerwise.h"
#include "model/model.h"
#include "numeric/backend.h"
#include "numeric/blas.h"

namespace lathe {

namespace {

// The CPU engine: signals in host memory (LayerwiseSignals), blocks by the CPU Transformer, Gram matrices by dsyrk,
// rotations in Eigen fp64.
class CpuSliceGptEngine final : public SliceGptEngine {
public:
    CpuSliceGptEngine(const Model &model, const CalibrationSet &calibration, const SliceGptEngineOptions &options)
        : m_engine(model), m_signals(m_engine, calibration, options.rowsPerChunk), m_width(model.config.hiddenSize) {}

    std::string describe() const override { return "CPU"; }
    int64_t signalRows() const override { return m_signals.rows(); }
    uint64_t signalBytes() const override { return m_signals.bytes(); }

    std::vector<double> signalGram() override {
        GramAccumulator acc(m_width);
        for (int i = 0; i < m_signals.chunks(); ++i)
            acc.add(m_signals.chunk(i));
        return acc.finish();
    }

    void projectSignals(const MatD &qd) override {
        const Mat qf = qd.cast<float>();
        for (int i = 0; i < m_signals.chunks(); ++i) {
            Mat &x = m_signals.chunk(i);
            Mat y(x.rows(), qf.cols());
            sgemm(false, false, x.rows(), qf.cols(), x.cols(), 1.0f, x.data(), x.cols(), qf.data(), qf.cols(), 0.0f,
                  y.data(), y.cols());
            x.swap(y);
        }
    }

    void setBlock(int layer, const BlockWeights &w) override { m_engine.setBlock(layer, w); }

    std::vector<double> runBlock(int layer, BlockPart part, const ProgressCallback &progress, double from, double to,
                                 const std::string &stage) override {
        GramAccumulator acc(m_width);
        for (int i = 0; i < m_signals.chunks(); ++i) {
            reportProgress(progress, from + (to - from) * double(i) / double(m_signals.chunks()), stage);
            m_engine.runBlock(layer, m_signals.chunk(i), m_signals.batch(i), nullptr, part);
            acc.add(m_signals.chunk(i));
        }
        if (part != BlockPart::Attention)
            m_engine.releaseBlock(layer);
        return acc.finish();
    }

    void rotateInput(Mat &w, const MatD &qd) override {
        if (w.size())
            w = (w.cast<double>() * qd).cast<float>();
    }
    void rotateOutput(LinearWeights &l, const MatD &qd) override {
        if (!l.present())
            return;
        l.w = (qd.transpose() * l.w.cast<double>()).cast<float>();
        if (l.hasBias())
            l.b = (qd.transpose() * l.b.cast<double>()).cast<float>();
    }

    MatD transposedProduct(const MatD &a, const MatD &b) override { return a.transpose() * b; }

    int64_t signalWidth() const override { return m_signals.width(); }
    SafetensorsBlob signalBlob() override { return m_signals.blob(); }
    void loadSignals(const float *data, int64_t width) override { m_signals.load(data, width); }

private:
    Transformer m_engine;
    LayerwiseSignals m_signals;
    int64_t m_width;
};

} // namespace

std::unique_ptr<SliceGptEngine> makeCpuSliceGptEngine(const Model &model, const CalibrationSet &calibration,
                                                      const SliceGptEngineOptions &options) {
    return std::make_unique<CpuSliceGptEngine>(model, calibration, options);
}

std::unique_ptr<SliceGptEngine> makeDeviceSliceGptEngine(ComputeBackend &device, const Model &model,
                                                         const CalibrationSet &calibration,
                                                         const SliceGptEngineOptions &options) {
    SliceGptEngineService *service = deviceService<SliceGptEngineService>(device);
    if (!service)
        throw LatheError("SliceGPT's engine cannot run on " + device.device().name + " as a device engine",
                         "use the CPU (device cpu), or a build with the CUDA toolkit and a GPU");
    return service->create(model, calibration, options);
}

} // namespace lathe
