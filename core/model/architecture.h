#pragma once

#include "model/modelconfig.h"
#include "model/tensorrole.h"

#include <optional>
#include <string>

namespace lathe {

struct RoleMatch {
    TensorRole role = TensorRole::Unknown;
    int layer = -1;
    bool isBias = false;
};

// Maps tensor names of one architecture family to roles and back, for Hugging Face names and llama.cpp's GGUF
// names. Names are matched as "<stem>.weight" / "<stem>.bias" against per-family stem patterns in which "{L}"
// stands for the block index.
class ArchitectureAdapter {
public:
    static const ArchitectureAdapter &forFamily(ArchFamily family);

    ArchFamily family() const { return m_family; }
    RoleMatch classifyHf(const std::string &name) const;
    RoleMatch classifyGguf(const std::string &name) const;
    // Hugging Face name for a role, or nullopt where the family has no such tensor.
    std::optional<std::string> hfName(TensorRole role, int layer, bool isBias) const;
    // The module path of a role as written ("model.layers.{L}.self_attn.q_proj", "{L}" standing for the block),
    // without ".weight" / ".bias"; nullopt where the family has no such tensor.
    std::optional<std::string> hfModulePath(TensorRole role) const;
    // llama.cpp's GGUF name for a role ("blk.3.attn_q.weight"), or nullopt where its layout has no such tensor.
    std::optional<std::string> ggufName(TensorRole role, int layer, bool isBias) const;
    // GPT-2 keeps its linears as Conv1D, stored (in x out).
    bool hfStoresTransposed(TensorRole role, bool isBias) const;

    struct Pattern {
        const char *stem;
        TensorRole role;
    };

private:
    ArchFamily m_family;
    const Pattern *m_hf;
    size_t m_hfCount;
    const Pattern *m_gguf;
    size_t m_ggufCount;
    const char *m_hfOptionalPrefix; // stripped when classifying ("transformer." for GPT-2, "bert." for BERT)
    const char *m_hfWritePrefix;    // prepended when naming

    ArchitectureAdapter(ArchFamily f, const Pattern *hf, size_t nhf, const Pattern *gguf, size_t ngguf,
                        const char *optionalPrefix, const char *writePrefix)
        : m_family(f), m_hf(hf), m_hfCount(nhf), m_gguf(gguf), m_ggufCount(ngguf),
          m_hfOptionalPrefix(optionalPrefix), m_hfWritePrefix(writePrefix) {}
};

// GGUF general.architecture -> family; throws LatheError naming the architecture for unknown ones.
ArchFamily familyFromGgufArch(const std::string &arch, const std::string &file);

} // namespace lathe
