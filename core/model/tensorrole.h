#pragma once

#include <string>

namespace lathe {

// What a tensor is for, independent of the checkpoint's naming scheme. Norm roles name the sub-layer the norm
// belongs to: pre-norm models (Llama, OPT, GPT-2, Phi-2) apply AttnNorm before attention, post-norm BERT applies
// it after; Phi-2's single input norm is AttnNorm (read by both parallel branches).
enum class TensorRole {
    Unknown,            // kept and written back, but the engine does not use it
    Buffer,             // non-parameter state saved by some checkpoints (rotary inv_freq, position_ids, masks)
    TokenEmbedding,     // (vocab x hidden)
    PositionEmbedding,  // (positions x hidden), learned absolute positions (OPT: offset 2, GPT-2, BERT)
    TokenTypeEmbedding, // BERT segment embeddings
    EmbeddingNorm,      // BERT LayerNorm after the embeddings
    AttnNorm,
    AttnQ,   // (heads*headDim x hidden)
    AttnK,   // (kvHeads*headDim x hidden)
    AttnV,
    AttnQkv, // fused q|k|v rows (GPT-2 c_attn, GGUF attn_qkv)
    AttnO,   // (hidden x heads*headDim)
    MlpNorm,
    MlpGate, // SwiGLU gate (Llama)
    MlpUp,   // SwiGLU up, or the first MLP linear (OPT fc1, GPT-2 c_fc, BERT intermediate)
    MlpDown, // (hidden x intermediate)
    FinalNorm,
    LmHead,  // (vocab x hidden); absent when tied to TokenEmbedding
    Pooler,  // BERT pooler dense
    // BERT's masked-LM head (BertForMaskedLM's cls.predictions): y = LayerNorm(gelu(h HeadTransform^T + b)), then
    // logits = y E^T + the LmHead bias (E: the tied token embedding, or an untied cls.predictions.decoder, LmHead).
    HeadTransform, // (hidden x hidden)
    HeadNorm,
    // SliceGPT's residual-path matrices of a sliced model, stored like a linear weight (out x in): the residual
    // entering the MLP is hidden * AttnShortcut^T, the block's output residual is mid * MlpShortcut^T (Phi-2: one
    // AttnShortcut per block). Absent = identity.
    AttnShortcut,
    MlpShortcut,
};

const char *roleName(TensorRole role);

// Coarse grouping used by summaries and the GUI: "embedding", "attention", "mlp", "norm", "head", "other".
const char *roleGroup(TensorRole role);

// True for the 2-D weight matrices of linear layers (the matrices compression methods act on).
bool isLinearRole(TensorRole role);

} // namespace lathe
