#pragma once

#include "model/modelconfig.h"
#include "model/tensorrole.h"
#include "train/ops.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

class Model;
struct TokenBatch;

namespace train {

// A named tensor of the training engine (issue 17 item 3): its Hugging Face name and layout, role and block, the
// value the forward pass reads and the optimizer updates, and a gradient that exists only while it is trainable
// (a frozen parameter has an empty gradient: no memory, and backward skips its weight gradient). Vectors (norm
// weights, biases) are (n x 1).
template <class T> struct Parameter {
    std::string name; // "model.layers.0.self_attn.q_proj.weight"
    TensorRole role = TensorRole::Unknown;
    int layer = -1;
    bool isBias = false;
    bool transposedInFile = false; // stored (in x out) in the checkpoint (GPT-2 Conv1D): transpose to write it
                                   // in the Hugging Face layout
    Matrix<T> value;
    Matrix<T> grad; // same shape as value while trainable, else empty
    bool trainable() const { return grad.size() == value.size() && value.size() > 0; }
};

// The parameters of a model, in the order of its tensor table.
template <class T> class ParameterSet {
public:
    std::vector<Parameter<T>> &all() { return m_params; }
    const std::vector<Parameter<T>> &all() const { return m_params; }
    Parameter<T> *find(const std::string &name);
    Parameter<T> &add(Parameter<T> p); // trainable, gradient zeroed
    // Frozen parameters drop their gradient; trainable ones get a zeroed one.
    void setTrainable(const std::string &name, bool trainable);
    void zeroGrad();
    int64_t count(bool trainableOnly) const;
    uint64_t gradientBytes() const;

private:
    std::vector<Parameter<T>> m_params;
};

// A decoder language model for training, built from the training ops: forward over a batch of windows with every
// activation the backward needs kept per block, the mean next-token loss, and backward into the gradients of the
// trainable parameters. Families: Llama (RMSNorm, RoPE with the model's scaling, grouped-query heads, SwiGLU,
// q/k/v biases when present, tied or untied head), OPT (LayerNorm, learned positions at offset 2, ReLU, biases),
// GPT-2 (LayerNorm, learned positions, fused q|k|v, GELU) and Phi-2 (parallel attention and MLP from one LayerNorm,
// partial rotary, GELU, a biased head); BERT and sliced models are refused with a LatheError.
//
// Activations kept (values per block, for a batch of B windows of S tokens, width D, intermediate F, H query heads,
// KV key/value heads of size d): input, normed input, attention output, mid residual and its normed copy (5 B S D;
// Phi-2's parallel blocks keep two of them fewer), q, k, v after RoPE and the context (B S (2 H d + 2 KV d)),
// attention probabilities (B H S^2), gate, up and their product (3 B S F): for SmolLM2-135M at B = 1, S = 512 in
// fp32 that is 27.9 MB per block, 848 MB for the 30 blocks and the head (`lathe-cli train --dry-run`).
template <class T> class CausalLm {
public:
    explicit CausalLm(const Model &model);
    ~CausalLm();

    ParameterSet<T> &parameters() { return m_params; }
    const ParameterSet<T> &parameters() const { return m_params; }

    // The mean of -log p(token t+1 | tokens <= t) over every position of every window but the last of each (the
    // perplexity protocol's numerator per prediction); keeps the activations for backward.
    T forward(const TokenBatch &batch);
    // Gradients of `scale` x the last forward's loss, accumulated into every trainable parameter's gradient.
    void backward(T scale = T(1));
    // Vocabulary rows per chunk of the fused LM head and cross-entropy.
    void setLossChunk(int64_t rows) { m_lossChunk = rows; }
    // Bytes of the activations a forward keeps for `batch` windows of `seq` tokens (the formula above, plus the
    // head's input and a chunk of logits), at sizeof(T) per value.
    static uint64_t activationBytes(const ModelConfig &config, int64_t batch, int64_t seq, int64_t lossChunk = 4096);

private:
    struct Impl;
    ParameterSet<T> m_params;
    std::unique_ptr<Impl> m_impl;
    int64_t m_lossChunk = 4096;
};

} // namespace train
} // namespace lathe
