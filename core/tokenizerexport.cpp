#include "tokenizerexport.h"

#include "bytelevelbpe.h"
#include "error.h"
#include "model.h"

#include <nlohmann/json.hpp>

#include <set>

namespace lathe {

using json = nlohmann::json;

namespace {

json byteLevel(bool useRegex) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", useRegex}};
}

// tokenizers' pre-tokenizer for Lathe's steps: the GPT-2 regex is ByteLevel's own (use_regex), any other regex a
// Split in Isolated mode followed by a ByteLevel without regex, Digits as Digits(individual_digits).
json preTokenizer(const std::vector<ByteLevelBpeTokenizer::PreStep> &steps) {
    json seq = json::array();
    bool ownRegex = false;
    for (const auto &st : steps) {
        if (st.type == ByteLevelBpeTokenizer::PreStep::Digits) {
            seq.push_back({{"type", "Digits"}, {"individual_digits", true}});
        } else if (st.pattern == ByteLevelBpeTokenizer::gpt2Pattern()) {
            ownRegex = true;
        } else {
            seq.push_back({{"type", "Split"}, {"pattern", {{"Regex", st.pattern}}}, {"behavior", "Isolated"},
                           {"invert", false}});
        }
    }
    seq.push_back(byteLevel(ownRegex));
    if (seq.size() == 1)
        return seq[0];
    return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

template <typename T> std::vector<T> array(const json &meta, const char *key) {
    std::vector<T> out;
    if (auto it = meta.find(key); it != meta.end() && it->is_array())
        for (const json &v : *it)
            out.push_back(v.get<T>());
    return out;
}

} // namespace

HfTokenizerFiles hfTokenizerFiles(const Model &model) {
    HfTokenizerFiles out;
    if (model.tokenizer.kind != "gguf") {
        if (model.tokenizer.files.empty())
            out.note = model.tokenizer.kind.empty() ? "the model has no tokenizer"
                                                    : "its " + model.tokenizer.kind + " tokenizer has no Hugging Face form";
        return out;
    }
    const json &meta = model.metadata;
    const std::string kind = meta.value("tokenizer.ggml.model", "");
    if (kind != "gpt2") {
        out.note = "the GGUF's '" + kind + "' (SentencePiece-style) vocabulary is not converted to tokenizer.json; "
                   "load the tokenizer from the original model";
        return out;
    }
    const auto tokens = array<std::string>(meta, "tokenizer.ggml.tokens");
    const auto types = array<int32_t>(meta, "tokenizer.ggml.token_type");
    const auto merges = array<std::string>(meta, "tokenizer.ggml.merges");
    std::vector<ByteLevelBpeTokenizer::PreStep> steps;
    const std::string pre = meta.value("tokenizer.ggml.pre", "");
    addGgufPreSteps(pre, model.sourcePath, steps);

    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (!vocab.contains(tokens[i])) // a repeated entry keeps its first id, as tokenizers would
            vocab[tokens[i]] = int64_t(i);
        const int32_t type = i < types.size() ? types[i] : 1;
        if (type == 3 || type == 4) // control, user-defined: matched verbatim in the text
            added.push_back({{"id", int64_t(i)}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", type == 3}});
    }
    const int64_t bos = meta.value("tokenizer.ggml.bos_token_id", int64_t(-1));
    const int64_t eos = meta.value("tokenizer.ggml.eos_token_id", int64_t(-1));
    const bool addBos = meta.value("tokenizer.ggml.add_bos_token", false) && bos >= 0 && bos < int64_t(tokens.size());
    json post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
    if (addBos) {
        const std::string b = tokens[size_t(bos)];
        post = {{"type", "TemplateProcessing"},
                {"single", {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                {"pair",
                 {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                  {{"SpecialToken", {{"id", b}, {"type_id", 1}}}},
                  {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
                {"special_tokens", {{b, {{"id", b}, {"ids", {bos}}, {"tokens", {b}}}}}}};
    }
    const json tok = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        {"normalizer", pre == "qwen2" ? json{{"type", "NFC"}} : json(nullptr)},
        {"pre_tokenizer", preTokenizer(steps)},
        {"post_processor", post},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
          {"ignore_merges", pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3"}, {"vocab", vocab},
          {"merges", merges}}}};
    json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"clean_up_tokenization_spaces", false}};
    if (bos >= 0 && bos < int64_t(tokens.size()))
        config["bos_token"] = tokens[size_t(bos)];
    if (eos >= 0 && eos < int64_t(tokens.size()))
        config["eos_token"] = tokens[size_t(eos)];
    if (model.config.maxPositions > 0)
        config["model_max_length"] = model.config.maxPositions;
    if (meta.contains("tokenizer.chat_template") && meta["tokenizer.chat_template"].is_string())
        config["chat_template"] = meta["tokenizer.chat_template"];
    out.files = {{"tokenizer.json", tok.dump(2, ' ', false, json::error_handler_t::strict) + "\n"},
                 {"tokenizer_config.json", config.dump(2) + "\n"}};
    return out;
}

} // namespace lathe
