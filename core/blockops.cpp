#include "blockops.h"

#include "blas.h"
#include "error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
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

void linearForward(const Mat &x, const LinearWeights &w, Mat &y) {
    const int64_t rows = x.rows(), in = x.cols(), out = w.w.rows();
    assert(w.w.cols() == in);
    y.resize(rows, out);
    sgemm(false, true, rows, out, in, 1.0f, x.data(), in, w.w.data(), in, 0.0f, y.data(), out);
    if (w.hasBias())
        y.rowwise() += w.b.transpose();
}

void layerNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y) {
    y.resize(x.rows(), x.cols());
    const int64_t rows = x.rows(), cols = x.cols();
    const bool hasBias = n.bias.size() > 0;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *in = x.data() + r * cols;
        float *out = y.data() + r * cols;
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
    }
}

void rmsNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y) {
    y.resize(x.rows(), x.cols());
    const int64_t rows = x.rows(), cols = x.cols();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *in = x.data() + r * cols;
        float *out = y.data() + r * cols;
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c)
            ss += double(in[c]) * in[c];
        const float inv = float(1.0 / std::sqrt(ss / double(cols) + eps));
        for (int64_t c = 0; c < cols; ++c)
            out[c] = n.weight[c] * (in[c] * inv);
    }
}

namespace {

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

inline float geluTanh(float v) {
    constexpr float k = 0.7978845608028654f; // sqrt(2/pi)
    return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
}

inline float geluErf(float v) { return 0.5f * v * (1.0f + std::erf(v * float(std::numbers::sqrt2 / 2))); }

} // namespace

void activationForward(Activation a, Mat &x) {
    float *p = x.data();
    const int64_t n = x.size();
    switch (a) {
    case Activation::Silu:
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i)
            p[i] = silu(p[i]);
        break;
    case Activation::Relu:
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i)
            p[i] = std::max(p[i], 0.0f);
        break;
    case Activation::GeluTanh:
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i)
            p[i] = geluTanh(p[i]);
        break;
    case Activation::GeluErf:
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i)
            p[i] = geluErf(p[i]);
        break;
    }
}

void swigluForward(Mat &gate, const Mat &up) {
    assert(gate.rows() == up.rows() && gate.cols() == up.cols());
    float *g = gate.data();
    const float *u = up.data();
    const int64_t n = gate.size();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
        g[i] = silu(g[i]) * u[i];
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
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
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
}

void attentionForward(const Mat &q, const Mat &k, const Mat &v, const AttentionShape &s, Mat &ctx) {
    const int64_t T = s.seq, d = s.headDim;
    const int64_t qStride = int64_t(s.heads) * d, kvStride = int64_t(s.kvHeads) * d;
    assert(q.rows() == s.batch * T && q.cols() == qStride && k.cols() == kvStride && v.cols() == kvStride);
    ctx.resize(q.rows(), qStride);
    const int group = s.heads / s.kvHeads;
    // Query chunks keep the score block small (cache) and let causal attention skip keys after the chunk.
    const int64_t chunk = std::min<int64_t>(T, 256);
    Mat scores(chunk, T);
    for (int64_t b = 0; b < s.batch; ++b) {
        const uint8_t *keyMask = s.keyMask ? s.keyMask + b * T : nullptr;
        for (int h = 0; h < s.heads; ++h) {
            const int kvh = h / group;
            const float *qh = q.data() + b * T * qStride + int64_t(h) * d;
            const float *kh = k.data() + b * T * kvStride + int64_t(kvh) * d;
            const float *vh = v.data() + b * T * kvStride + int64_t(kvh) * d;
            float *oh = ctx.data() + b * T * qStride + int64_t(h) * d;
            for (int64_t q0 = 0; q0 < T; q0 += chunk) {
                const int64_t nq = std::min(chunk, T - q0);
                const int64_t nk = s.causal ? q0 + nq : T;
                // scores (nq x nk), row stride T
                sgemm(false, true, nq, nk, d, s.scale, qh + q0 * qStride, qStride, kh, kvStride, 0.0f,
                      scores.data(), T);
#pragma omp parallel for schedule(static)
                for (int64_t i = 0; i < nq; ++i) {
                    float *row = scores.data() + i * T;
                    const int64_t last = s.causal ? q0 + i + 1 : nk; // keys [0, last) are visible
                    float mx = -std::numeric_limits<float>::infinity();
                    for (int64_t j = 0; j < last; ++j)
                        if (!keyMask || keyMask[j])
                            mx = std::max(mx, row[j]);
                    float sum = 0;
                    for (int64_t j = 0; j < last; ++j) {
                        const float e = (!keyMask || keyMask[j]) ? std::exp(row[j] - mx) : 0.0f;
                        row[j] = e;
                        sum += e;
                    }
                    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
                    for (int64_t j = 0; j < last; ++j)
                        row[j] *= inv;
                    for (int64_t j = last; j < nk; ++j)
                        row[j] = 0.0f;
                }
                sgemm(false, false, nq, d, nk, 1.0f, scores.data(), T, vh, kvStride, 0.0f, oh + q0 * qStride,
                      qStride);
            }
        }
    }
}

} // namespace lathe::cpu
