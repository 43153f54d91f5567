#include "trainopscheck.h"

#include "devicememory.h"
#include "gpucontext.h"
#include "trainops.h"

#include "base/halfconv.h"
#include "numeric/backend.h"
#include "numeric/cpukernels.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>

namespace lathe::gpu {

namespace {

using MatF = train::Matrix<float>;
using VecF = train::Vector<float>;

constexpr double kFp32 = 1e-5, kBf16 = 3e-2, kAdamW = 1e-6;

class Inputs {
public:
    explicit Inputs(uint32_t seed) : m_rng(seed) {}
    MatF mat(int64_t rows, int64_t cols, float scale = 1.0f) {
        MatF m(rows, cols);
        for (int64_t i = 0; i < m.size(); ++i)
            m.data()[i] = scale * m_normal(m_rng);
        return m;
    }
    VecF vec(int64_t n, float scale = 1.0f, float offset = 0.0f) {
        VecF v(n);
        for (int64_t i = 0; i < n; ++i)
            v(i) = offset + scale * m_normal(m_rng);
        return v;
    }
    std::vector<int32_t> ids(size_t n, int32_t below) {
        std::vector<int32_t> out(n);
        std::uniform_int_distribution<int32_t> pick(0, below - 1);
        for (auto &id : out)
            id = pick(m_rng);
        return out;
    }

private:
    std::mt19937 m_rng;
    std::normal_distribution<float> m_normal{0.0f, 1.0f};
};

// A device copy of host floats, and the way back.
DeviceMemory upload(const float *host, int64_t n) {
    DeviceMemory d(size_t(std::max<int64_t>(n, 1)) * sizeof(float));
    if (n)
        LATHE_CUDA_CHECK(cudaMemcpy(d.as(), host, size_t(n) * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}
template <class M> DeviceMemory upload(const M &m) { return upload(m.data(), int64_t(m.size())); }
// A device copy of a host vector of other elements (masks, index lists).
template <class E> DeviceMemory upload(const std::vector<E> &host) {
    DeviceMemory d(std::max<size_t>(host.size(), 1) * sizeof(E));
    if (!host.empty())
        LATHE_CUDA_CHECK(cudaMemcpy(d.as(), host.data(), host.size() * sizeof(E), cudaMemcpyHostToDevice));
    return d;
}
std::vector<float> download(const DeviceMemory &d, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    if (n)
        LATHE_CUDA_CHECK(cudaMemcpy(out.data(), d.as(), size_t(n) * sizeof(float), cudaMemcpyDeviceToHost));
    return out;
}

// Accumulates max |gpu - cpu| and max |cpu| over several outputs of one op; error() is their ratio.
class Comparison {
public:
    void add(const std::string &what, const DeviceMemory &gpu, const float *cpu, int64_t n) {
        addHost(what, download(gpu, n), cpu, n);
    }
    void addHost(const std::string &what, const std::vector<float> &g, const float *cpu, int64_t n) {
        double diff = 0;
        for (int64_t i = 0; i < n; ++i) {
            const double d = std::abs(double(g[size_t(i)]) - double(cpu[i]));
            diff = std::isnan(d) ? INFINITY : std::max(diff, d);
            m_scale = std::max(m_scale, std::abs(double(cpu[i])));
        }
        m_diff = std::max(m_diff, diff);
        m_parts += (m_parts.empty() ? "" : ", ") + what;
    }
    template <class M> void add(const std::string &what, const DeviceMemory &gpu, const M &cpu) {
        add(what, gpu, cpu.data(), int64_t(cpu.size()));
    }
    void addValue(const std::string &what, double gpu, double cpu) {
        m_diff = std::max(m_diff, std::isnan(gpu) ? INFINITY : std::abs(gpu - cpu));
        m_scale = std::max(m_scale, std::abs(cpu));
        m_parts += (m_parts.empty() ? "" : ", ") + what;
    }
    GpuCheck result(const std::string &name, double tolerance, const std::string &shape) const {
        const double error = m_scale > 0 ? m_diff / m_scale : m_diff;
        return {name, error <= tolerance, error, tolerance, shape + ": " + m_parts};
    }

private:
    double m_diff = 0, m_scale = 0;
    std::string m_parts;
};

std::string dims(std::initializer_list<std::pair<const char *, int64_t>> values) {
    std::string s;
    for (const auto &[k, v] : values)
        s += (s.empty() ? "" : " ") + std::string(k) + "=" + std::to_string(v);
    return s;
}

GpuCheck embedding(TrainOps &ops) {
    Inputs in(1);
    const int64_t vocab = 50, width = 37, rows = 70;
    const MatF table = in.mat(vocab, width);
    const std::vector<int32_t> ids = in.ids(size_t(rows), int32_t(vocab)); // 70 draws from 50: repeats
    const MatF dy = in.mat(rows, width);
    MatF dtable = in.mat(vocab, width), y;
    DeviceMemory dTable = upload(table), dY(size_t(rows * width) * 4), dDy = upload(dy), dDtable = upload(dtable);
    ops.embeddingForward(dTable.as<float>(), vocab, width, ids, dY.as<float>());
    ops.embeddingBackward(dDy.as<float>(), ids, width, dDtable.as<float>());
    train::embeddingForward(table, ids, y);
    train::embeddingBackward(dy, ids, dtable);
    Comparison c;
    c.add("y", dY, y);
    c.add("dtable", dDtable, dtable);
    return c.result("train embedding", kFp32, dims({{"vocab", vocab}, {"width", width}, {"rows", rows}}));
}

GpuCheck norm(TrainOps &ops, bool layerNorm) {
    Inputs in(2);
    const int64_t rows = 33, width = 300; // width not a multiple of the block's threads
    const float eps = 1e-5f;
    const MatF x = in.mat(rows, width, 2.0f), dy = in.mat(rows, width);
    const VecF w = in.vec(width, 0.2f, 1.0f), b = in.vec(width, 0.1f);
    MatF y, dx = in.mat(rows, width, 0.1f);
    VecF dw = in.vec(width, 0.1f), db = in.vec(width, 0.1f);
    DeviceMemory dX = upload(x), dW = upload(w), dB = upload(b), dDy = upload(dy), dDx = upload(dx), dDw = upload(dw),
                 dDb = upload(db), dY(size_t(rows * width) * 4), dMean(size_t(rows) * 4), dRstd(size_t(rows) * 4);
    train::NormState<float> s;
    if (layerNorm) {
        ops.layerNormForward(dX.as<float>(), dW.as<float>(), dB.as<float>(), rows, width, eps, dY.as<float>(),
                             dMean.as<float>(), dRstd.as<float>());
        ops.layerNormBackward(dDy.as<float>(), dX.as<float>(), dW.as<float>(), dMean.as<float>(), dRstd.as<float>(),
                              rows, width, dDx.as<float>(), dDw.as<float>(), dDb.as<float>());
        train::layerNormForward(x, w, b, eps, y, s);
        train::layerNormBackward(dy, x, w, s, dx, &dw, &db);
    } else {
        ops.rmsNormForward(dX.as<float>(), dW.as<float>(), rows, width, eps, dY.as<float>(), dRstd.as<float>());
        ops.rmsNormBackward(dDy.as<float>(), dX.as<float>(), dW.as<float>(), dRstd.as<float>(), rows, width,
                            dDx.as<float>(), dDw.as<float>());
        train::rmsNormForward(x, w, eps, y, s);
        train::rmsNormBackward(dy, x, w, s, dx, &dw);
    }
    Comparison c;
    c.add("y", dY, y);
    c.add("rstd", dRstd, s.rstd);
    if (layerNorm)
        c.add("mean", dMean, s.mean);
    c.add("dx", dDx, dx);
    c.add("dw", dDw, dw);
    if (layerNorm)
        c.add("db", dDb, db);
    return c.result(layerNorm ? "train layernorm" : "train rmsnorm", kFp32, dims({{"rows", rows}, {"width", width}}));
}

GpuCheck linear(TrainOps &ops) {
    Inputs in(3);
    const int64_t rows = 45, inW = 96, outW = 80;
    const MatF x = in.mat(rows, inW), w = in.mat(outW, inW, 0.1f), dy = in.mat(rows, outW);
    const VecF b = in.vec(outW);
    MatF y, dx = in.mat(rows, inW, 0.1f), dw = in.mat(outW, inW, 0.1f);
    VecF db = in.vec(outW, 0.1f);
    DeviceMemory dX = upload(x), dW = upload(w), dB = upload(b), dDy = upload(dy), dDx = upload(dx), dDw = upload(dw),
                 dDb = upload(db), dY(size_t(rows * outW) * 4);
    ops.linearForward(dX.as<float>(), dW.as<float>(), dB.as<float>(), rows, inW, outW, dY.as<float>());
    ops.linearBackward(dDy.as<float>(), dX.as<float>(), dW.as<float>(), rows, inW, outW, dDx.as<float>(),
                       dDw.as<float>(), dDb.as<float>());
    train::linearForward(x, w, b, y);
    train::linearBackward(dy, x, w, &dx, &dw, &db);
    Comparison c;
    c.add("y", dY, y);
    c.add("dx", dDx, dx);
    c.add("dw", dDw, dw);
    c.add("db", dDb, db);
    const bool bf16 = ops.precision() == ComputePrecision::Bf16;
    return c.result(bf16 ? "train linear bf16" : "train linear fp32", bf16 ? kBf16 : kFp32,
                    dims({{"rows", rows}, {"in", inW}, {"out", outW}}));
}

GpuCheck rope(TrainOps &ops) {
    Inputs in(4);
    const int64_t batch = 2, seq = 11, rows = batch * seq;
    const int heads = 3, headDim = 16, rotaryDim = 8; // partial rotary (Phi-2)
    train::RopeAngles<float> angles;
    angles.rotaryDim = rotaryDim;
    angles.cos.resize(seq, rotaryDim / 2);
    angles.sin.resize(seq, rotaryDim / 2);
    for (int64_t p = 0; p < seq; ++p)
        for (int i = 0; i < rotaryDim / 2; ++i) {
            const double a = double(p) * std::pow(10000.0, -2.0 * i / rotaryDim);
            angles.cos(p, i) = float(std::cos(a));
            angles.sin(p, i) = float(std::sin(a));
        }
    MatF x = in.mat(rows, heads * headDim), dx = in.mat(rows, heads * headDim);
    DeviceMemory dX = upload(x), dDx = upload(dx), dCos = upload(angles.cos), dSin = upload(angles.sin);
    ops.ropeForward(dX.as<float>(), rows, seq, heads, headDim, rotaryDim, dCos.as<float>(), dSin.as<float>());
    ops.ropeBackward(dDx.as<float>(), rows, seq, heads, headDim, rotaryDim, dCos.as<float>(), dSin.as<float>());
    train::ropeForward(x, seq, heads, headDim, angles);
    train::ropeBackward(dx, seq, heads, headDim, angles);
    Comparison c;
    c.add("x", dX, x);
    c.add("dx", dDx, dx);
    return c.result("train rope", kFp32, dims({{"rows", rows}, {"heads", heads}, {"head_dim", headDim},
                                               {"rotary_dim", rotaryDim}}));
}

// Attention's forward and backward against the CPU's, at a shape: with the Probabilities store the saved
// probabilities too (bf16 with bf16 products), with the fused kernels' LogSumExp store each row's log-sum-exp,
// against train::attentionLogSumExp (a separate comparison: its values, about log(seq), would otherwise set the
// scale the context and gradients are measured against).
GpuCheck attention(TrainOps &ops, bool causal, int heads, int kvHeads, int64_t batch = 2, int64_t seq = 37,
                   int headDim = 16) {
    Inputs in(5);
    const train::AttentionDims d{batch, seq, heads, kvHeads, headDim, 1.0 / std::sqrt(double(headDim)), causal};
    const int64_t rows = d.batch * d.seq, qw = int64_t(heads) * d.headDim, kw = int64_t(kvHeads) * d.headDim;
    const MatF q = in.mat(rows, qw), k = in.mat(rows, kw), v = in.mat(rows, kw), dctx = in.mat(rows, qw);
    MatF ctx, dq = in.mat(rows, qw, 0.1f), dk = in.mat(rows, kw, 0.1f), dv = in.mat(rows, kw, 0.1f);
    const bool fused = ops.attentionStore() == train::AttentionStore::LogSumExp;
    DeviceMemory dQ = upload(q), dK = upload(k), dV = upload(v), dDctx = upload(dctx), dDq = upload(dq),
                 dDk = upload(dk), dDv = upload(dv), dCtx(size_t(rows * qw) * 4),
                 dProbs(size_t(train::attentionSavedFloats(ops.attentionStore(), ops.precision(), d.batch, heads,
                                                           d.seq)) * 4);
    ops.attentionForward(dQ.as<float>(), dK.as<float>(), dV.as<float>(), d, dCtx.as<float>(), dProbs.as<float>());
    ops.attentionBackward(dDctx.as<float>(), dQ.as<float>(), dK.as<float>(), dV.as<float>(), dCtx.as<float>(), d,
                          dProbs.as<float>(), dDq.as<float>(), dDk.as<float>(), dDv.as<float>());
    train::AttentionState<float> s;
    train::attentionForward(q, k, v, d, ctx, s);
    train::attentionBackward(dctx, q, k, v, d, s, dq, dk, dv);
    Comparison c, saved;
    c.add("ctx", dCtx, ctx);
    const bool bf16 = ops.precision() == ComputePrecision::Bf16;
    if (fused) {
        const std::vector<float> lse = train::attentionLogSumExp(q, k, d);
        saved.add("lse", dProbs, lse.data(), int64_t(lse.size()));
    } else if (bf16) { // the saved probabilities are bf16 with bf16 products
        std::vector<uint16_t> raw(s.probs.size());
        LATHE_CUDA_CHECK(cudaMemcpy(raw.data(), dProbs.as(), raw.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost));
        std::vector<float> got(raw.size());
        std::transform(raw.begin(), raw.end(), got.begin(), bf16ToFloat);
        c.addHost("probs", got, s.probs.data(), int64_t(s.probs.size()));
    } else {
        c.add("probs", dProbs, s.probs.data(), int64_t(s.probs.size()));
    }
    c.add("dq", dDq, dq);
    c.add("dk", dDk, dk);
    c.add("dv", dDv, dv);
    const std::string name = std::string("train attention ") + (causal ? "causal" : "bidirectional") +
                             (kvHeads < heads ? " gqa" : "") + (fused ? " fused" : bf16 ? " bf16" : "") +
                             (fused ? " d" + std::to_string(headDim) + " s" + std::to_string(seq) : "");
    const std::string shape = dims({{"batch", d.batch}, {"seq", d.seq}, {"heads", heads}, {"kv_heads", kvHeads},
                                    {"head_dim", d.headDim}});
    GpuCheck out = c.result(name, bf16 ? kBf16 : kFp32, shape);
    if (fused) { // the worse of the two comparisons, both named
        const GpuCheck lse = saved.result(name, kBf16, shape);
        out.detail += "; lse error " + std::to_string(lse.error);
        if (lse.error > out.error) {
            out.error = lse.error;
            out.passed = lse.passed;
        }
    }
    return out;
}

GpuCheck swiglu(TrainOps &ops) {
    Inputs in(6);
    const int64_t rows = 19, width = 130, n = rows * width;
    const MatF gate = in.mat(rows, width, 3.0f), up = in.mat(rows, width), dmid = in.mat(rows, width);
    MatF mid, dgate = in.mat(rows, width, 0.1f), dup = in.mat(rows, width, 0.1f);
    DeviceMemory dGate = upload(gate), dUp = upload(up), dDmid = upload(dmid), dDgate = upload(dgate),
                 dDup = upload(dup), dMid(size_t(n) * 4);
    ops.swigluForward(dGate.as<float>(), dUp.as<float>(), n, dMid.as<float>());
    ops.swigluBackward(dDmid.as<float>(), dGate.as<float>(), dUp.as<float>(), n, dDgate.as<float>(), dDup.as<float>());
    train::swigluForward(gate, up, mid);
    train::swigluBackward(dmid, gate, up, dgate, dup);
    Comparison c;
    c.add("mid", dMid, mid);
    c.add("dgate", dDgate, dgate);
    c.add("dup", dDup, dup);
    return c.result("train swiglu", kFp32, dims({{"n", n}}));
}

GpuCheck gelu(TrainOps &ops, train::Gelu kind) {
    Inputs in(7);
    const int64_t rows = 19, width = 130, n = rows * width;
    const MatF x = in.mat(rows, width, 3.0f), dy = in.mat(rows, width);
    MatF y, dx = in.mat(rows, width, 0.1f);
    DeviceMemory dX = upload(x), dDy = upload(dy), dDx = upload(dx), dY(size_t(n) * 4);
    ops.geluForward(kind, dX.as<float>(), n, dY.as<float>());
    ops.geluBackward(kind, dDy.as<float>(), dX.as<float>(), n, dDx.as<float>());
    train::geluForward(kind, x, y);
    train::geluBackward(kind, dy, x, dx);
    Comparison c;
    c.add("y", dY, y);
    c.add("dx", dDx, dx);
    return c.result(kind == train::Gelu::Tanh ? "train gelu tanh" : "train gelu erf", kFp32, dims({{"n", n}}));
}

GpuCheck maskedAdd(TrainOps &ops) {
    Inputs in(18);
    const int64_t rows = 37, width = 61, n = rows * width;
    const MatF g = in.mat(rows, width);
    MatF dw = in.mat(rows, width, 0.1f);
    std::vector<uint8_t> mask(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        mask[size_t(i)] = uint8_t((i * 7919) % 3 != 0);
    DeviceMemory dG = upload(g), dDw = upload(dw), dMask = upload(mask);
    ops.maskedAdd(dDw.as<float>(), dG.as<float>(), dMask.as<uint8_t>(), n);
    for (int64_t i = 0; i < n; ++i)
        dw.data()[i] += g.data()[i] * float(mask[size_t(i)]);
    Comparison c;
    c.add("dw", dDw, dw);
    return c.result("train masked gradient", kFp32, dims({{"n", n}}));
}

GpuCheck rowMaskedAdd(TrainOps &ops) {
    Inputs in(19);
    const int64_t rows = 37, width = 61;
    const MatF src = in.mat(rows, width);
    MatF dst = in.mat(rows, width, 0.1f);
    std::vector<uint8_t> mask(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
        mask[size_t(r)] = uint8_t(r % 3 != 1);
    DeviceMemory dSrc = upload(src), dDst = upload(dst), dMask = upload(mask);
    ops.rowMaskedAdd(dDst.as<float>(), dSrc.as<float>(), dMask.as<uint8_t>(), rows, width);
    for (int64_t r = 0; r < rows; ++r)
        if (mask[size_t(r)])
            dst.row(r) += src.row(r);
    Comparison c;
    c.add("dst", dDst, dst);
    return c.result("train row-masked add", kFp32, dims({{"rows", rows}, {"cols", width}}));
}

// PST's passes against train::pstAdapted, pstScores, pruneSmallest and pstBackward: W~ and the scores from random
// factors; the mask from the same scores (bit for bit: the selection is exact), on scores rounded to quarters so that
// many tie, at sparsities that cut through a tie group, across many chunks, and at 0 and 1; the backward's gradients
// from one G and mask.
GpuCheck pst(TrainOps &ops) {
    Inputs in(21);
    train::PstDims d;
    d.out = 300;
    d.in = 700;
    d.options.rank = 8;
    d.options.maskRank = 4;
    d.options.beta = 0.7;
    d.options.alpha1 = 1.3;
    d.options.alpha2 = 0.6;
    const int64_t n = d.out * d.in, r = d.options.rank, mr = d.options.maskRank;
    const MatF w = in.mat(d.out, d.in), u = in.mat(d.out, r, 0.1f), v = in.mat(r, d.in, 0.1f), a = in.mat(d.out, mr),
               b = in.mat(mr, d.in, 0.05f), rr = in.mat(d.out, 1, 0.1f), cc = in.mat(d.in, 1, 0.1f),
               g = in.mat(d.out, d.in);
    DeviceMemory dW = upload(w), dU = upload(u), dV = upload(v), dA = upload(a), dB = upload(b), dR = upload(rr),
                 dC = upload(cc), dG = upload(g), dAdapted(size_t(n) * 4), dScores(size_t(n) * 4);
    const train::PstFactors<float> cpuF{u.data(), v.data(), a.data(), b.data(), rr.data(), cc.data()};
    const train::PstFactors<float> gpuF{dU.as<float>(), dV.as<float>(), dA.as<float>(), dB.as<float>(),
                                        dR.as<float>(), dC.as<float>()};
    MatF adapted(d.out, d.in), scores(d.out, d.in);
    train::pstAdapted(w.data(), cpuF, d, adapted.data());
    train::pstScores(adapted.data(), cpuF, d, scores.data());
    ops.pstAdapted(dW.as<float>(), gpuF, d, dAdapted.as<float>());
    ops.pstScores(dAdapted.as<float>(), gpuF, d, dScores.as<float>());
    Comparison c;
    c.add("adapted", dAdapted, adapted);
    c.add("scores", dScores, scores);
    // The masks, from the CPU's scores on both sides.
    int64_t wrong = 0;
    MatF ties = scores;
    for (int64_t i = 0; i < n; ++i)
        ties.data()[i] = std::round(ties.data()[i] * 4.0f) / 4.0f;
    std::vector<uint8_t> mask(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    DeviceMemory dMask(static_cast<size_t>(n));
    for (const MatF *s : {&scores, &ties})
        for (const double sparsity : {0.0, 0.3, 0.5, 0.9, 1.0}) {
            const int64_t prune = train::prunedCount(n, sparsity);
            train::pruneSmallest(s->data(), n, prune, mask.data());
            const DeviceMemory dS = upload(*s);
            ops.pruneSmallest(dS.as<float>(), n, prune, dMask.as<uint8_t>());
            LATHE_CUDA_CHECK(cudaMemcpy(got.data(), dMask.as(), size_t(n), cudaMemcpyDeviceToHost));
            for (int64_t i = 0; i < n; ++i)
                wrong += got[size_t(i)] != mask[size_t(i)];
        }
    c.addValue("masks (entries that differ)", double(wrong), 0.0);
    // The backward, with the mask of the scores at 50% sparsity.
    train::pruneSmallest(scores.data(), n, train::prunedCount(n, 0.5), mask.data());
    dMask = upload(mask);
    MatF gu = in.mat(d.out, r, 0.1f), gv = in.mat(r, d.in, 0.1f), ga = in.mat(d.out, mr, 0.1f),
         gb = in.mat(mr, d.in, 0.1f), gr = in.mat(d.out, 1, 0.1f), gc = in.mat(d.in, 1, 0.1f), gw = in.mat(d.out, d.in);
    DeviceMemory dGu = upload(gu), dGv = upload(gv), dGa = upload(ga), dGb = upload(gb), dGr = upload(gr),
                 dGc = upload(gc), dGw = upload(gw), dWork(size_t(n) * 4);
    const DeviceMemory dAdaptedCpu = upload(adapted); // the CPU's W~ on both sides
    MatF workS(d.out, d.in), workA(d.out, d.in);
    train::pstBackward(g.data(), adapted.data(), mask.data(), cpuF, d,
                       {gu.data(), gv.data(), ga.data(), gb.data(), gr.data(), gc.data(), gw.data()}, workS.data(),
                       workA.data());
    ops.pstBackward(dG.as<float>(), dAdaptedCpu.as<float>(), dMask.as<uint8_t>(), gpuF, d,
                    {dGu.as<float>(), dGv.as<float>(), dGa.as<float>(), dGb.as<float>(), dGr.as<float>(),
                     dGc.as<float>(), dGw.as<float>()},
                    dScores.as<float>(), dWork.as<float>());
    c.add("dU", dGu, gu);
    c.add("dV", dGv, gv);
    c.add("dA", dGa, ga);
    c.add("dB", dGb, gb);
    c.add("dR", dGr, gr);
    c.add("dC", dGc, gc);
    c.add("dW", dGw, gw);
    return c.result("train pst", kFp32, dims({{"out", d.out}, {"in", d.in}, {"rank", r}, {"mask rank", mr}}));
}

// LoSparse's per-step work on S: the row sums of |S ⊙ G| against train::rowAbsProductSums, and pruned rows zeroed.
GpuCheck loSparseRows(TrainOps &ops) {
    Inputs in(23);
    const int64_t rows = 70, cols = 300;
    const MatF s = in.mat(rows, cols), g = in.mat(rows, cols);
    std::vector<float> sums(static_cast<size_t>(rows));
    train::rowAbsProductSums(s.data(), g.data(), rows, cols, sums.data());
    DeviceMemory dS = upload(s), dG = upload(g), dSums(sums.size() * sizeof(float));
    ops.rowAbsProductSums(dS.as<float>(), dG.as<float>(), rows, cols, dSums.as<float>());
    Comparison c;
    c.add("row sums", dSums, sums.data(), rows);
    std::vector<uint8_t> keep(static_cast<size_t>(rows));
    MatF zeroed = s;
    for (int64_t r = 0; r < rows; ++r) {
        keep[size_t(r)] = uint8_t(r % 4 != 1);
        if (!keep[size_t(r)])
            zeroed.row(r).setZero();
    }
    const DeviceMemory dKeep = upload(keep);
    ops.zeroRows(dS.as<float>(), dKeep.as<uint8_t>(), rows, cols);
    c.add("rows zeroed", dS, zeroed);
    return c.result("train losparse rows", kFp32, dims({{"rows", rows}, {"cols", cols}}));
}

// The gathered steps' ops (SAT) against their CPU definitions: a gather of rows and columns, its scatter-add back,
// AdamW on the listed rows and columns only (the others, moments included, unchanged), on a bias's entries, and
// the channel and group norms (train::activationNorms).
GpuCheck gathered(TrainOps &ops) {
    Inputs in(22);
    const int64_t rows = 40, cols = 90;
    const MatF w = in.mat(rows, cols), g = in.mat(rows, cols), m = in.mat(rows, cols, 0.1f);
    MatF v = in.mat(rows, cols, 0.1f);
    v = v.cwiseAbs();
    std::vector<int32_t> rowList, colList;
    for (int32_t r = 1; r < rows; r += 3)
        rowList.push_back(r);
    for (int32_t c = 0; c < cols; c += 2)
        colList.push_back(c);
    const int64_t nr = int64_t(rowList.size()), nc = int64_t(colList.size());
    const DeviceMemory dRows = upload(rowList), dCols = upload(colList);
    DeviceMemory dW = upload(w), dG = upload(g), dM = upload(m), dV = upload(v), dBlock(size_t(nr * nc) * 4);
    MatF block(nr, nc);
    for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = 0; j < nc; ++j)
            block(i, j) = w(rowList[size_t(i)], colList[size_t(j)]);
    ops.gather(dBlock.as<float>(), dW.as<float>(), cols, dRows.as<int32_t>(), nr, dCols.as<int32_t>(), nc);
    Comparison c;
    c.add("gather", dBlock, block);
    // Scatter-add the block into the gradient.
    MatF grad = g;
    for (int64_t i = 0; i < nr; ++i)
        for (int64_t j = 0; j < nc; ++j)
            grad(rowList[size_t(i)], colList[size_t(j)]) += block(i, j);
    ops.scatterAdd(dG.as<float>(), cols, dBlock.as<float>(), dRows.as<int32_t>(), nr, dCols.as<int32_t>(), nc);
    c.add("scatter-add", dG, grad);
    // AdamW on the listed rows and columns, from the original gradient.
    const DeviceMemory dGrad = upload(g);
    const cpu::AdamWConstants k{0.9f, 0.999f, 0.99f, 1e-3f, 0.3f, 1e-8f};
    MatF w2 = w, m2 = m, v2 = v;
    std::vector<float> keep(size_t(cols), 0.0f);
    for (const int32_t col : colList)
        keep[size_t(col)] = 1.0f;
    for (const int32_t r : rowList)
        cpu::cpuKernels().adamwMasked(w2.row(r).data(), m2.row(r).data(), v2.row(r).data(), g.row(r).data(),
                                      keep.data(), cols, k);
    ops.adamwSome(dW.as<float>(), dM.as<float>(), dV.as<float>(), dGrad.as<float>(), cols, dRows.as<int32_t>(), nr,
                  dCols.as<int32_t>(), nc, k);
    c.add("adamw rows and columns: w", dW, w2);
    c.add("m", dM, m2);
    c.add("v", dV, v2);
    // A bias (cols 1): its listed entries.
    const VecF b = in.vec(rows), bg = in.vec(rows), bm = in.vec(rows, 0.1f);
    VecF bv = in.vec(rows, 0.1f).cwiseAbs();
    DeviceMemory dB = upload(b), dBg = upload(bg), dBm = upload(bm), dBv = upload(bv);
    VecF b2 = b, bm2 = bm, bv2 = bv;
    for (const int32_t r : rowList)
        cpu::cpuKernels().adamw(b2.data() + r, bm2.data() + r, bv2.data() + r, bg.data() + r, 1, k);
    ops.adamwSome(dB.as<float>(), dBm.as<float>(), dBv.as<float>(), dBg.as<float>(), 1, dRows.as<int32_t>(), nr,
                  nullptr, 1, k);
    c.add("adamw bias entries", dB, b2);
    // Norms of 40 x 90 activations and of a 40 x (3 groups x 12) context.
    const int groups = 3;
    const int64_t width = 12;
    const MatF ctx = in.mat(rows, groups * width);
    std::vector<float> norms(size_t(cols + groups));
    train::activationNorms(w.data(), rows, cols, ctx.data(), groups, width, norms.data());
    DeviceMemory dAct = upload(w), dCtx = upload(ctx), dNorms(norms.size() * sizeof(float));
    ops.activationNorms(dAct.as<float>(), rows, cols, dCtx.as<float>(), groups, width, dNorms.as<float>());
    c.add("channel norms", dNorms, norms.data(), int64_t(norms.size()));
    return c.result("train gathered", kFp32, dims({{"rows", rows}, {"cols", cols}, {"kept rows", nr}, {"kept cols", nc}}));
}

GpuCheck relu(TrainOps &ops) {
    Inputs in(17);
    const int64_t rows = 19, width = 130, n = rows * width;
    const MatF x = in.mat(rows, width, 3.0f), dy = in.mat(rows, width);
    MatF y, dx = in.mat(rows, width, 0.1f);
    DeviceMemory dX = upload(x), dDy = upload(dy), dDx = upload(dx), dY(size_t(n) * 4);
    ops.reluForward(dX.as<float>(), n, dY.as<float>());
    ops.reluBackward(dDy.as<float>(), dX.as<float>(), n, dDx.as<float>());
    train::reluForward(x, y);
    train::reluBackward(dy, x, dx);
    Comparison c;
    c.add("y", dY, y);
    c.add("dx", dDx, dx);
    return c.result("train relu", kFp32, dims({{"n", n}}));
}

GpuCheck crossEntropy(TrainOps &ops, bool bias) {
    Inputs in(8);
    const int64_t rows = 29, width = 48, vocab = 1000, chunk = 384; // 384 does not divide 1000
    const MatF h = in.mat(rows, width), w = in.mat(vocab, width, 0.3f);
    const VecF b = bias ? in.vec(vocab, 0.5f) : VecF();
    std::vector<int32_t> targets = in.ids(size_t(rows), int32_t(vocab));
    targets[3] = targets[17] = -1; // rows without a target (padding, the last token)
    MatF dh = in.mat(rows, width, 0.01f), dw = in.mat(vocab, width, 0.01f);
    VecF db = in.vec(vocab, 0.01f);
    const float scale = 0.5f; // gradient accumulation over two micro-batches
    DeviceMemory dH = upload(h), dW = upload(w), dB = upload(b), dDh = upload(dh), dDw = upload(dw), dDb = upload(db),
                 dLse(size_t(rows) * 4);
    int64_t count = 0;
    const float loss = ops.crossEntropyForward(dH.as<float>(), dW.as<float>(), bias ? dB.as<float>() : nullptr, rows,
                                               width, vocab, targets, chunk, dLse.as<float>(), &count);
    ops.crossEntropyBackward(dH.as<float>(), dW.as<float>(), bias ? dB.as<float>() : nullptr, rows, width, vocab,
                             targets, chunk, dLse.as<float>(), count, scale, dDh.as<float>(), dDw.as<float>(),
                             bias ? dDb.as<float>() : nullptr);
    train::CrossEntropyState<float> s;
    const float want = train::crossEntropyForward(h, w, b, targets, chunk, s);
    train::crossEntropyBackward(h, w, b, targets, chunk, s, scale, dh, &dw, bias ? &db : nullptr);
    Comparison c;
    c.addValue("loss", loss, want);
    c.addValue("count", double(count), double(s.count));
    c.add("lse", dLse, s.logSumExp);
    // The gradients are small next to the loss: compare them on their own scale.
    Comparison g;
    g.add("dh", dDh, dh);
    g.add("dw", dDw, dw);
    if (bias)
        g.add("db", dDb, db);
    const bool bf16 = ops.precision() == ComputePrecision::Bf16;
    const double tol = bf16 ? kBf16 : kFp32;
    const std::string name = std::string("train cross-entropy") + (bias ? " with bias" : "") + (bf16 ? " bf16" : "");
    const std::string shape = dims({{"rows", rows}, {"width", width}, {"vocab", vocab}, {"chunk", chunk}});
    GpuCheck values = c.result(name, tol, shape), grads = g.result(name, tol, shape);
    GpuCheck out = values.error >= grads.error ? values : grads;
    out.passed = values.passed && grads.passed;
    out.detail = shape + ": loss, count, lse " + std::to_string(values.error) + "; dh, dw" + (bias ? ", db " : " ") +
                 std::to_string(grads.error);
    return out;
}

GpuCheck adamw(TrainOps &ops) {
    Inputs in(9);
    const int64_t n = 100003;
    MatF w = in.mat(1, n), m = MatF::Zero(1, n), v = MatF::Zero(1, n);
    DeviceMemory dW = upload(w), dM = upload(m), dV = upload(v);
    // Two steps of torch's defaults with weight decay at lr 1e-3.
    for (int step = 1; step <= 2; ++step) {
        const MatF g = in.mat(1, n, 0.01f);
        DeviceMemory dG = upload(g);
        const double lr = 1e-3, b1 = 0.9, b2 = 0.999;
        const cpu::AdamWConstants k{float(b1), float(b2), float(1.0 - lr * 0.01),
                                    float(lr / (1.0 - std::pow(b1, step))),
                                    float(std::sqrt(1.0 - std::pow(b2, step))), 1e-8f};
        cpu::cpuKernels().adamw(w.data(), m.data(), v.data(), g.data(), n, k);
        ops.adamw(dW.as<float>(), dM.as<float>(), dV.as<float>(), dG.as<float>(), n, k);
    }
    Comparison c;
    c.add("w", dW, w);
    GpuCheck out = c.result("train adamw", kAdamW, dims({{"n", n}, {"steps", 2}}));
    Comparison moments;
    moments.add("m", dM, m);
    moments.add("v", dV, v);
    const GpuCheck mv = moments.result("", kFp32, "");
    out.passed = out.passed && mv.passed;
    out.detail += "; moments " + std::to_string(mv.error);
    return out;
}

GpuCheck gradientNorm(TrainOps &ops) {
    Inputs in(10);
    const MatF a = in.mat(1, 70001), b = in.mat(13, 17, 3.0f);
    DeviceMemory dA = upload(a), dB = upload(b);
    const double got = ops.sumOfSquares({{dA.as<float>(), a.size()}, {dB.as<float>(), b.size()}});
    double want = 0;
    for (const MatF *m : {&a, &b})
        for (int64_t i = 0; i < m->size(); ++i)
            want += double(m->data()[i]) * double(m->data()[i]);
    Comparison c;
    c.addValue("sum of squares", got, want);
    return c.result("train gradient norm", 1e-12, dims({{"n", a.size() + b.size()}}));
}

} // namespace

std::vector<GpuCheck> runTrainOpChecks() {
    GpuContext &ctx = GpuContext::forDevice(0);
    ctx.activate();
    std::vector<GpuCheck> out;
    const auto guarded = [&](const std::string &name, const std::function<GpuCheck()> &fn) {
        try {
            out.push_back(fn());
        } catch (const std::exception &e) {
            out.push_back({name, false, INFINITY, 0, e.what()});
        }
    };
    TrainOps fp32(ctx.blas(), ComputePrecision::Fp32), bf16(ctx.blas(), ComputePrecision::Bf16);
    guarded("train embedding", [&] { return embedding(fp32); });
    guarded("train rmsnorm", [&] { return norm(fp32, false); });
    guarded("train layernorm", [&] { return norm(fp32, true); });
    guarded("train linear fp32", [&] { return linear(fp32); });
    guarded("train linear bf16", [&] { return linear(bf16); });
    guarded("train rope", [&] { return rope(fp32); });
    guarded("train attention causal gqa", [&] { return attention(fp32, true, 6, 2); });
    guarded("train attention bidirectional", [&] { return attention(fp32, false, 4, 4); });
    guarded("train attention causal gqa bf16", [&] { return attention(bf16, true, 6, 2); });
    // The fused kernels (LATHE_GPU_TRAIN_ATTENTION=fused): one tile with a tail, SmolLM2's heads at head width 64
    // over five tiles (the last partial), BERT's bidirectional case, Phi-2's head width 80, and an 8-wide head (the
    // fixtures' and the demo model's) padded to the tiles' 16 over two tiles.
    TrainOps fused(ctx.blas(), ComputePrecision::Bf16, train::AttentionStore::LogSumExp);
    guarded("train attention causal gqa fused d16 s37", [&] { return attention(fused, true, 6, 2); });
    guarded("train attention causal gqa fused d64 s300", [&] { return attention(fused, true, 9, 3, 2, 300, 64); });
    guarded("train attention bidirectional fused d64 s130", [&] { return attention(fused, false, 4, 4, 3, 130, 64); });
    guarded("train attention causal fused d80 s200", [&] { return attention(fused, true, 4, 4, 1, 200, 80); });
    guarded("train attention causal gqa fused d8 s100", [&] { return attention(fused, true, 8, 2, 2, 100, 8); });
    guarded("train swiglu", [&] { return swiglu(fp32); });
    guarded("train gelu tanh", [&] { return gelu(fp32, train::Gelu::Tanh); });
    guarded("train gelu erf", [&] { return gelu(fp32, train::Gelu::Erf); });
    guarded("train relu", [&] { return relu(fp32); });
    guarded("train masked gradient", [&] { return maskedAdd(fp32); });
    guarded("train row-masked add", [&] { return rowMaskedAdd(fp32); });
    guarded("train pst", [&] { return pst(fp32); });
    guarded("train gathered", [&] { return gathered(fp32); });
    guarded("train losparse rows", [&] { return loSparseRows(fp32); });
    guarded("train cross-entropy", [&] { return crossEntropy(fp32, false); });
    guarded("train cross-entropy with bias", [&] { return crossEntropy(fp32, true); });
    guarded("train cross-entropy bf16", [&] { return crossEntropy(bf16, false); });
    guarded("train adamw", [&] { return adamw(fp32); });
    guarded("train gradient norm", [&] { return gradientNorm(fp32); });
    return out;
}

void runGuarded(std::vector<GpuCheck> &out, const std::string &name, const std::function<void()> &check) {
    try {
        check();
    } catch (const std::exception &e) {
        out.push_back({name, false, INFINITY, 0, e.what()});
    }
}

} // namespace lathe::gpu
