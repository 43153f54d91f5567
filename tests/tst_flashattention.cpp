// The GPU trainer's fused attention kernels (gpu/trainflashkernels.cuh), unchanged, run on the CPU through
// gpu/cudaemulation.h against the CPU reference ops (core/train/ops.h): so that the project's CI, which
// has no GPU, checks their indexing, tiling, causal and sequence-end masking, head padding, grouped KV heads and
// arithmetic, and `lathe-cli check-gpu` on a lent GPU is left with what only a GPU shows.

#include <QtTest>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#define LATHE_CUDA_EMULATION 1
#include "trainflashkernels.cuh"

using namespace lathe;

namespace {

using MatF = train::Matrix<float>;

MatF randomMat(int64_t rows, int64_t cols, std::mt19937 &rng, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    MatF m(rows, cols);
    for (int64_t i = 0; i < m.size(); ++i)
        m.data()[i] = scale * normal(rng);
    return m;
}
// The kernels' operands are bf16 copies: the reference multiplies the same rounded values.
MatF roundedToBf16(const MatF &m) {
    MatF r(m.rows(), m.cols());
    for (int64_t i = 0; i < m.size(); ++i)
        r.data()[i] = emulatedBf16ToFloat(__float2bfloat16(m.data()[i]));
    return r;
}
// max |got - want| / max |want|; infinite where got has a NaN.
double relativeError(const float *got, const float *want, int64_t n) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(got[i]))
            return std::numeric_limits<double>::infinity();
        diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
        scale = std::max(scale, std::abs(double(want[i])));
    }
    return scale > 0 ? diff / scale : diff;
}

} // namespace

class TestFlashAttention : public QObject {
    Q_OBJECT

private slots:
    void kernels_data() {
        QTest::addColumn<bool>("causal");
        QTest::addColumn<int>("batch");
        QTest::addColumn<int>("seq");
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<int>("headDim");
        // As check-gpu's: one tile with a tail; several tiles, the last partial; bidirectional (BERT); Phi-2's
        // 80; the fixtures' 8 padded to 16; 96 in exactly one tile.
        QTest::newRow("causal gqa d16 s37") << true << 2 << 37 << 6 << 2 << 16;
        QTest::newRow("causal gqa d64 s150") << true << 1 << 150 << 6 << 2 << 64;
        QTest::newRow("bidirectional d64 s130") << false << 2 << 130 << 2 << 2 << 64;
        QTest::newRow("causal d80 s70") << true << 1 << 70 << 2 << 2 << 80;
        QTest::newRow("causal gqa d8 s100 (padded)") << true << 2 << 100 << 4 << 2 << 8;
        QTest::newRow("bidirectional gqa d96 s64") << false << 1 << 64 << 2 << 1 << 96;
    }

    // Forward (context, log-sum-exps) and backward (dq, dk, dv accumulated onto nonzero values) against the
    // reference on the same bf16-rounded operands: what is left is the kernels' bf16 probabilities and score
    // gradients, at most 1e-2 of each output's largest value (the log-sum-exps 1e-4).
    void kernels() {
        QFETCH(bool, causal);
        QFETCH(int, batch);
        QFETCH(int, seq);
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QFETCH(int, headDim);
        const train::AttentionDims d{batch, seq, heads, kvHeads, headDim, 1.0 / std::sqrt(double(headDim)), causal};
        const int64_t rows = d.batch * d.seq, qw = int64_t(heads) * headDim, kw = int64_t(kvHeads) * headDim;
        std::mt19937 rng(7);
        const MatF q = randomMat(rows, qw, rng), k = randomMat(rows, kw, rng), v = randomMat(rows, kw, rng),
                   dctx = randomMat(rows, qw, rng);
        const MatF dq0 = randomMat(rows, qw, rng, 0.1f), dk0 = randomMat(rows, kw, rng, 0.1f),
                   dv0 = randomMat(rows, kw, rng, 0.1f);

        // The kernels, launched with TrainOps's geometry.
        const gpu::FlashDims f = gpu::flashDims(d);
        MatF ctx = MatF::Constant(rows, qw, NAN), dq = dq0, dk = dk0, dv = dv0;
        std::vector<float> lse(size_t(d.batch * heads * seq), NAN), delta(lse.size(), NAN);
        gpu::withHeadWidth(headDim, [&](auto width) {
            constexpr int D = decltype(width)::value;
            emu::launch(gpu::queryTileGrid(f), gpu::kFlashThreads, gpu::forwardSharedBytes<D>(), [&] {
                gpu::flashForwardKernel<D>(q.data(), k.data(), v.data(), f, ctx.data(), lse.data());
            });
            emu::launch(dim3(gpu::deltaBlocks(f)), gpu::kDeltaThreads, 0,
                        [&] { gpu::flashDeltaKernel(dctx.data(), ctx.data(), f, delta.data()); });
            emu::launch(gpu::keyTileGrid(f), gpu::kFlashThreads, gpu::backwardSharedBytes<D>(), [&] {
                gpu::flashBackwardKeysKernel<D>(q.data(), k.data(), v.data(), dctx.data(), lse.data(), delta.data(),
                                                f, dk.data(), dv.data());
            });
            emu::launch(gpu::queryTileGrid(f), gpu::kFlashThreads, gpu::backwardSharedBytes<D>(), [&] {
                gpu::flashBackwardQueriesKernel<D>(q.data(), k.data(), v.data(), dctx.data(), lse.data(),
                                                   delta.data(), f, dq.data());
            });
        });

        // The reference on the rounded operands.
        const MatF qr = roundedToBf16(q), kr = roundedToBf16(k), vr = roundedToBf16(v), dr = roundedToBf16(dctx);
        MatF wantCtx, wantDq = dq0, wantDk = dk0, wantDv = dv0;
        train::AttentionState<float> s;
        train::attentionForward(qr, kr, vr, d, wantCtx, s);
        train::attentionBackward(dr, qr, kr, vr, d, s, wantDq, wantDk, wantDv);
        const std::vector<float> wantLse = train::attentionLogSumExp(qr, kr, d);

        const double eCtx = relativeError(ctx.data(), wantCtx.data(), ctx.size()),
                     eLse = relativeError(lse.data(), wantLse.data(), int64_t(lse.size())),
                     eDq = relativeError(dq.data(), wantDq.data(), dq.size()),
                     eDk = relativeError(dk.data(), wantDk.data(), dk.size()),
                     eDv = relativeError(dv.data(), wantDv.data(), dv.size());
        const QByteArray errors = QByteArray("ctx ") + QByteArray::number(eCtx) + " lse " + QByteArray::number(eLse) +
                                  " dq " + QByteArray::number(eDq) + " dk " + QByteArray::number(eDk) + " dv " +
                                  QByteArray::number(eDv);
        qInfo("%s", errors.constData());
        QVERIFY2(eCtx <= 1e-2 && eDq <= 1e-2 && eDk <= 1e-2 && eDv <= 1e-2, errors.constData());
        QVERIFY2(eLse <= 1e-4, errors.constData());
    }

    // The emulation itself: a block barrier lets every thread see the others' writes; warps pass their own
    // barriers independently (different counts per warp before a block barrier); a shuffle exchanges lanes; gridDim
    // and blockIdx cover the grid; a barrier that can never be passed stops the program with a message (checked in
    // a child process) instead of hanging the test.
    void emulation() {
        constexpr unsigned kThreads = 96; // three warps, the last one whole
        std::vector<int> out(2 * 3 * kThreads, -1);
        emu::launch(dim3(2, 3), kThreads, kThreads * sizeof(int), [&] {
            LATHE_SHARED_BYTES(raw);
            int *shared = reinterpret_cast<int *>(raw);
            const unsigned t = threadIdx.x, warp = t / 32;
            shared[t] = int(t * t);
            for (unsigned i = 0; i <= warp; ++i) // warp w passes w + 1 warp barriers
                __syncwarp();
            __syncthreads();
            const float swapped = __shfl_xor_sync(0xffffffffu, float(t), 1);
            const int64_t at = (int64_t(blockIdx.y) * gridDim.x + blockIdx.x) * blockDim.x + t;
            out[size_t(at)] = shared[(t + 1) % kThreads] + (swapped == float(t ^ 1u) ? 0 : 1000000);
        });
        for (size_t i = 0; i < out.size(); ++i) {
            const unsigned next = unsigned(i % kThreads + 1) % kThreads;
            QCOMPARE(out[i], int(next * next));
        }

        const pid_t child = fork();
        QVERIFY(child >= 0);
        if (child == 0) {
            std::freopen("/dev/null", "w", stderr);
            emu::launch(dim3(1), 32, 0, [] {
                if (threadIdx.x < 16)
                    __syncwarp(); // the other half waits at the block's barrier: neither is ever complete
                else
                    __syncthreads();
            });
            std::_Exit(0);
        }
        int status = 0;
        QCOMPARE(waitpid(child, &status, 0), child);
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "a deadlocked block did not abort");
    }

    // What the launches refuse before any kernel runs (a LatheError naming it, not a bad launch): a head width
    // without a kernel, a head count that is not whole groups per KV head, and more sequences than a grid's z
    // holds. 65,535 sequences still launch (sequences on z, heads on y: the limit was once on their product).
    void refusals() {
        const auto refuses = [](const train::AttentionDims &d, const char *why) {
            try {
                gpu::flashDims(d);
            } catch (const LatheError &e) {
                QVERIFY2(std::string(e.what()).find(why) != std::string::npos, e.what());
                return;
            }
            QFAIL(why);
        };
        refuses({1, 64, 2, 2, 128, 0.1, true}, "head width of at most 96");
        refuses({1, 64, 6, 4, 64, 0.1, true}, "whole groups of query heads per KV head (6 heads, 4 KV heads)");
        refuses({65536, 16, 9, 3, 64, 0.1, true}, "at most 65535 sequences per call, not 65536");
        QVERIFY_THROWS_EXCEPTION(LatheError, gpu::withHeadWidth(112, [](auto) {}));

        const gpu::FlashDims f = gpu::flashDims({65535, 1024, 9, 3, 64, 0.125, true});
        const dim3 queries = gpu::queryTileGrid(f), keys = gpu::keyTileGrid(f);
        QCOMPARE(queries.x, 16u);
        QCOMPARE(queries.y, 9u);
        QCOMPARE(queries.z, 65535u);
        QCOMPARE(keys.y, 3u);
        QCOMPARE(keys.z, 65535u);
    }
};

QTEST_GUILESS_MAIN(TestFlashAttention)
#include "tst_flashattention.moc"
