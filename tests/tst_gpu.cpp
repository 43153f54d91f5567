// The CUDA backend against the CPU reference (label gpu; skips where no CUDA device is usable). The checks and their
// tolerances live in gpu/gpuselfcheck.h, shared with `lathe-cli check-gpu` (the lent GPU machine has no Qt); this
// test runs each as a data row, plus the real-model dequantization where the SmolLM2 GGUF is cached.

#include "base/error.h"
#include "cudabackend.h"
#include "gpuselfcheck.h"
#include "io/modelloader.h"
#include "numeric/backend.h"
#include "numeric/dequantize.h"
#include "testsupport.h"

#include <QTest>

#include <cstring>
#include <filesystem>

using namespace lathe;

class TestGpu : public QObject {
    Q_OBJECT
    std::unique_ptr<ComputeBackend> m_gpu;
    std::vector<gpu::GpuCheck> m_checks;
private slots:
    void initTestCase() {
        gpu::registerCudaBackend();
        try {
            m_gpu = createBackend(DevicePreference::Cuda);
        } catch (const LatheError &e) {
            QSKIP(qPrintable(QString("no CUDA device: ") + e.what()));
        }
        qInfo("GPU: %s", m_gpu->device().name.c_str());
        m_checks = gpu::runGpuSelfChecks(test::sourceDir());
    }
    void selfChecks_data() {
        QTest::addColumn<int>("index");
        for (size_t i = 0; i < m_checks.size(); ++i)
            QTest::newRow(m_checks[i].name.c_str()) << int(i);
    }
    void selfChecks() {
        QFETCH(int, index);
        const gpu::GpuCheck &c = m_checks[size_t(index)];
        qInfo("%s: error %.3g (tolerance %.3g) %s", c.name.c_str(), c.error, c.tolerance, c.detail.c_str());
        QVERIFY2(c.passed, c.detail.c_str());
    }
    void realModelTensors() {
        const std::string path = test::modelCacheDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
        if (!std::filesystem::exists(path))
            QSKIP("SmolLM2 GGUF not in the model cache");
        auto m = openModel(path);
        for (const char *name : {"model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight"}) {
            const TensorInfo *t = m->find(name);
            std::vector<float> cpu(size_t(t->numel())), gpu(size_t(t->numel()));
            dequantizeCpu(t->dtype, t->bytes(), cpu.size(), cpu.data());
            m_gpu->dequantize(t->dtype, t->bytes(), gpu.size(), gpu.data());
            QVERIFY2(std::memcmp(cpu.data(), gpu.data(), cpu.size() * 4) == 0, name);
        }
    }
};

QTEST_GUILESS_MAIN(TestGpu)
#include "tst_gpu.moc"
