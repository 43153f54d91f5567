#pragma once

#include "model/layerweights.h"
#include "numeric/mat.h"

#include <cstdint>
#include <string>
#include <vector>

// The CPU engine's per-layer operations, in llm.c's style: explicit forward functions on (rows x width) row-major
// activations, one row per token, sequences of a batch stacked (row = b * seq + t). fp32 throughout. Backward
// functions for the training methods will sit beside each forward with the same shapes.
namespace lathe::cpu {

enum class Activation { Silu, Relu, GeluTanh, GeluErf };
// HF names: "silu"/"swish", "relu", "gelu_new"/"gelu_pytorch_tanh"/"gelu_fast" (tanh form), "gelu" (erf form).
Activation parseActivation(const std::string &name, const std::string &source);

// y = x W^T + b.
void linearForward(const Mat &x, const LinearWeights &w, Mat &y);
// y = x W^T for a weight stored like a linear's (out x in) without a bias: stacked q|k|v and gate|up, shortcut
// matrices, the tied LM head. Split over the cores inside a BlasSplitScope (sgemmSplit).
void linearForward(const Mat &x, const Mat &w, Mat &y);
// y = (x - mean) / sqrt(var + eps) * weight + bias, per row (biased variance, as torch).
void layerNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y);
// y = x / sqrt(mean(x^2) + eps) * weight, per row.
void rmsNormForward(const Mat &x, const NormWeights &n, float eps, Mat &y);
// SliceGPT's weight-less RMSNorm: y = x / sqrt(sum(x^2) / divisor + eps), with `divisor` the original hidden size
// whatever the (sliced) width of x.
void rmsNormWeightless(const Mat &x, int64_t divisor, float eps, Mat &y);
void activationForward(Activation a, Mat &x); // in place
// SwiGLU from one stacked GEMM output: gateUp (rows x 2 ff) holds x W_gate^T in its first ff columns and x W_up^T
// in the rest; mid (rows x ff) = silu(gate + gateBias) * (up + upBias). Empty biases are zero. gateUp is clobbered.
void swigluStacked(Mat &gateUp, const Vec &gateBias, const Vec &upBias, Mat &mid);

// cos/sin of rotary angles for positions [0, positions): row p holds cos(p * f_i) for the rotaryDim/2 inverse
// frequencies f_i = theta^(-2i/rotaryDim), after the model's rope scaling (none, "linear" or "llama3").
struct RopeTable {
    int rotaryDim = 0;
    Mat cos, sin;                // (positions x rotaryDim/2)
    std::vector<float> invFreq;  // the f_i after scaling (rotaryDim/2)
    double positionScale = 1.0;  // "linear" scaling: angle = fp32(p * positionScale) * f_i
};
RopeTable makeRopeTable(int64_t positions, int rotaryDim, double theta, const nlohmann::json &ropeScaling,
                        const std::string &source);
// HF rotate-half RoPE on the first rotaryDim dimensions of every head; rows are (batch*seq), token t of each
// sequence at position t.
void ropeForward(Mat &x, int64_t seq, int heads, int headDim, const RopeTable &table);

struct AttentionShape {
    int64_t batch = 1, seq = 0;
    int heads = 0, kvHeads = 0, headDim = 0;
    float scale = 1.0f;
    bool causal = true;
    const uint8_t *keyMask = nullptr; // (batch x seq), 1 = a real token; padding keys get no attention (BERT)
};
// Scaled dot-product attention with grouped-query heads: q (rows x heads*headDim), k and v
// (rows x kvHeads*headDim) -> ctx (rows x heads*headDim). Causal attention skips the blocks above the diagonal.
void attentionForward(const Mat &q, const Mat &k, const Mat &v, const AttentionShape &s, Mat &ctx);

} // namespace lathe::cpu
