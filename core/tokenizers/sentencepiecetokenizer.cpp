#include "tokenizers/sentencepiecetokenizer.h"

#include "base/error.h"

#ifdef LATHE_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#else
// Without the library (the engine-only build) the processor is never made, but the member's destructor needs a
// complete type.
namespace sentencepiece {
class SentencePieceProcessor {};
} // namespace sentencepiece
#endif

namespace lathe {

#ifdef LATHE_HAVE_SENTENCEPIECE

bool SentencePieceTokenizer::available() { return true; }

SentencePieceTokenizer::SentencePieceTokenizer(const std::string &modelFile)
    : m_sp(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
    const auto status = m_sp->Load(modelFile);
    if (!status.ok())
        throw LatheError(modelFile + ": not a SentencePiece model (" + status.ToString() + ")");
    bos = m_sp->bos_id();
    eos = m_sp->eos_id();
    addBos = bos >= 0;
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

int64_t SentencePieceTokenizer::vocabSize() const { return m_sp->GetPieceSize(); }

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
    std::vector<int> ids;
    m_sp->Encode(text, &ids);
    return {ids.begin(), ids.end()};
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    m_sp->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
    return out;
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
    return id >= 0 && id < m_sp->GetPieceSize() ? m_sp->IdToPiece(id) : std::string();
}

void SentencePieceTokenizer::vocabulary(std::vector<std::string> &pieces, std::vector<float> &scores,
                                        std::vector<int32_t> &types) const {
    const int n = m_sp->GetPieceSize();
    pieces.resize(size_t(n));
    scores.resize(size_t(n));
    types.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
        pieces[size_t(i)] = m_sp->IdToPiece(i);
        scores[size_t(i)] = m_sp->GetScore(i);
        types[size_t(i)] = m_sp->IsUnknown(i) ? 2 : m_sp->IsControl(i) ? 3 : m_sp->IsUnused(i) ? 5 : m_sp->IsByte(i) ? 6 : 1;
    }
}

#else

bool SentencePieceTokenizer::available() { return false; }
void SentencePieceTokenizer::vocabulary(std::vector<std::string> &, std::vector<float> &, std::vector<int32_t> &) const {}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string &modelFile) {
    throw LatheError(modelFile + ": this build of Lathe has no SentencePiece support",
                     "install libsentencepiece-dev and rebuild");
}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;
int64_t SentencePieceTokenizer::vocabSize() const { return 0; }
std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view) const { return {}; }
std::string SentencePieceTokenizer::decode(std::span<const int32_t>) const { return {}; }
std::string SentencePieceTokenizer::piece(int32_t) const { return {}; }

#endif

} // namespace lathe
