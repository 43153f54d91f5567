#include "model/tensorrole.h"

namespace lathe {

const char *roleName(TensorRole role) {
    switch (role) {
    case TensorRole::Unknown: return "unknown";
    case TensorRole::Buffer: return "buffer";
    case TensorRole::TokenEmbedding: return "token_embedding";
    case TensorRole::PositionEmbedding: return "position_embedding";
    case TensorRole::TokenTypeEmbedding: return "token_type_embedding";
    case TensorRole::EmbeddingNorm: return "embedding_norm";
    case TensorRole::AttnNorm: return "attn_norm";
    case TensorRole::AttnQ: return "attn_q";
    case TensorRole::AttnK: return "attn_k";
    case TensorRole::AttnV: return "attn_v";
    case TensorRole::AttnQkv: return "attn_qkv";
    case TensorRole::AttnO: return "attn_o";
    case TensorRole::MlpNorm: return "mlp_norm";
    case TensorRole::MlpGate: return "mlp_gate";
    case TensorRole::MlpUp: return "mlp_up";
    case TensorRole::MlpDown: return "mlp_down";
    case TensorRole::FinalNorm: return "final_norm";
    case TensorRole::LmHead: return "lm_head";
    case TensorRole::Pooler: return "pooler";
    case TensorRole::HeadTransform: return "head_transform";
    case TensorRole::HeadNorm: return "head_norm";
    case TensorRole::AttnShortcut: return "attn_shortcut";
    case TensorRole::MlpShortcut: return "mlp_shortcut";
    }
    return "unknown";
}

const char *roleGroup(TensorRole role) {
    switch (role) {
    case TensorRole::TokenEmbedding:
    case TensorRole::PositionEmbedding:
    case TensorRole::TokenTypeEmbedding:
        return "embedding";
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV:
    case TensorRole::AttnQkv:
    case TensorRole::AttnO:
        return "attention";
    case TensorRole::MlpGate:
    case TensorRole::MlpUp:
    case TensorRole::MlpDown:
        return "mlp";
    case TensorRole::EmbeddingNorm:
    case TensorRole::AttnNorm:
    case TensorRole::MlpNorm:
    case TensorRole::FinalNorm:
    case TensorRole::HeadNorm:
        return "norm";
    case TensorRole::LmHead:
    case TensorRole::Pooler:
    case TensorRole::HeadTransform:
        return "head";
    case TensorRole::AttnShortcut:
    case TensorRole::MlpShortcut:
        return "shortcut";
    case TensorRole::Unknown:
    case TensorRole::Buffer:
        return "other";
    }
    return "other";
}

bool isLinearRole(TensorRole role) {
    switch (role) {
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV:
    case TensorRole::AttnQkv:
    case TensorRole::AttnO:
    case TensorRole::MlpGate:
    case TensorRole::MlpUp:
    case TensorRole::MlpDown:
    case TensorRole::LmHead:
    case TensorRole::Pooler:
    case TensorRole::HeadTransform:
        return true;
    default:
        return false;
    }
}

} // namespace lathe
