// CUDA backend against the CPU reference (label gpu; skips where no CUDA device is usable). Tolerance: exact —
// both run the same block functions (core/quantblocks.h) in fp32, with no reassociation.

#include "backend.h"
#include "error.h"
#include "cudabackend.h"
#include "dequantize.h"
#include "ggufparser.h"
#include "mappedfile.h"
#include "modelloader.h"
#include "testsupport.h"

#include <QTest>

#include <cstring>
#include <filesystem>

using namespace lathe;

class TestGpu : public QObject {
    Q_OBJECT
    std::unique_ptr<ComputeBackend> m_gpu;
private slots:
    void initTestCase() {
        gpu::registerCudaBackend();
        std::string why;
        try {
            m_gpu = createBackend(DevicePreference::Cuda, &why);
        } catch (const LatheError &e) {
            QSKIP(qPrintable(QString("no CUDA device: ") + e.what()));
        }
        qInfo("GPU: %s", m_gpu->device().name.c_str());
    }
    void dequantizeMatchesCpu() {
        const std::string path = test::fixturesDir() + "/quants.gguf";
        auto file = MappedFile::open(path);
        const GgufFile g = parseGguf(file->data(), file->size(), path);
        for (const auto &t : g.tensors) {
            uint64_t n = 1;
            for (auto d : t.dims)
                n *= d;
            std::vector<float> cpu(n), gpu(n);
            dequantizeCpu(t.dtype, file->data() + t.offset, n, cpu.data());
            m_gpu->dequantize(t.dtype, file->data() + t.offset, n, gpu.data());
            QVERIFY2(std::memcmp(cpu.data(), gpu.data(), n * 4) == 0, t.name.c_str());
        }
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
