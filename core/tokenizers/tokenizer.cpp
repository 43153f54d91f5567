#include "tokenizers/tokenizer.h"

namespace lathe {

std::vector<int32_t> Tokenizer::encodeForModel(std::string_view text) const {
    std::vector<int32_t> ids;
    if (addBos && bos >= 0)
        ids.push_back(bos);
    std::vector<int32_t> body = encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    if (addEos && eos >= 0)
        ids.push_back(eos);
    return ids;
}

} // namespace lathe
