#pragma once

#include "base/progress.h"
#include "engine/blockhooks.h"
#include "engine/blockops.h"
#include "model/layerweights.h"
#include "numeric/mat.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace lathe {

class Model;

// The rotary table of a Llama or Phi model for `positions` positions (rotary width, theta and rope scaling from
// its config); empty (rotaryDim 0) for families without RoPE. Shared by the CPU and GPU forward passes.
cpu::RopeTable ropeTableFor(const ModelConfig &config, int64_t positions, const std::string &source);
// The rotated dimensions of each head: the head width (Llama family), its partial rotary share (Phi-2), or 0
// (learned positions).
int rotaryDims(const ModelConfig &config);

// Multiply-adds x2 of one forward pass of this model over `seq` tokens: every linear, attention scores and context
// over the causal (decoders) or full (BERT) mask, and the LM head. Benchmarks count achieved GFLOP/s against it.
double forwardFlops(const ModelConfig &config, int64_t seq);

// A batch of token sequences of equal length. Row b*seq + t of every activation is token t of sequence b.
struct TokenBatch {
    int64_t batch = 1;
    int64_t seq = 0;
    std::vector<int32_t> tokens;      // batch*seq ids
    std::vector<int32_t> tokenTypes;  // BERT segment ids (empty = all 0)
    std::vector<uint8_t> mask;        // BERT padding mask, 1 = real token (empty = all real)

    static TokenBatch single(std::vector<int32_t> ids);
    // Uniform random ids in [0, vocab), seeded (mt19937): benchmarks, self-checks and tests.
    static TokenBatch random(int64_t vocab, int64_t batch, int64_t seq, uint32_t seed);
};

struct TransformerOptions {
    // Keep every block's fp32 weights in memory after first use (fast repeated passes). When false, a block's
    // weights are loaded for its pass and released after it, so peak memory is one block plus embeddings.
    bool keepBlocksResident = true;
};

// The CPU forward pass for every family the loader knows, layer by layer. Callers that need the signals inside
// blocks (calibration, Wanda, SliceGPT, spectra) drive it one block at a time:
//     Mat h = t.embed(batch);
//     for (int l = 0; l < t.numLayers(); ++l) t.runBlock(l, h, batch, &hooks);
//     Mat logits = t.logits(t.finalHidden(h));
// and forward() does exactly this. Not thread-safe: one pass at a time per Transformer.
class Transformer {
public:
    explicit Transformer(const Model &model, TransformerOptions options = {});
    // LatheError for the variants the engine does not implement (GPT-2 with scale_attn_by_inverse_layer_idx, Phi
    // with qk_layernorm, an unknown activation). The constructor calls it; so does the GPU forward pass.
    static void checkSupported(const Model &model);

    const ModelConfig &config() const { return m_config; }
    int numLayers() const { return int(m_config.numLayers); }
    bool isDecoder() const { return m_config.family != ArchFamily::Bert; }

    // Token (+ position, + type) embeddings, and BERT's embedding LayerNorm: (batch*seq x hidden). Throws
    // LatheError for token ids outside the vocabulary or sequences longer than the model's positions.
    Mat embed(const TokenBatch &batch) const;
    // One block, in place on the residual stream `hidden`. `part` (sequential decoder blocks only, not BERT or
    // Phi-2) splits it at the residual entering the MLP: Attention returns there (hidden = that residual), Mlp
    // starts there (hidden = that residual, as wide as the MLP norm reads). SliceGPT takes its mid-block PCA
    // between the two, so the attention sub-layer runs once per block.
    void runBlock(int layer, Mat &hidden, const TokenBatch &batch, const BlockHooks *hooks = nullptr,
                  BlockPart part = BlockPart::Whole);
    // Decoders: the final norm. BERT: the hidden state itself (its last_hidden_state).
    Mat finalHidden(const Mat &hidden) const;
    // Decoders: (rows x vocab) logits of the LM head (the tied embedding when there is no lm_head).
    Mat logits(const Mat &finalHidden) const;
    // The same into `y`, reusing its storage when the shape matches: at 49,152 x 512 the logits are 100 MB, and a
    // fresh buffer per window costs 25,000 page faults (~5% of a pass on 2 cores).
    void logits(const Mat &finalHidden, Mat &y) const;
    // BERT: tanh(pooler(h[CLS])) per sequence, (batch x hidden); empty when the checkpoint has no pooler.
    Mat pooled(const Mat &finalHidden, const TokenBatch &batch) const;

    // embed -> every block: the residual stream after the last block. Reports progress per block as a fraction of
    // a whole forward pass; cancellation throws CancelledError.
    Mat hiddenStates(const TokenBatch &batch, const BlockHooks *hooks = nullptr, const ProgressCallback &progress = {});
    // hiddenStates -> finalHidden -> logits (decoders) or last hidden state (BERT).
    Mat forward(const TokenBatch &batch, const BlockHooks *hooks = nullptr, const ProgressCallback &progress = {});

    // A copy of the weights of one block (loaded on first use), in the unfused layout of BlockWeights.
    BlockWeights block(int layer);
    // Replaces a block's weights (methods that edit weights, tests).
    void setBlock(int layer, BlockWeights weights);
    void releaseBlock(int layer);

private:
    // A block as the CPU pass computes with it: q|k|v stacked into one (qd + 2 kvd) x in matrix and gate|up into one
    // 2 ff x in matrix, so that each is one GEMM with a wider output (on 2 cores a 512 x 960 x 576 GEMM runs ~12%
    // faster than the three it replaces, 512 x 3072 x 576 ~25% faster than two). `w` holds everything else; its
    // q/k/v/gate/up matrices are empty (no second copy), their biases stay there and are added after the GEMM.
    struct CpuBlock {
        BlockWeights w;
        Mat qkv, gateUp; // gateUp empty without a gate (non-SwiGLU MLPs keep w.up)
        int64_t qRows = 0, kRows = 0, vRows = 0, ffRows = 0;
    };
    static CpuBlock fuse(BlockWeights w);
    CpuBlock &cpuBlock(int layer);
    void applyNorm(const Mat &x, const NormWeights &n, Mat &y) const;
    void ensureRope(int64_t seq);

    const Model &m_model;
    ModelConfig m_config;
    TransformerOptions m_options;
    cpu::Activation m_activation;
    EmbeddingWeights m_embedding;
    HeadWeights m_head;
    std::vector<std::optional<CpuBlock>> m_blocks;
    cpu::RopeTable m_rope;
    struct Scratch {
        Mat normed, qkv, q, k, v, ctx, attnOut, mlpNormed, gateUp, mid, out, shortcut;
    } m_scratch;
    int m_positionOffset = 0; // OPT's learned positions start at index 2
};

} // namespace lathe
