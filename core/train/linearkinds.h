#pragma once

#include "train/causallm.h"
#include "numeric/linalg.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// The linear layers of the training engine (issue 17 item 4): every block linear of a CausalLm is one of these
// kinds, each with its forward and backward side by side. All compute y = x W_eff^T + b with W_eff (out x in, the
// Hugging Face layout) formed from the kind's own parameters:
//
//   dense           W_eff = W
//   masked          W_eff = W ⊙ M, M a fixed 0/1 mask, or M = top_k(S) from trainable scores S with a
//                   straight-through gradient dS = dW_eff ⊙ W (movement pruning's estimator)
//   low-rank+sparse W_eff = L R + diag(m) S, L (out x r), R (r x in), m a 0/1 row mask (LoSparse)
//   PST             W~ = W + U V with W frozen, scores M = |W~| + A B + R 1^T + 1 C^T, W_eff = W~ ⊙ top_k(M); the
//                   gradient reaches M straight through the mask and U, V both through W~ and through |W~| in M
//   gathered        any dense linear evaluated on a subset of its output rows and/or input columns
//                   (LinearSelection): the product runs on the gathered (out' x in') block only, so the skipped
//                   rows and columns cost nothing (SAT)
//
// A kind owns no memory of the ParameterSet: it registers its parameters there (named after the linear, e.g.
// model.layers.0.mlp.up_proj.lowrank_left) and keeps pointers to them. Backward accumulates into dx and into the
// gradients of the trainable ones, like every op (train/ops.h).
namespace lathe::train {

// Row and column subsets (sorted, distinct) of a gathered linear; an empty list means all. With `cols` set, the
// input x holds only those columns (the previous gathered op produced them); with `rows` set, y holds only those
// outputs.
struct LinearSelection {
    std::vector<int32_t> rows, cols;
    bool all() const { return rows.empty() && cols.empty(); }
};

// The rows and columns each linear of a block computes for its BlockSelection (train/causallm.h), and the
// attention's head counts then: the MLP's channels are rows of gate and up and columns of down; a KV group is its
// K and V rows, its query heads' rows of q (of the fused q/k/v: all three) and their columns of o. All empty for a
// block that runs everything. CausalLm's and the GPU trainer's gathered steps both follow it.
struct BlockGather {
    AttentionDims dims;
    LinearSelection q, k, v, qkv, o, in, down; // in: gate and up
};
BlockGather blockGather(const AttentionDims &dims, const BlockSelection &sel);

// SAT's scores of a forward (CausalLm::ChannelNorms before their mapping to the full numbering): out[j] for
// j < channels, the L2 norm of column j of act (rows x channels, row-major), then out[channels + g] for g < groups,
// the L2 norm of columns [g groupWidth, (g + 1) groupWidth) of ctx (rows x groups groupWidth). Shared by CausalLm and
// the GPU trainer's reference ops, so both compute the same bits.
template <class T>
void activationNorms(const T *act, int64_t rows, int64_t channels, const T *ctx, int groups, int64_t groupWidth, T *out);

template <class T> class LinearKind {
public:
    virtual ~LinearKind() = default;
    virtual const char *kindName() const = 0;
    // The Hugging Face name of the weight this linear replaces ("model.layers.0.self_attn.q_proj.weight"): the
    // export writes effectiveWeight() under it.
    const std::string &weightName() const { return m_weightName; }
    int64_t outFeatures() const { return m_out; }
    int64_t inFeatures() const { return m_in; }
    Parameter<T> *bias() const { return m_bias; }

    virtual void forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel = {}) = 0;
    // Accumulates dx (when non-null: a first layer's input may need none) and the trainable parameters' gradients;
    // x and the selection are those of the matching forward.
    virtual void backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel = {}) = 0;
    // The dense (out x in) weight the next forward would apply (masks from the scores as they are now).
    virtual Matrix<T> effectiveWeight() const = 0;
    // Weights the forward applies: nonzeros of effectiveWeight() for the sparse kinds, out x in otherwise.
    virtual int64_t activeWeights() const { return m_out * m_in; }

protected:
    LinearKind(std::string weightName, int64_t out, int64_t in, Parameter<T> *bias)
        : m_weightName(std::move(weightName)), m_out(out), m_in(in), m_bias(bias) {}
    // The bias part of forward and backward, over the selected rows.
    void addBias(Matrix<T> &y, const LinearSelection &sel) const;
    void biasBackward(const Matrix<T> &dy, const LinearSelection &sel) const;
    // Refuses a selection on a kind that cannot gather.
    void requireAll(const LinearSelection &sel) const;

    std::string m_weightName;
    int64_t m_out, m_in;
    Parameter<T> *m_bias;
};

// y = x W^T + b, with selections (the gathered kind).
template <class T> class DenseLinear : public LinearKind<T> {
public:
    DenseLinear(Parameter<T> *weight, Parameter<T> *bias);
    const char *kindName() const override { return "dense"; }
    Parameter<T> *weight() const { return m_w; }
    void forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel = {}) override;
    void backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel = {}) override;
    Matrix<T> effectiveWeight() const override { return m_w->value; }

private:
    Parameter<T> *m_w;
};

// How many of n scores a sparsity prunes: floor(sparsity * n), within 0..n (PST's count).
int64_t prunedCount(int64_t n, double sparsity);
// A 0/1 mask (1 keeps) over n scores that prunes the `prune` smallest and keeps the rest, found by selection (a
// radix select split over the threads), not a sort; of the scores equal to the threshold the first ones by position
// go, so it is deterministic and the same on any number of threads. LatheError on a NaN score.
template <class T> void pruneSmallest(const T *scores, int64_t n, int64_t prune, uint8_t *mask);
// The same as a mask of `scores`' shape, pruning prunedCount(n, sparsity).
template <class T> std::vector<uint8_t> pruneSmallestMask(const Matrix<T> &scores, double sparsity);

// W ⊙ M with a fixed mask, or with M = pruneSmallestMask(S, sparsity) of trainable scores S (name
// "<linear>.mask_scores", initialised to |W|, no weight decay) and a straight-through gradient.
template <class T> class MaskedLinear : public LinearKind<T> {
public:
    // Fixed mask (out x in, 0/1): the weight's gradient is masked too, so pruned weights stay as they are.
    MaskedLinear(Parameter<T> *weight, Parameter<T> *bias, std::vector<uint8_t> mask);
    // Scores registered in `params`; the mask keeps the largest (1 - sparsity) of them.
    MaskedLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, double sparsity);
    const char *kindName() const override { return "masked"; }
    void setSparsity(double sparsity);
    const std::vector<uint8_t> &mask() const { return m_mask; }
    Parameter<T> *scores() const { return m_scores; }
    void forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel = {}) override;
    void backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel = {}) override;
    Matrix<T> effectiveWeight() const override;
    int64_t activeWeights() const override;

private:
    void updateMask();
    Matrix<T> maskedWeight() const; // W ⊙ the current mask (m_mask, from the last updateMask)
    Parameter<T> *m_w, *m_scores = nullptr;
    double m_sparsity = 0;
    std::vector<uint8_t> m_mask;
};

// LoSparse's W = L R + S (Li et al., ICML 2023), with whole rows of S pruned by a row mask. Built from a dense
// weight by its truncated SVD: L = U_r sqrt(Σ_r), R = sqrt(Σ_r) V_r^T, S = W - L R; the dense weight leaves the
// parameter set and "<linear>.lowrank_left", ".lowrank_right" and ".sparse" take its place (trainable).
template <class T> class LowRankSparseLinear : public LinearKind<T> {
public:
    LowRankSparseLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, int rank);
    // From the weight's thin SVD computed beforehand (thinSvd of the fp32 weight), so that a caller can compute
    // the SVDs of several linears at once.
    LowRankSparseLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, int rank,
                        const ThinSvd &svd);
    // Parameters the kind adds to an (out x in) dense linear: L and R (S takes W's place). For plans made
    // without building the model (lathe-cli train --dry-run).
    static int64_t addedParameters(int64_t out, int64_t in, int rank) { return int64_t(rank) * (out + in); }
    const char *kindName() const override { return "lowrank_sparse"; }
    int rank() const { return int(m_l->value.cols()); }
    Parameter<T> *left() const { return m_l; }
    Parameter<T> *right() const { return m_r; }
    Parameter<T> *sparse() const { return m_s; }
    // 1 keeps a row of S, 0 prunes it (its values stay, unused, and get no gradient).
    void setRowMask(std::vector<uint8_t> keep);
    const std::vector<uint8_t> &rowMask() const { return m_rowMask; }
    void forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel = {}) override;
    void backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel = {}) override;
    Matrix<T> effectiveWeight() const override;
    int64_t activeWeights() const override; // r (out + in) + kept rows x in

private:
    Matrix<T> maskedSparse() const;
    Parameter<T> *m_l, *m_r, *m_s;
    std::vector<uint8_t> m_rowMask;
};

// LoSparse's importance pass: out[r] = the sum over row r of |v ⊙ g| (rows x cols, row-major), split over the
// threads by rows; shared by the method and the GPU trainer's reference ops, so both compute the same bits.
template <class T> void rowAbsProductSums(const T *v, const T *g, int64_t rows, int64_t cols, T *out);

// PST (Li et al., IJCAI 2022), as alibaba/AliceMind S4/PST/pst/sparse.py computes it: the dense weight frozen,
// W~ = W + beta U V with "<linear>.pst_u" (out x r, standard normal) and ".pst_v" (r x in, zero); scores
// |W~| + alpha1 A B + alpha2 (R 1^T + 1 C^T) with ".pst_a" (out x r', standard normal), ".pst_b" (r' x in), ".pst_r"
// (out x 1) and ".pst_c" (in x 1) zero; only these six are trainable (the official code freezes the bias too: so
// do we, and a caller may unfreeze it). The mask prunes the floor(sparsity n) smallest scores of this matrix.
// The standard normals come from a counter-based generator seeded per linear, so a run is the same everywhere.
struct PstOptions {
    int rank = 8, maskRank = 8;
    double beta = 1, alpha1 = 1, alpha2 = 1;
};

// PST's passes on row-major buffers, shared by PstLinear and the GPU trainer's reference ops (tests/hosttrainops.h),
// which so compute the same bits: W~, the scores, G and the work buffers are out x in; U out x rank, V rank x in,
// A out x maskRank, B maskRank x in, R out, C in. Split over the threads by rows (by columns for the sums over rows),
// each entry summed in one fixed order whatever the split.
struct PstDims {
    int64_t out = 0, in = 0;
    PstOptions options;
};
template <class T> struct PstFactors {
    const T *u = nullptr, *v = nullptr, *a = nullptr, *b = nullptr, *r = nullptr, *c = nullptr;
};
// Gradients accumulated by pstBackward; a null one is skipped (frozen). w: the weight's own, when it trains.
template <class T> struct PstGradients {
    T *u = nullptr, *v = nullptr, *a = nullptr, *b = nullptr, *r = nullptr, *c = nullptr, *w = nullptr;
};
// adapted = W + beta U V.
template <class T> void pstAdapted(const T *w, const PstFactors<T> &f, const PstDims &d, T *adapted);
// scores = |adapted| + alpha1 A B + alpha2 (R 1^T + 1 C^T).
template <class T> void pstScores(const T *adapted, const PstFactors<T> &f, const PstDims &d, T *scores);
// From G = dy^T x, the gradient of W_eff = adapted ⊙ mask: dScores = G ⊙ W~ (straight through the mask) and
// dAdapted = G ⊙ mask + dScores ⊙ sign(W~) (through |W~|), written into the two work buffers; then dU += beta dAdapted
// V^T, dV += beta U^T dAdapted, dA += alpha1 dScores B^T, dB += alpha1 A^T dScores, dR += alpha2 dScores 1,
// dC += alpha2 dScores^T 1, dW += dAdapted.
template <class T>
void pstBackward(const T *g, const T *adapted, const uint8_t *mask, const PstFactors<T> &f, const PstDims &d,
                 const PstGradients<T> &grads, T *dScores, T *dAdapted);
template <class T> class PstLinear : public LinearKind<T> {
public:
    PstLinear(ParameterSet<T> &params, Parameter<T> *weight, Parameter<T> *bias, const PstOptions &options,
              uint64_t seed);
    // Parameters the kind adds to an (out x in) linear (U, V, A, B, R, C), for plans made without building it.
    static int64_t addedParameters(int64_t out, int64_t in, const PstOptions &o) {
        return int64_t(o.rank + o.maskRank) * (out + in) + out + in;
    }
    const char *kindName() const override { return "pst"; }
    void setSparsity(double sparsity) { m_sparsity = sparsity; }
    // W + U V and the scores, from the current parameters.
    Matrix<T> adapted() const;
    Matrix<T> scores(const Matrix<T> &adapted) const;
    const std::vector<uint8_t> &mask() const { return m_mask; } // of the last forward
    Parameter<T> *u() const { return m_u; }
    Parameter<T> *v() const { return m_v; }
    Parameter<T> *a() const { return m_a; }
    Parameter<T> *b() const { return m_b; }
    Parameter<T> *r() const { return m_r; }
    Parameter<T> *c() const { return m_c; }
    void forward(const Matrix<T> &x, Matrix<T> &y, const LinearSelection &sel = {}) override;
    void backward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> *dx, const LinearSelection &sel = {}) override;
    Matrix<T> effectiveWeight() const override;
    int64_t activeWeights() const override;

    double sparsity() const { return m_sparsity; }
    PstDims dims() const { return {this->m_out, this->m_in, m_options}; }
    PstFactors<T> factors() const;
    Parameter<T> *weight() const { return m_w; }

private:
    Parameter<T> *m_w, *m_u, *m_v, *m_a, *m_b, *m_r, *m_c;
    PstOptions m_options;
    double m_sparsity = 0;
    std::vector<uint8_t> m_mask; // 1 byte per weight, from the last forward; W~ is recomputed in backward
};

} // namespace lathe::train
