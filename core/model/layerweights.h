#pragma once

#include "model/modelconfig.h"
#include "numeric/mat.h"

#include <cstdint>

namespace lathe {

class Model;

// fp32 copies of the weights the CPU engine computes with, in the canonical (Hugging Face) layout: a linear weight
// is (out x in) and y = x W^T + b. An absent bias is an empty vector. Fused q|k|v tensors (GPT-2 c_attn, GGUF
// attn_qkv) are split into q, k and v on load.
struct LinearWeights {
    Mat w;
    Vec b;
    bool hasBias() const { return b.size() > 0; }
    bool present() const { return w.size() > 0; }
};

// RMSNorm uses `weight` only; LayerNorm uses `weight` and `bias` (an absent bias is a zero shift).
struct NormWeights {
    Vec weight;
    Vec bias;
    bool present() const { return weight.size() > 0; }
};

// One transformer block. Which members are used depends on the family: `gate` only for SwiGLU (Llama), `mlpNorm`
// not for Phi-2 (its MLP reads the attention's input norm), and for BERT (post-norm) attnNorm / mlpNorm are the
// LayerNorms after the attention and the MLP.
// Sliced models (ModelConfig::slicing) have no norm weights and may carry shortcut matrices on the residual path:
// attnShortcut (mid x in) maps the block input into the space the attention output is added in, mlpShortcut
// (out x mid) the mid residual into the MLP output's space (Phi-2: attnShortcut (out x in) only). An empty shortcut
// is the identity.
struct BlockWeights {
    NormWeights attnNorm;
    LinearWeights q, k, v, o;
    NormWeights mlpNorm;
    LinearWeights gate, up, down;
    Mat attnShortcut, mlpShortcut;
    int64_t bytes() const;
};

struct EmbeddingWeights {
    Mat token;     // (vocab x hidden)
    Mat position;  // (positions x hidden) for learned absolute positions, else empty
    Mat tokenType; // BERT
    NormWeights norm; // BERT's embedding LayerNorm
};

struct HeadWeights {
    NormWeights finalNorm;  // decoders
    LinearWeights lmHead;   // empty when tied to the token embedding
    LinearWeights pooler;   // BERT
};

// Loaders throw LatheError naming the model and the missing tensor when a required one is absent.
BlockWeights loadBlockWeights(const Model &model, int layer);
EmbeddingWeights loadEmbeddingWeights(const Model &model);
HeadWeights loadHeadWeights(const Model &model);

// The inverse of the loaders, for methods that edit weights: each matrix is written back into the tensor it came
// from as an owned fp32 buffer (Model::setFloat), shapes may change (slicing), fused q|k|v tensors are written
// fused again. Tensors that do not exist yet (a bias added by norm fusion, shortcut matrices, an untied lm_head)
// are added under the family's Hugging Face name; norm weights are left alone (see removeNormWeights).
void storeBlockWeights(Model &model, int layer, const BlockWeights &weights);
void storeEmbeddingWeights(Model &model, const EmbeddingWeights &weights);
void storeHeadWeights(Model &model, const HeadWeights &weights);
// Drops every norm weight and bias (SliceGPT's fused form has weight-less norms).
void removeNormWeights(Model &model);

} // namespace lathe
