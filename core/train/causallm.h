#pragma once

#include "engine/transformer.h"
#include "model/modelconfig.h"
#include "model/tensorrole.h"
#include "train/ops.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

class Model;
class Tokenizer;

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
    bool decay = true;             // AdamW's weight decay applies (to 2-D values only); pruning scores opt out
    bool extra = false;            // added by a linear kind (train/linearkinds.h): not a tensor of the checkpoint
    Matrix<T> value;
    Matrix<T> grad; // same shape as value while trainable, else empty
    // The rows and columns of value the last forward and backward computed with, when the step ran on some
    // channels only (SAT's gathered linears; a bias lists its entries as rows): empty means all. AdamW leaves the
    // other entries, their moments included, as they are, as torch.optim.SparseAdam does (the bias correction still
    // counts every step), so an omitted channel gets no update at all that step.
    std::vector<int32_t> activeRows, activeCols;
    bool trainable() const { return grad.size() == value.size() && value.size() > 0; }
};

// The parameters of a model, in the order of its tensor table (then those a linear kind added). Each parameter
// lives at a fixed address for the life of the set, so that layers hold pointers to what they read; removing one
// (a linear kind that replaces a weight) leaves the others where they are. Iterating yields Parameter<T>&.
template <class T> class ParameterSet {
    using Store = std::vector<std::unique_ptr<Parameter<T>>>;

public:
    template <class It, class P> struct Iterator {
        It it;
        P &operator*() const { return **it; }
        P *operator->() const { return it->get(); }
        Iterator &operator++() { ++it; return *this; }
        bool operator!=(const Iterator &o) const { return it != o.it; }
        bool operator==(const Iterator &o) const { return it == o.it; }
    };
    auto begin() { return Iterator<typename Store::iterator, Parameter<T>>{m_params.begin()}; }
    auto end() { return Iterator<typename Store::iterator, Parameter<T>>{m_params.end()}; }
    auto begin() const { return Iterator<typename Store::const_iterator, const Parameter<T>>{m_params.begin()}; }
    auto end() const { return Iterator<typename Store::const_iterator, const Parameter<T>>{m_params.end()}; }
    size_t size() const { return m_params.size(); }
    Parameter<T> &operator[](size_t i) { return *m_params[i]; }
    const Parameter<T> &operator[](size_t i) const { return *m_params[i]; }
    Parameter<T> &front() { return *m_params.front(); }
    // The set itself: `for (auto &p : params.all())` reads as before the set became a container.
    ParameterSet &all() { return *this; }
    const ParameterSet &all() const { return *this; }

    Parameter<T> *find(const std::string &name);
    const Parameter<T> *find(const std::string &name) const {
        return const_cast<ParameterSet *>(this)->find(name); // the same search, read-only
    }
    Parameter<T> &add(Parameter<T> p); // trainable, gradient zeroed
    // Drops a parameter (a linear kind replaced it); pointers to the others stay valid. Optimizer state is per
    // position: change the set before the first step only.
    void remove(const std::string &name);
    // Frozen parameters drop their gradient; trainable ones get a zeroed one.
    void setTrainable(const std::string &name, bool trainable);
    void zeroGrad();
    int64_t count(bool trainableOnly) const;
    uint64_t gradientBytes() const;

private:
    Store m_params;
};

template <class T> class LinearKind;
struct LinearSelection;

// The member of a block's table that holds its linear of `role` (a table with members q, k, v, qkv, o, gate, up and
// down: CausalLm's and the device trainer's), or null for a role that is not a block linear.
template <class Block> auto blockLinear(Block &b, TensorRole role) -> decltype(&b.q) {
    switch (role) {
    case TensorRole::AttnQ: return &b.q;
    case TensorRole::AttnK: return &b.k;
    case TensorRole::AttnV: return &b.v;
    case TensorRole::AttnQkv: return &b.qkv;
    case TensorRole::AttnO: return &b.o;
    case TensorRole::MlpGate: return &b.gate;
    case TensorRole::MlpUp: return &b.up;
    case TensorRole::MlpDown: return &b.down;
    default: return nullptr;
    }
}

// The channels a block computes this step (SAT, issue 17 item 4's gathered linears): the MLP's intermediate
// channels and the attention's key/value groups (each group: its K and V heads and the query heads that read
// them). Sorted, distinct; an empty list means all. The skipped channels cost no work: the block's linears run on
// the gathered rows and columns only, and the attention on the kept heads only.
struct BlockSelection {
    std::vector<int32_t> mlpChannels, kvGroups;
    bool all() const { return mlpChannels.empty() && kvGroups.empty(); }
};

// BERT's masked-language-model objective as Hugging Face's DataCollatorForLanguageModeling applies it (Devlin et
// al. 2019): each token that is not special is chosen with probability `rate`; a chosen token becomes [MASK] 80%
// of the time, a uniformly random token 10%, and stays 10%; the loss is the mean over the chosen tokens of
// -log p(original token). The masks are a function of the seed alone (own draws from a splitmix64 stream, the same
// on every platform), so a resumed run and every evaluation see the masks an uninterrupted run saw.
struct MlmMasking {
    int32_t maskId = -1;          // the tokenizer's [MASK]; -1: unknown (training refuses)
    double rate = 0.15;
    std::vector<int32_t> special; // never chosen: [CLS], [SEP], [PAD], [MASK]
};
// The masked inputs of `batch` and their targets (the original id where chosen, -1 elsewhere). Each window gets
// at least one chosen token (its first non-special one when the draws chose none), so the loss is always defined.
struct MaskedBatch {
    TokenBatch inputs;
    std::vector<int32_t> targets;
};
MaskedBatch maskTokens(const TokenBatch &batch, const MlmMasking &masking, int64_t vocab, uint64_t seed);
// The masking for a model's tokenizer: its [MASK], with its [CLS], [SEP] and [PAD] never chosen. LatheError for
// a BERT model whose tokenizer has no [MASK] (nothing to mask with); a decoder's masking is unused.
MlmMasking mlmMaskingFor(const ModelConfig &config, const Tokenizer &tokenizer);
// What a model's training loss is of, for logs and results: "next-token", or "masked-LM (15% of tokens)" (BERT).
std::string objectiveName(const ModelConfig &config, const MlmMasking &masking);

// A language model for training, built from the training ops: forward over a batch of windows with every
// activation the backward needs kept per block, the mean loss, and backward into the gradients of the trainable
// parameters. Decoders (the mean next-token loss): Llama (RMSNorm, RoPE with the model's scaling, grouped-query
// heads, SwiGLU, q/k/v biases when present, tied or untied head), OPT (LayerNorm, learned positions at offset 2,
// ReLU, biases), GPT-2 (LayerNorm, learned positions, fused q|k|v, GELU) and Phi-2 (parallel attention and MLP from
// one LayerNorm, partial rotary, GELU, a biased head). BERT with its masked-LM head (BertForMaskedLM: token, position
// and segment embeddings with a LayerNorm, post-norm blocks with bidirectional attention, the head's dense + GELU +
// LayerNorm before the tied decoder and its bias; the masked-LM loss, maskedLm()); a BERT without that head and
// sliced models are refused with a LatheError. Every block linear is a LinearKind (dense when loaded); a method
// swaps in another kind with replaceLinear.
//
// Activations kept (values per block, for a batch of B windows of S tokens, width D, intermediate F, H query heads,
// KV key/value heads of size d): input, normed input, attention output, mid residual and its normed copy (5 B S D;
// Phi-2's parallel blocks keep two of them fewer; BERT keeps the input, attention output, the two sums before its
// norms and the mid residual), q, k, v after RoPE and the context (B S (2 H d + 2 KV d)), attention probabilities
// (B H S^2), gate, up and their product (3 B S F; 2 B S F without a gate): for SmolLM2-135M at B = 1, S = 512 in
// fp32 that is 27.9 MB per block, 848 MB for the 30 blocks and the head (`lathe-cli train --dry-run`). With
// recomputation (setRecompute) only each block's input stays (B S D per block) and backward runs the block's
// forward again just before its backward, so one block's full set is alive at a time: 30 x 1.18 MB + 27.9 MB =
// 63 MB for SmolLM2 at 1 x 512 (74 MB with the head's input and a chunk of logits), for one more forward pass of
// compute (measured: 1.4x the step time, docs/benchmarks.md).
template <class T> class CausalLm {
public:
    explicit CausalLm(const Model &model);
    ~CausalLm();
    // The constructor's refusals (BERT, sliced models, what the engine cannot run), without loading anything.
    static void checkSupported(const Model &model);

    ParameterSet<T> &parameters() { return m_params; }
    const ParameterSet<T> &parameters() const { return m_params; }
    const ModelConfig &config() const;

    // Decoders: the mean of -log p(token t+1 | tokens <= t) over every position of every window but the last of
    // each (the perplexity protocol's numerator per prediction). Masked LM (BERT): the batch masked by
    // maskTokens(batch, masking(), vocabulary, maskSeed), and the mean loss over the chosen tokens. Keeps the
    // activations for backward.
    T forward(const TokenBatch &batch, uint64_t maskSeed = 0);
    // The mean of -log p(targets[r] | inputs) over the rows r with targets[r] >= 0 (a decoder predicts row r's
    // target from rows <= r; BERT from the whole window): any objective, e.g. a masking made elsewhere.
    T forwardWithTargets(const TokenBatch &inputs, std::vector<int32_t> targets);
    // BERT's masked-LM objective (forward masks the batch) rather than next-token prediction.
    bool maskedLm() const;
    void setMasking(MlmMasking masking);
    const MlmMasking &masking() const;
    // Gradients of `scale` x the last forward's loss, accumulated into every trainable parameter's gradient.
    void backward(T scale = T(1));
    // Vocabulary rows per chunk of the fused LM head and cross-entropy.
    void setLossChunk(int64_t rows) { m_lossChunk = rows; }
    // Keep only block inputs and recompute each block during backward (the memory formula above).
    void setRecompute(bool on);
    bool recompute() const;
    // Bytes of the activations a forward keeps for `batch` windows of `seq` tokens (the formula above, plus the
    // head's input and a chunk of logits), at sizeof(T) per value.
    static uint64_t activationBytes(const ModelConfig &config, int64_t batch, int64_t seq, int64_t lossChunk = 4096,
                                    bool recompute = false);

    // The block linears, in the order of the tensor table: layer, role and kind (never null).
    struct LinearSlot {
        int layer = -1;
        TensorRole role = TensorRole::Unknown;
        LinearKind<T> *kind = nullptr;
    };
    std::vector<LinearSlot> linears() const;
    // Replaces the dense block linear whose weight is `weightName` by what `make` builds from its weight and bias
    // parameters (the bias may be null); the new kind may add parameters to the set and remove the weight. Do it
    // before the first optimizer step. Throws LatheError for an unknown name or a linear that is no longer dense.
    using LinearFactory =
        std::function<std::unique_ptr<LinearKind<T>>(ParameterSet<T> &, Parameter<T> *weight, Parameter<T> *bias)>;
    void replaceLinear(const std::string &weightName, const LinearFactory &make);
    // The channels block `layer` computes from the next forward on (BlockSelection); clearSelections runs all.
    void setSelection(int layer, BlockSelection selection);
    void clearSelections();
    const BlockSelection &selection(int layer) const;
    // What the last forward saw in block `layer` (SAT's scores): the L2 norm over the batch of each MLP
    // intermediate channel at the down projection's input and of each KV group's attention output (its query
    // heads' context), -1 for the channels the selection skipped. Empty before the first forward.
    struct ChannelNorms {
        std::vector<float> mlp, kvGroups;
    };
    const ChannelNorms &channelNorms(int layer) const;
    // Replaces them, for a forward that ran elsewhere (the GPU trainer's): one value per channel and per group.
    void setChannelNorms(int layer, ChannelNorms norms);
    // The norms of the channels and groups a forward with selection `sel` ran (train::activationNorms' values: the
    // kept MLP channels, then the kept KV groups, in sel's order; all of them without one), in the full numbering
    // with -1 for the skipped ones.
    template <class V>
    static ChannelNorms channelNormsOf(const ModelConfig &config, const BlockSelection &sel, const V *values) {
        ChannelNorms n;
        n.mlp.assign(size_t(config.intermediateSize), -1.0f);
        n.kvGroups.assign(size_t(config.numKvHeads), -1.0f);
        const std::vector<int32_t> &channels = sel.mlpChannels, &groups = sel.kvGroups;
        const int64_t kept = channels.empty() ? config.intermediateSize : int64_t(channels.size());
        const int64_t keptGroups = groups.empty() ? config.numKvHeads : int64_t(groups.size());
        for (int64_t j = 0; j < kept; ++j)
            n.mlp[size_t(channels.empty() ? j : channels[size_t(j)])] = float(values[j]);
        for (int64_t g = 0; g < keptGroups; ++g)
            n.kvGroups[size_t(groups.empty() ? g : groups[size_t(g)])] = float(values[kept + g]);
        return n;
    }
    // The tensors of a Hugging Face checkpoint of the model as trained: every parameter of the checkpoint as it
    // is, and each non-dense linear's effective weight under its original name, in the model's layout (out x in;
    // a transposedInFile tensor is still to be transposed by the writer).
    void forEachExportTensor(const std::function<void(const std::string &name, const Matrix<T> &value)> &fn) const;

private:
    struct Impl;
    ParameterSet<T> m_params;
    std::unique_ptr<Impl> m_impl;
    int64_t m_lossChunk = 4096;
};

} // namespace train
} // namespace lathe
