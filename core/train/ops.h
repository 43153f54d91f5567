#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <vector>

// The training engine's operations (issue 17 item 1), in llm.c's style: every op's forward and backward side by
// side, on row-major (rows x width) activations with one row per token and the sequences of a batch stacked
// (row = b * seq + t). A forward saves in a small state what its backward needs; a backward ACCUMULATES into the
// gradients it is given (dx += ..., dw += ...), so that the two uses of a residual or a tied embedding sum without
// copies, and callers zero gradients once per step. Templated on the scalar: float for training, double for the
// finite-difference checks (tests/tst_trainops.cpp); both are instantiated in ops.cpp.
//
// This is the CPU reference: plain loops and Eigen products, checked against finite differences in fp64. The
// inference engine's fp32 forward (engine/blockops.h) is checked against these forwards in the same test.
namespace lathe::train {

template <class T> using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T> using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// ---- embedding: y[r] = table[ids[r]] ----
template <class T> void embeddingForward(const Matrix<T> &table, const std::vector<int32_t> &ids, Matrix<T> &y);
template <class T> void embeddingBackward(const Matrix<T> &dy, const std::vector<int32_t> &ids, Matrix<T> &dtable);

// ---- RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) per row; saves rstd ----
// ---- LayerNorm: y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps) (biased variance); saves mean, rstd ----
template <class T> struct NormState {
    Vector<T> mean, rstd; // per row (mean stays empty for RMSNorm)
};
template <class T>
void rmsNormForward(const Matrix<T> &x, const Vector<T> &w, T eps, Matrix<T> &y, NormState<T> &state);
template <class T>
void rmsNormBackward(const Matrix<T> &dy, const Matrix<T> &x, const Vector<T> &w, const NormState<T> &state,
                     Matrix<T> &dx, Vector<T> *dw);
template <class T>
void layerNormForward(const Matrix<T> &x, const Vector<T> &w, const Vector<T> &b, T eps, Matrix<T> &y,
                      NormState<T> &state);
template <class T>
void layerNormBackward(const Matrix<T> &dy, const Matrix<T> &x, const Vector<T> &w, const NormState<T> &state,
                       Matrix<T> &dx, Vector<T> *dw, Vector<T> *db);

// ---- products ----

// C = alpha op(A) op(B) + beta C, op transposing when asked. C must have its shape when beta is not 0; with beta 0
// it is resized. fp32 through BLAS (split over the threads inside the training step), fp64 through Eigen. For the
// linear kinds' low-rank products, which Eigen would run on one core.
template <class T>
void matmul(const Matrix<T> &a, bool transA, const Matrix<T> &b, bool transB, T alpha, T beta, Matrix<T> &c);

// ---- linear: y = x W^T + b (W: out x in, as Hugging Face stores it; b may be empty) ----
// Backward: dx += dy W; dW += dy^T x; db += column sums of dy. A null dW / db skips it (frozen weights).
template <class T> void linearForward(const Matrix<T> &x, const Matrix<T> &w, const Vector<T> &b, Matrix<T> &y);
template <class T>
void linearBackward(const Matrix<T> &dy, const Matrix<T> &x, const Matrix<T> &w, Matrix<T> *dx, Matrix<T> *dw,
                    Vector<T> *db);

// ---- RoPE, Hugging Face rotate-half, on the first rotaryDim dimensions of every head, in place ----
// cos/sin: (positions x rotaryDim/2), row p for position p (engine/blockops.h makeRopeTable builds them, rope
// scaling applied); token t of each sequence is at position t. Backward rotates the gradient by the opposite angle.
template <class T> struct RopeAngles {
    int rotaryDim = 0;
    Matrix<T> cos, sin;
};
template <class T> void ropeForward(Matrix<T> &x, int64_t seq, int heads, int headDim, const RopeAngles<T> &rope);
template <class T> void ropeBackward(Matrix<T> &dx, int64_t seq, int heads, int headDim, const RopeAngles<T> &rope);

// ---- attention with grouped-query heads, causal (decoders) or bidirectional (BERT) ----
// q: (rows x heads*headDim), k and v: (rows x kvHeads*headDim) -> ctx (rows x heads*headDim). The forward SAVES the
// probabilities: batch x heads x seq x seq values (SmolLM2 at 512 tokens, batch 1: 9 heads x 512^2 x 4 B = 9.4 MB
// per block), which backward reads instead of recomputing QK^T; the activation store (item 2) may drop them and
// call attentionForward again inside the block to recompute them.
struct AttentionDims {
    int64_t batch = 1, seq = 0;
    int heads = 0, kvHeads = 0, headDim = 0;
    double scale = 1.0; // usually 1/sqrt(headDim)
    bool causal = true; // false: every query attends to every key of its window (BERT; no padding in training)
};
// The sequences the GPU's attention (gpu/trainops.h) handles per call: its fp32 score block (heads x seq^2 floats
// per sequence) stays within 64 Mi floats (256 MiB), at least one sequence. opsTrainerDeviceBytes counts the
// scratch sized by it.
inline int64_t attentionSequencesPerCall(int64_t batch, int64_t heads, int64_t seq) {
    return std::clamp<int64_t>((int64_t(64) << 20) / std::max<int64_t>(heads * seq * seq, 1), 1,
                               std::max<int64_t>(batch, 1));
}
template <class T> struct AttentionState {
    std::vector<T> probs; // [batch][head][query][key], zero above the diagonal when causal
};
// What the GPU's fused attention (gpu/trainflashkernels.cuh) saves instead of the probabilities, and how its
// backward gets them back, as CPU references: each row's log-sum-exp of its scaled scores, [batch][head][query]
// (batch x heads x seq values), and the probabilities recomputed from it, exp(score - lse), laid out as
// AttentionState's (zero above the diagonal when causal). Plain loops; for checks (check-gpu, tests), not speed.
template <class T>
std::vector<T> attentionLogSumExp(const Matrix<T> &q, const Matrix<T> &k, const AttentionDims &d);
template <class T>
AttentionState<T> attentionFromLogSumExp(const Matrix<T> &q, const Matrix<T> &k, const AttentionDims &d,
                                         const T *lse);
template <class T>
void attentionForward(const Matrix<T> &q, const Matrix<T> &k, const Matrix<T> &v, const AttentionDims &d,
                      Matrix<T> &ctx, AttentionState<T> &state);
// dq, dk, dv are accumulated (sized like q, k, v).
template <class T>
void attentionBackward(const Matrix<T> &dctx, const Matrix<T> &q, const Matrix<T> &k, const Matrix<T> &v,
                       const AttentionDims &d, const AttentionState<T> &state, Matrix<T> &dq, Matrix<T> &dk,
                       Matrix<T> &dv);

// ---- activations ----
// SwiGLU: mid = silu(gate) * up. GELU: tanh form (gelu_new, gelu_pytorch_tanh) or erf form (gelu).
template <class T> void swigluForward(const Matrix<T> &gate, const Matrix<T> &up, Matrix<T> &mid);
template <class T>
void swigluBackward(const Matrix<T> &dmid, const Matrix<T> &gate, const Matrix<T> &up, Matrix<T> &dgate,
                    Matrix<T> &dup);
enum class Gelu { Tanh, Erf };
template <class T> void geluForward(Gelu kind, const Matrix<T> &x, Matrix<T> &y);
template <class T> void geluBackward(Gelu kind, const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx);
// ReLU (OPT): y = max(x, 0); dx += dy where x > 0 (the derivative at 0 taken as 0, as torch does).
template <class T> void reluForward(const Matrix<T> &x, Matrix<T> &y);
template <class T> void reluBackward(const Matrix<T> &dy, const Matrix<T> &x, Matrix<T> &dx);

// ---- LM head and softmax cross-entropy, fused and chunked over the vocabulary ----
// loss = mean over the rows whose target is >= 0 of -log softmax(h W^T + b)[target] (W: vocab x width, the tied
// embedding or the untied head; b: the head's bias (Phi-2) or empty). The logits are never held whole: each chunk of `chunk` vocabulary rows is
// computed, folded into a running max and sum of exponentials per row (online log-sum-exp), and dropped; backward
// recomputes each chunk's logits, forms softmax - onehot, and accumulates dh += G W_c / n and dW_c += G^T h / n.
// Memory: rows x chunk values at a time (SmolLM2, 512 tokens, chunk 4096: 8 MB instead of 100 MB of logits).
template <class T> struct CrossEntropyState {
    Vector<T> logSumExp; // per row
    int64_t count = 0;   // rows with a target
};
template <class T>
T crossEntropyForward(const Matrix<T> &h, const Matrix<T> &w, const Vector<T> &b, const std::vector<int32_t> &targets,
                      int64_t chunk, CrossEntropyState<T> &state);
// Backward of the mean loss, scaled by `scale` (gradient accumulation divides here). dw and db may be null (frozen
// head, no bias).
template <class T>
void crossEntropyBackward(const Matrix<T> &h, const Matrix<T> &w, const Vector<T> &b,
                          const std::vector<int32_t> &targets, int64_t chunk, const CrossEntropyState<T> &state,
                          T scale, Matrix<T> &dh, Matrix<T> *dw, Vector<T> *db);

} // namespace lathe::train
