#include "engine/blockops.h"

#include "base/error.h"
#include "base/parallel.h"
#include "model/modelconfig.h"
#include "numeric/blas.h"
#include "numeric/cpukernels.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

namespace lathe::cpu {

Activation parseActivation(const std::string &name, const std::string &source) {
    if (name == "silu" || name == "swish")
        return Activation::Silu;
    if (name == "relu")
        return Activation::Relu;
    if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
        return Activation::GeluTanh;
    if (name == "gelu")
        return Activation::GeluErf;
    throw LatheError(source + ": activation '" + name + "' is not supported",
                     "supported: silu, relu, gelu, gelu_new, gelu_pytorch_tanh");
}

void linearForward(const Mat &x, const Mat &w, Mat &y) {
    const int64_t rows = x.rows(), in = x.cols(), out = w.rows();
    assert(w.cols() == in);
    y.resize(rows, out);
    sgemmSplit(false, true, rows, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
}

void linearForward(const Mat &x, const LinearWeights &w, Mat &y) {
    linearForward(x, w.w, y);
    if (w.hasBias())
        y.rowwise() += w.b.transpose();
}

namespace {

// y = fn applied to each row of x (same width), rows split across threads. fn(in, out, cols).
template <typename RowFn>
void mapRows(const Mat &x, Mat &y, const RowFn &fn) {
    y.resize(x.rows(), x.cols());
    const int64_t cols = x.cols();
    parallelFor(x.rows(), 64, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            fn(x.data() + r * cols, y.data() + r * cols, cols);
    });
}

} // namespace

void layerNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y) {
    const bool hasBias = n.bias.size() > 0;
    mapRows(x, y, [&](const float *in, float *out, int64_t cols) {
        double mean = 0;
        for (int64_t c = 0; c < cols; ++c)
            mean += in[c];
        mean /= double(cols);
        double var = 0;
        for (int64_t c = 0; c < cols; ++c) {
            const double d = in[c] - mean;
            var += d * d;
        }
        var /= double(cols);
        const float inv = float(1.0 / std::sqrt(var + eps));
        const float m = float(mean);
        for (int64_t c = 0; c < cols; ++c)
            out[c] = (in[c] - m) * inv * n.weight[c] + (hasBias ? n.bias[c] : 0.0f);
    });
}

namespace {

// y = x / sqrt(sum(x^2) / divisor + eps) * weight (weight may be null = 1), per row.
void rmsNormRows(const Mat &x, const float *weight, double divisor, float eps, Mat &y) {
    mapRows(x, y, [&](const float *in, float *out, int64_t cols) {
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c)
            ss += double(in[c]) * in[c];
        const float inv = float(1.0 / std::sqrt(ss / (divisor > 0 ? divisor : double(cols)) + eps));
        for (int64_t c = 0; c < cols; ++c)
            out[c] = weight ? weight[c] * (in[c] * inv) : in[c] * inv;
    });
}

} // namespace

void rmsNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y) { rmsNormRows(x, n.weight.data(), 0, eps, y); }

void rmsNormWeightless(const Mat &x, int64_t divisor, float eps, Mat &y) { rmsNormRows(x, nullptr, double(divisor), eps, y); }

namespace {

inline float geluErf(float v) { return 0.5f * v * (1.0f + std::erf(v * float(std::numbers::sqrt2 / 2))); }

} // namespace

void activationForward(Activation a, Mat &x) {
    float *p = x.data();
    const int64_t n = x.size();
    switch (a) {
    case Activation::Silu:
        parallelFor(n, 1 << 15, [&](int64_t b, int64_t e) { cpuKernels().silu(p + b, e - b); });
        break;
    case Activation::Relu:
        parallelFor(n, 1 << 15, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                p[i] = std::max(p[i], 0.0f);
        });
        break;
    case Activation::GeluTanh:
        parallelFor(n, 1 << 15, [&](int64_t b, int64_t e) { cpuKernels().geluTanh(p + b, e - b); });
        break;
    case Activation::GeluErf:
        parallelFor(n, 1 << 15, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                p[i] = geluErf(p[i]);
        });
        break;
    }
}

void swigluStacked(Mat &gateUp, const Vec &gateBias, const Vec &upBias, Mat &mid) {
    assert(gateUp.cols() % 2 == 0);
    const int64_t ff = gateUp.cols() / 2;
    mid.resize(gateUp.rows(), ff);
    const CpuKernels &kern = cpuKernels();
    parallelFor(gateUp.rows(), 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float *g = gateUp.data() + r * 2 * ff;
            float *u = gateUp.data() + r * 2 * ff + ff;
            float *m = mid.data() + r * ff;
            for (int64_t c = 0; c < ff; ++c)
                m[c] = gateBias.size() ? g[c] + gateBias[c] : g[c];
            if (upBias.size())
                for (int64_t c = 0; c < ff; ++c)
                    u[c] += upBias[c];
            kern.siluMul(m, u, ff);
        }
    });
}

RopeTable makeRopeTable(int64_t positions, int rotaryDim, double theta, const nlohmann::json &ropeScaling,
                        const std::string &source) {
    RopeTable t;
    t.rotaryDim = rotaryDim;
    const int half = rotaryDim / 2;
    // As HF: inverse frequencies in fp32, angles as fp32 products, cos/sin of those.
    std::vector<float> invFreq(half);
    for (int i = 0; i < half; ++i)
        invFreq[i] = float(1.0 / std::pow(theta, double(2 * i) / double(rotaryDim)));
    double positionScale = 1.0;
    checkRopeScaling(ropeScaling, source); // also for configs built by hand, not read from config.json
    if (ropeScaling.is_object()) {
        const std::string type = ropeScaling.value("rope_type", ropeScaling.value("type", std::string("default")));
        if (type == "linear") {
            positionScale = 1.0 / ropeScaling.value("factor", 1.0);
        } else if (type == "llama3") {
            const double factor = ropeScaling.value("factor", 8.0);
            const double low = ropeScaling.value("low_freq_factor", 1.0);
            const double high = ropeScaling.value("high_freq_factor", 4.0);
            const double oldCtx = ropeScaling.value("original_max_position_embeddings", 8192.0);
            const double lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
            for (float &f : invFreq) {
                const double wavelen = 2 * std::numbers::pi / f;
                if (wavelen > lowWavelen) {
                    f = float(f / factor);
                } else if (wavelen >= highWavelen) {
                    const double smooth = (oldCtx / wavelen - low) / (high - low);
                    f = float((1 - smooth) * f / factor + smooth * f);
                }
            }
        } else if (type != "default") {
            throw LatheError(source + ": rope scaling '" + type + "' is not supported",
                             "supported rope_scaling types: linear, llama3");
        }
    }
    t.invFreq = invFreq;
    t.positionScale = positionScale;
    t.cos.resize(positions, half);
    t.sin.resize(positions, half);
    for (int64_t p = 0; p < positions; ++p)
        for (int i = 0; i < half; ++i) {
            const float angle = float(double(p) * positionScale) * invFreq[i];
            t.cos(p, i) = std::cos(angle);
            t.sin(p, i) = std::sin(angle);
        }
    return t;
}

void ropeForward(Mat &x, int64_t seq, int heads, int headDim, const RopeTable &table) {
    const int half = table.rotaryDim / 2;
    const int64_t rows = x.rows(), width = x.cols();
    assert(width == int64_t(heads) * headDim && table.cos.rows() >= seq);
    parallelFor(rows, 64, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t pos = r % seq;
            const float *c = table.cos.data() + pos * half;
            const float *s = table.sin.data() + pos * half;
            for (int h = 0; h < heads; ++h) {
                float *v = x.data() + r * width + int64_t(h) * headDim;
                for (int i = 0; i < half; ++i) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = b * c[i] + a * s[i];
                }
            }
        }
    });
}

void attentionForward(const Mat &q, const Mat &k, const Mat &v, const AttentionShape &s, Mat &ctx) {
    const int64_t T = s.seq, d = s.headDim;
    const int64_t qStride = int64_t(s.heads) * d, kvStride = int64_t(s.kvHeads) * d;
    assert(q.rows() == s.batch * T && q.cols() == qStride && k.cols() == kvStride && v.cols() == kvStride);
    ctx.resize(q.rows(), qStride);
    const int group = s.heads / s.kvHeads;
    const CpuKernels &kern = cpuKernels();
    // Query chunks keep the score block small (cache) and let causal attention skip keys after the chunk.
    const int64_t chunk = std::min<int64_t>(T, 256);
    const int64_t chunks = (T + chunk - 1) / chunk, items = s.batch * s.heads * chunks;
    // One item: scores of a query chunk against its keys by a GEMM, the softmax rows, the context by a GEMM.
    auto runItem = [&](int64_t item, std::vector<float> &scores, int softmaxThreads) {
        // Last chunks first: under a causal mask they are the largest, and dynamic scheduling then balances.
        const int64_t c = chunks - 1 - item % chunks, p = item / chunks;
        const int64_t b = p / s.heads;
        const int h = int(p % s.heads), kvh = h / group;
        const uint8_t *keyMask = s.keyMask ? s.keyMask + b * T : nullptr;
        const float *qh = q.data() + b * T * qStride + int64_t(h) * d;
        const float *kh = k.data() + b * T * kvStride + int64_t(kvh) * d;
        const float *vh = v.data() + b * T * kvStride + int64_t(kvh) * d;
        float *oh = ctx.data() + b * T * qStride + int64_t(h) * d;
        const int64_t q0 = c * chunk, nq = std::min(chunk, T - q0);
        const int64_t nk = s.causal ? q0 + nq : T;
        scores.resize(size_t(chunk * T));
        sgemm(false, true, nq, nk, d, s.scale, qh + q0 * qStride, qStride, kh, kvStride, 0.0f, scores.data(), nk);
        parallelFor(nq, 16, [&](int64_t i0, int64_t i1) {
            kern.softmaxRows(scores.data() + i0 * nk, i1 - i0, nk, q0 + i0, s.causal, keyMask);
        }, softmaxThreads);
        sgemm(false, false, nq, d, nk, 1.0f, scores.data(), nk, vh, kvStride, 0.0f, oh + q0 * qStride, qStride);
    };
    const int threads = blasSplitThreads();
    if (threads > 1) {
        // Inside a BlasSplitScope: items spread over the threads, each running single-threaded GEMMs and softmax.
        std::atomic<int64_t> next{0};
        parallelFor(threads, 1, [&](int64_t, int64_t) {
            std::vector<float> scores;
            for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1))
                runItem(i, scores, 1);
        }, threads);
    } else {
        // BLAS threads each GEMM; the softmax rows are split across the cores.
        std::vector<float> scores;
        for (int64_t i = 0; i < items; ++i)
            runItem(i, scores, 0);
    }
}

} // namespace lathe::cpu
