#pragma once

// The block linears of OpsTrainer (train/opstrainer.h) on its ops backend: OpsParam, a parameter with its gradient
// and AdamW moments on the backend's buffers, and OpsLinears, a block linear's forward and backward whatever its
// kind: dense; masked with a fixed mask over weights that are zero where it prunes (the recovery method's
// MaskedLinear: the forward is the dense one, the weight's gradient computed apart and added through the mask, as
// MaskedLinear::backward does); low rank + sparse (LoSparse's LowRankSparseLinear: W_eff = L R + S with S's pruned
// rows left out, formed before each product as the CPU forms it, the row mask read from the CausalLm's linear at
// every forward); PST's (PstLinear: W~ = W + beta U V and the scores formed and the mask selected on the device at
// every forward, with the sparsity read from the CausalLm's linear, and W~ formed again in backward, as the CPU
// does); or a dense one on a gathered step's rows and columns (SAT). The ops run in the CPU kinds' order, so the
// reference ops give their bits (tst_devicetraining opsTrainerComposition).

#include "base/error.h"
#include "train/causallm.h"
#include "train/linearkinds.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lathe::train {

// One parameter: value, and while it trains its gradient and both AdamW moments, fp32, in the CausalLm's
// layout (a frozen one has neither: no memory, and its weight gradient is skipped).
template <class Buffer> struct OpsParam {
    std::string name;
    int64_t rows = 0, cols = 0;
    bool decay = true, trainable = true;
    Buffer w, g, m, v, mask; // mask: a fixed mask's bytes (1 keeps), for masked linears' weights only
    // The rows and columns the last forward computed with (a gathered step's index lists in the block's
    // buffers; a bias lists its entries as rows), which AdamW then updates alone; null: all.
    const int32_t *activeRows = nullptr, *activeCols = nullptr;
    int64_t activeRowCount = 0, activeColCount = 0;
    int64_t size() const { return rows * cols; }
    bool masked() const { return mask.bytes() > 0; }
    float *value() const { return w.template as<float>(); }
    float *grad() const { return trainable ? g.template as<float>() : nullptr; }
};

// A parameter's values, and its gradient, or null (no such parameter, or a frozen one: no gradient).
template <class Buffer> const float *orNull(const OpsParam<Buffer> *p) { return p ? p->value() : nullptr; }
template <class Buffer> float *gradOrNull(const OpsParam<Buffer> *p) { return p ? p->grad() : nullptr; }

template <class Ops> class OpsLinears {
public:
    using Buffer = typename Ops::Buffer;
    using Param = OpsParam<Buffer>;
    // A low-rank + sparse linear (LoSparse): L (out x r), R (r x in), S (out x in), its kind on the host (whose row
    // mask the forward reads) and the row mask as last uploaded.
    struct Lrs {
        const LowRankSparseLinear<float> *kind = nullptr;
        Param *l = nullptr, *r = nullptr, *s = nullptr;
        TensorRole role = TensorRole::Unknown;
        int layer = -1;
        Buffer rowMask;
        std::vector<uint8_t> uploaded;
    };
    // A PST linear: the weight W (frozen, unless a caller trains it), U, V, A, B, R and C; its kind on the host
    // (whose sparsity the forward reads), and the mask of its last forward (a byte per weight), which its backward
    // uses.
    struct Pst {
        const PstLinear<float> *kind = nullptr;
        Param *w = nullptr, *u = nullptr, *v = nullptr, *a = nullptr, *b = nullptr, *r = nullptr, *c = nullptr;
        TensorRole role = TensorRole::Unknown;
        int layer = -1;
        Buffer mask;
        PstFactors<float> factors() const { return {u->value(), v->value(), a->value(), b->value(), r->value(), c->value()}; }
        PstGradients<float> gradients() const {
            return {u->grad(), v->grad(), a->grad(), b->grad(), r->grad(), c->grad(), w->grad()};
        }
    };
    // A block linear's weight: a parameter (dense, or masked: Param::masked), a low-rank + sparse triple, or PST's.
    struct Lin {
        Param *w = nullptr;
        Lrs *lrs = nullptr;
        Pst *pst = nullptr;
        explicit operator bool() const { return w || lrs || pst; }
    };
    // The rows and columns a gathered linear computes (index lists in a block's buffers; null: all of them).
    struct Sel {
        const int32_t *rows = nullptr, *cols = nullptr;
        int64_t rowCount = 0, colCount = 0;
        bool all() const { return !rows && !cols; }
    };

    explicit OpsLinears(Ops &ops) : m_ops(&ops) {}
    OpsLinears(const OpsLinears &) = delete;
    OpsLinears &operator=(const OpsLinears &) = delete;

    // Before the parameters are bound: lm's low-rank + sparse and PST linears get their entries, and `parts` where
    // each parameter they add (L, R, S; U, V, A, B, R, C) goes, by name. Returns the fixed-mask linears, to attach
    // once their weights are bound. LatheError naming any other kind (a learned mask), with `hint`.
    std::vector<const MaskedLinear<float> *> collect(const CausalLm<float> &lm,
                                                     std::unordered_map<std::string, Param **> &parts,
                                                     const char *hint) {
        std::vector<const MaskedLinear<float> *> masked;
        for (const auto &slot : lm.linears()) {
            if (dynamic_cast<const DenseLinear<float> *>(slot.kind))
                continue;
            if (const auto *k = dynamic_cast<const LowRankSparseLinear<float> *>(slot.kind)) {
                Lrs &x = *m_lrs.emplace_back(std::make_unique<Lrs>());
                x.kind = k;
                parts[k->left()->name] = &x.l;
                parts[k->right()->name] = &x.r;
                parts[k->sparse()->name] = &x.s;
                x.role = k->left()->role;
                x.layer = k->left()->layer;
                continue;
            }
            if (const auto *k = dynamic_cast<const PstLinear<float> *>(slot.kind)) {
                Pst &x = *m_pst.emplace_back(std::make_unique<Pst>());
                x.kind = k;
                for (auto [param, where] : {std::pair{k->u(), &x.u}, {k->v(), &x.v}, {k->a(), &x.a}, {k->b(), &x.b},
                                            {k->r(), &x.r}, {k->c(), &x.c}})
                    parts[param->name] = where;
                x.role = k->weight()->role;
                x.layer = k->weight()->layer;
                continue;
            }
            const auto *m = dynamic_cast<const MaskedLinear<float> *>(slot.kind);
            if (!m || m->scores())
                throw LatheError(std::string("the GPU trainer runs dense, fixed-mask, low-rank + sparse and PST linears "
                                             "only; the ") +
                                     slot.kind->kindName() + " linear in block " + std::to_string(slot.layer) +
                                     (m ? " learns its mask" : " is not"),
                                 hint);
            masked.push_back(m);
        }
        return masked;
    }

    // A fixed-mask linear's weight `d`: its mask uploaded beside it. Refused when a pruned weight is not zero (the
    // forward multiplies by the weight itself, which must then be W ⊙ M bit for bit).
    void attachMask(const CausalLm<float> &lm, const MaskedLinear<float> &kind, Param &d, const char *hint) {
        const std::string &name = kind.weightName();
        const Parameter<float> *p = lm.parameters().find(name);
        require(p, "GPU training", "the masked linear's weight " + name + " is not a parameter");
        const std::vector<uint8_t> &mask = kind.mask();
        require(int64_t(mask.size()) == d.size(), "GPU training", "the mask of " + name + " has the wrong size");
        for (size_t i = 0; i < mask.size(); ++i)
            if (!mask[i] && p->value.data()[i] != 0.0f)
                throw LatheError("the GPU trainer runs fixed masks over zeroed weights; " + name +
                                     " holds a nonzero value where its mask prunes",
                                 hint);
        d.mask.resize(mask.size());
        m_ops->uploadBytes(d.mask.template as<void>(), mask.data(), mask.size());
        m_largestMasked = std::max(m_largestMasked, d.size());
    }

    // Once the parameters are bound and the masks attached: each low-rank + sparse linear takes its empty place in
    // its block, each PST linear the place of the checkpoint's weight bound there (slotFor(layer, role): the
    // block's slot for that role, null for none), and the scratch is sized for the largest linear of each kind.
    // Returns whether one of them is a fused q/k/v projection.
    bool place(const std::function<Lin *(int layer, TensorRole role)> &slotFor) {
        bool fusedQkv = false;
        int64_t largestLrs = 0;
        for (const std::unique_ptr<Lrs> &x : m_lrs) {
            require(x->l && x->r && x->s, "GPU training",
                    "the low-rank + sparse linear " + x->kind->weightName() + " lacks a part");
            Lin *slot = slotFor(x->layer, x->role);
            require(slot && !*slot, "GPU training", "the low-rank + sparse linear " + x->kind->weightName() +
                                                        " has no place of its own in its block");
            slot->lrs = x.get();
            fusedQkv = fusedQkv || x->role == TensorRole::AttnQkv;
            x->rowMask.resize(size_t(x->s->rows));
            largestLrs = std::max(largestLrs, x->s->size());
        }
        // PST: the checkpoint's weight was bound to its block's slot; it moves into the PST linear.
        int64_t largestPst = 0;
        for (const std::unique_ptr<Pst> &x : m_pst) {
            require(x->u && x->v && x->a && x->b && x->r && x->c,
                    "GPU training", "the PST linear " + x->kind->weightName() + " lacks a part");
            Lin *slot = slotFor(x->layer, x->role);
            require(slot && slot->w && !slot->lrs && !slot->pst && slot->w->name == x->kind->weightName(),
                    "GPU training", "the PST linear " + x->kind->weightName() + " has no weight of its own in its block");
            x->w = slot->w;
            slot->w = nullptr;
            slot->pst = x.get();
            fusedQkv = fusedQkv || x->role == TensorRole::AttnQkv;
            x->mask.resize(size_t(x->w->size()));
            largestPst = std::max(largestPst, x->w->size());
        }
        const int64_t largest = std::max({m_largestMasked, largestLrs, largestPst});
        if (largest > 0)
            m_g.resize(size_t(largest) * sizeof(float));
        if (std::max(largestLrs, largestPst) > 0)
            m_weff.resize(size_t(std::max(largestLrs, largestPst)) * sizeof(float));
        if (largestPst > 0)
            for (Buffer *b : {&m_pstAdapted, &m_pstScores, &m_pstWork})
                b->resize(size_t(largestPst) * sizeof(float));
        return fusedQkv;
    }

    // y = x W^T + b for a block linear (W: out x in), on the rows and columns `sel` selects (x: rows x in', y:
    // rows x out').
    void forward(const Lin &w, const Param *b, const float *x, int64_t rows, int64_t in, int64_t out, float *y,
                 const Sel &sel = {}) {
        if (!sel.all()) {
            const float *weight = gatheredWeight(w, b, sel, in, out);
            m_ops->linearForward(x, weight, b ? f(m_gb) : nullptr, rows, sel.cols ? sel.colCount : in,
                                 sel.rows ? sel.rowCount : out, y);
            return;
        }
        const float *weight = w.pst ? effectiveWeight(*w.pst, true) : w.lrs ? effectiveWeight(*w.lrs) : w.w->value();
        m_ops->linearForward(x, weight, orNull(b), rows, in, out, y);
    }

    // Its backward: dx += dy W, dW += dy^T x, db += the column sums of dy, each when there is one. A masked weight's
    // gradient is computed apart and added through its mask (MaskedLinear's order, so the same bits on the
    // reference ops); a low-rank + sparse one's reaches L (G R^T), R (L^T G) and S's kept rows (G), as
    // LowRankSparseLinear::backward computes them; a PST one's reaches U, V, A, B, R and C by pstBackward.
    void backward(const float *dy, const float *x, const Lin &lin, const Param *b, int64_t rows, int64_t in,
                  int64_t out, float *dx, const Sel &sel = {}) {
        if (!sel.all()) {
            gatheredBackward(dy, x, lin, b, rows, in, out, dx, sel);
            return;
        }
        const Param *w = lin.w;
        if (w && !w->masked()) {
            m_ops->linearBackward(dy, x, w->value(), rows, in, out, dx, w->grad(), gradOrNull(b));
            return;
        }
        const float *weight = lin.pst   ? effectiveWeight(*lin.pst, false)
                              : lin.lrs ? effectiveWeight(*lin.lrs)
                                        : w->value();
        m_ops->linearBackward(dy, x, weight, rows, in, out, dx, nullptr, nullptr);
        const auto trains = [](std::initializer_list<const Param *> ps) {
            return std::any_of(ps.begin(), ps.end(), [](const Param *p) { return p->trainable; });
        };
        const bool gradient = w          ? w->trainable
                              : lin.lrs ? trains({lin.lrs->l, lin.lrs->r, lin.lrs->s})
                                        : trains({lin.pst->w, lin.pst->u, lin.pst->v, lin.pst->a, lin.pst->b,
                                                  lin.pst->r, lin.pst->c});
        if (gradient) {
            m_ops->zero(f(m_g), out * in);
            m_ops->linearBackward(dy, x, weight, rows, in, out, nullptr, f(m_g), nullptr);
            if (lin.pst) {
                const Pst &z = *lin.pst;
                m_ops->pstBackward(f(m_g), f(m_pstAdapted), z.mask.template as<uint8_t>(), z.factors(), z.kind->dims(),
                                  z.gradients(), f(m_pstScores), f(m_pstWork));
            } else if (w) {
                m_ops->maskedAdd(w->grad(), f(m_g), w->mask.template as<uint8_t>(), out * in);
            } else {
                const Lrs &z = *lin.lrs;
                const int64_t rank = z.l->cols;
                if (z.l->trainable)
                    m_ops->gemm(false, true, out, rank, in, 1.0f, f(m_g), in, z.r->value(), in, 1.0f, z.l->grad(), rank);
                if (z.r->trainable)
                    m_ops->gemm(true, false, rank, in, out, 1.0f, z.l->value(), rank, f(m_g), in, 1.0f, z.r->grad(), in);
                if (z.s->trainable)
                    m_ops->rowMaskedAdd(z.s->grad(), f(m_g), z.rowMask.template as<uint8_t>(), out, in);
            }
        }
        if (gradOrNull(b))
            m_ops->linearBackward(dy, x, weight, rows, in, out, nullptr, nullptr, b->grad());
    }

    // Device bytes beside the parameters: the low-rank + sparse linears' row masks, the PST linears' masks, and the
    // weight-gradient, W_eff, W~, score, work and gathered-block scratch of the largest linear (a fixed mask is its
    // weight's Param::mask, counted with the parameters' masks).
    uint64_t bytes() const {
        uint64_t n = 0;
        for (const Buffer *b : {&m_g, &m_weff, &m_pstAdapted, &m_pstScores, &m_pstWork, &m_gw, &m_gb, &m_gbGrad})
            n += b->bytes();
        for (const std::unique_ptr<Lrs> &x : m_lrs)
            n += x->rowMask.bytes();
        for (const std::unique_ptr<Pst> &x : m_pst)
            n += x->mask.bytes();
        return n;
    }

private:
    static float *f(const Buffer &b) { return b.template as<float>(); }

    // A low-rank + sparse linear's W_eff = L R + S (S's pruned rows left out) in m_weff, as
    // LowRankSparseLinear::effectiveWeight forms it; the kind's row mask uploaded first when it changed.
    const float *effectiveWeight(Lrs &x) {
        const std::vector<uint8_t> &mask = x.kind->rowMask();
        if (mask != x.uploaded) {
            require(int64_t(mask.size()) == x.s->rows, "GPU training", "the row mask of " + x.kind->weightName() +
                                                                          " has the wrong size");
            m_ops->uploadBytes(x.rowMask.template as<void>(), mask.data(), mask.size());
            x.uploaded = mask;
        }
        const int64_t out = x.s->rows, in = x.s->cols, rank = x.l->cols;
        m_ops->zero(f(m_weff), out * in);
        m_ops->rowMaskedAdd(f(m_weff), x.s->value(), x.rowMask.template as<uint8_t>(), out, in);
        m_ops->gemm(false, false, out, in, rank, 1.0f, x.l->value(), rank, x.r->value(), in, 1.0f, f(m_weff), in);
        return f(m_weff);
    }

    // A PST linear's W_eff = W~ ⊙ mask in m_weff, W~ = W + beta U V in m_pstAdapted. The forward (`select`) finds
    // the mask from the scores of the parameters as they are, at the sparsity the kind holds now (PstLinear::forward);
    // the backward forms W~ again and applies the forward's mask (PstLinear::backward).
    const float *effectiveWeight(Pst &x, bool select) {
        const PstDims d = x.kind->dims();
        const int64_t n = d.out * d.in;
        m_ops->pstAdapted(x.w->value(), x.factors(), d, f(m_pstAdapted));
        if (select) {
            m_ops->pstScores(f(m_pstAdapted), x.factors(), d, f(m_pstScores));
            m_ops->pruneSmallest(f(m_pstScores), n, prunedCount(n, x.kind->sparsity()), x.mask.template as<uint8_t>());
        }
        m_ops->zero(f(m_weff), n);
        m_ops->maskedAdd(f(m_weff), f(m_pstAdapted), x.mask.template as<uint8_t>(), n);
        return f(m_weff);
    }

    // A gathered step's W restricted to its selected rows and columns in m_gw (out' x in'), and the bias's entries
    // in m_gb when one is given; `in` and `out` are the full sizes. Dense linears only (CausalLm's other kinds refuse selections).
    const float *gatheredWeight(const Lin &w, const Param *b, const Sel &sel, int64_t in, int64_t out) {
        if (!w.w || w.w->masked())
            throw LatheError("a gathered (SAT) step needs dense linears; block linear " +
                                 (w.w ? w.w->name : std::string("of another kind")) + " is not",
                             "train this on the CPU (device cpu)");
        const int64_t rows = sel.rows ? sel.rowCount : out, cols = sel.cols ? sel.colCount : in;
        m_gw.ensure(size_t(rows * cols) * sizeof(float));
        m_ops->gather(f(m_gw), w.w->value(), in, sel.rows, rows, sel.cols, cols);
        if (b) {
            m_gb.ensure(size_t(rows) * sizeof(float));
            m_ops->gather(f(m_gb), b->value(), 1, sel.rows, rows, nullptr, 1);
        }
        return f(m_gw);
    }

    // The backward of a gathered linear, as DenseLinear::backward with a selection: dx and the gathered block's
    // weight gradient in one product, the block added into W's gradient, the bias's column sums into its entries.
    void gatheredBackward(const float *dy, const float *x, const Lin &lin, const Param *b, int64_t rows, int64_t in,
                          int64_t out, float *dx, const Sel &sel) {
        const float *weight = gatheredWeight(lin, nullptr, sel, in, out); // the bias's values are not needed
        const int64_t outG = sel.rows ? sel.rowCount : out, inG = sel.cols ? sel.colCount : in;
        const Param *w = lin.w;
        if (w->trainable) {
            m_g.ensure(size_t(outG * inG) * sizeof(float));
            m_ops->zero(f(m_g), outG * inG);
        }
        m_ops->linearBackward(dy, x, weight, rows, inG, outG, dx, w->trainable ? f(m_g) : nullptr, nullptr);
        if (w->trainable)
            m_ops->scatterAdd(w->grad(), in, f(m_g), sel.rows, outG, sel.cols, inG);
        if (gradOrNull(b)) {
            m_gbGrad.ensure(size_t(outG) * sizeof(float));
            m_ops->zero(f(m_gbGrad), outG);
            m_ops->linearBackward(dy, x, weight, rows, inG, outG, nullptr, nullptr, f(m_gbGrad));
            m_ops->scatterAdd(b->grad(), 1, f(m_gbGrad), sel.rows, outG, nullptr, 1);
        }
    }

    Ops *m_ops; // the trainer's
    int64_t m_largestMasked = 0;
    Buffer m_g;    // a masked, low-rank + sparse or PST weight's gradient, or a gathered block's (the largest)
    Buffer m_weff; // a low-rank + sparse or PST linear's W_eff
    // PST: W~, the scores (in backward dScores) and dW~ of the linear being run (the largest one's size).
    Buffer m_pstAdapted, m_pstScores, m_pstWork;
    std::vector<std::unique_ptr<Lrs>> m_lrs;
    std::vector<std::unique_ptr<Pst>> m_pst;
    Buffer m_gw, m_gb, m_gbGrad; // a gathered step's weight block, bias entries and bias gradient
};

} // namespace lathe::train
