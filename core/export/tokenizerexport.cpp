#include "export/tokenizerexport.h"

#include "base/error.h"
#include "base/unicodetext.h"
#include "io/tokenizerloader.h"
#include "model/model.h"
#include "tokenizers/bytelevelbpe.h"
#include "tokenizers/scorebpe.h"
#include "tokenizers/sentencepiecetokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>


namespace lathe {

using json = nlohmann::json;

namespace {

// The model's tokenizer, or null with `note` saying why it does not load.
std::unique_ptr<Tokenizer> loadOrSayWhy(const Model &model, std::string &note) {
    try {
        return loadTokenizer(model);
    } catch (const LatheError &e) {
        note = std::string("its tokenizer does not load: ") + e.what();
        return nullptr;
    }
}

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

json addedToken(int64_t id, const std::string &content, bool special) {
    return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
            {"normalized", false}, {"special", special}};
}

template <typename T> std::vector<T> array(const json &meta, const char *key) {
    std::vector<T> out;
    if (auto it = meta.find(key); it != meta.end() && it->is_array())
        for (const json &v : *it)
            out.push_back(v.get<T>());
    return out;
}

// tokenizer.json without its post-processor for a GGUF byte-level BPE vocabulary; `pieces` gets the tokens by id.
json byteLevelTokenizerJson(const json &meta, const std::string &source, std::vector<std::string> &pieces) {
    const auto tokens = array<std::string>(meta, "tokenizer.ggml.tokens");
    const auto types = array<int32_t>(meta, "tokenizer.ggml.token_type");
    const auto merges = array<std::string>(meta, "tokenizer.ggml.merges");
    std::vector<ByteLevelBpeTokenizer::PreStep> steps;
    const std::string pre = meta.value("tokenizer.ggml.pre", "");
    addGgufPreSteps(pre, source, steps);
    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (!vocab.contains(tokens[i])) // a repeated entry keeps its first id, as tokenizers would
            vocab[tokens[i]] = int64_t(i);
        const int32_t type = i < types.size() ? types[i] : 1;
        if (type == 3 || type == 4) // control, user-defined: matched verbatim in the text
            added.push_back(addedToken(int64_t(i), tokens[i], type == 3));
    }
    pieces = tokens;
    return {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", pre == "qwen2" ? json{{"type", "NFC"}} : json(nullptr)},
            {"pre_tokenizer", preTokenizer(steps)},
            {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                                {"use_regex", true}}},
            {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"ignore_merges", pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3"}, {"vocab", vocab},
              {"merges", merges}}}};
}

// tokenizer.json for a SentencePiece-style vocabulary, as transformers converts Llama tokenizers (see the header).
const std::string kSpace = "\xE2\x96\x81"; // U+2581

// The pieces of a SentencePiece-style vocabulary as SentencePiece writes them, with their GGUF token types:
// llama2.c's plain spaces and "\n<s>\n" names go back to "▁" and "<s>", and its missing types are derived as
// its loader does.
void sentencePieceVocabulary(const ScoreBpeTokenizer::Spec &spec, std::vector<std::string> &pieces,
                             std::vector<int32_t> &types) {
    pieces = spec.pieces;
    types = spec.types;
    types.resize(pieces.size(), 0);
    for (size_t i = 0; i < pieces.size(); ++i) {
        std::string &p = pieces[i];
        if (p == "\n<s>\n" || p == "\n</s>\n") // llama2.c's export of BOS / EOS
            p = p.substr(1, p.size() - 2);
        if (spec.spaceSymbol != kSpace)
            for (size_t at = 0; (at = p.find(spec.spaceSymbol, at)) != std::string::npos; at += kSpace.size())
                p.replace(at, spec.spaceSymbol.size(), kSpace);
        if (types[i] == 0) {
            const bool isByte = ScoreBpeTokenizer::byteValue(p) >= 0;
            types[i] = p == "<unk>" ? 2 : p == "<s>" || p == "</s>" ? 3 : isByte ? 6 : 1;
        }
    }
}

json scoreBpeTokenizerJson(const ScoreBpeTokenizer::Spec &spec, std::vector<std::string> &pieces) {
    std::vector<int32_t> types;
    sentencePieceVocabulary(spec, pieces, types);
    json vocab = json::object();
    json added = json::array();
    std::unordered_map<std::string, int64_t> mergeable; // normal and user-defined pieces: what merges produce
    for (size_t i = 0; i < pieces.size(); ++i) {
        if (!vocab.contains(pieces[i]))
            vocab[pieces[i]] = int64_t(i);
        if (types[i] == 1 || types[i] == 4)
            mergeable.emplace(pieces[i], int64_t(i));
        if (types[i] == 2 || types[i] == 3 || types[i] == 4)
            added.push_back(addedToken(int64_t(i), pieces[i], types[i] != 4));
    }
    // Merges: every split of a piece into two mergeable pieces (at character boundaries), ordered by the piece's
    // score (highest first), then by piece id, then by the ids of the two halves. Merging the lowest-ranked pair
    // first then reproduces SentencePiece's "merge the adjacent pair whose union scores highest".
    struct Merge {
        float score;
        int64_t piece, left, right;
        size_t split;
    };
    std::vector<Merge> merges;
    for (size_t i = 0; i < pieces.size(); ++i) {
        if (types[i] != 1 && types[i] != 4)
            continue;
        const std::string &p = pieces[i];
        for (size_t k = unicode::utf8Length(static_cast<unsigned char>(p[0])); k < p.size();
             k += unicode::utf8Length(static_cast<unsigned char>(p[k]))) {
            auto l = mergeable.find(p.substr(0, k)), r = mergeable.find(p.substr(k));
            if (l != mergeable.end() && r != mergeable.end())
                merges.push_back({i < spec.scores.size() ? spec.scores[i] : 0.0f, int64_t(i), l->second, r->second, k});
        }
    }
    std::stable_sort(merges.begin(), merges.end(), [](const Merge &a, const Merge &b) {
        if (a.score != b.score)
            return a.score > b.score;
        if (a.piece != b.piece)
            return a.piece < b.piece;
        return std::pair(a.left, a.right) < std::pair(b.left, b.right);
    });
    json mergeList = json::array();
    for (const Merge &m : merges) {
        const std::string &p = pieces[size_t(m.piece)];
        mergeList.push_back({p.substr(0, m.split), p.substr(m.split)});
    }
    json normalizers = json::array();
    if (spec.addDummyPrefix)
        normalizers.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
    normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}});
    json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                 {{"type", "ByteFallback"}},
                                 {{"type", "Fuse"}}});
    if (spec.addDummyPrefix)
        decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    const std::string unk = spec.unk >= 0 && size_t(spec.unk) < pieces.size() ? pieces[size_t(spec.unk)] : "<unk>";
    return {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", {{"type", "Sequence"}, {"normalizers", normalizers}}},
            {"pre_tokenizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
            {"model",
             {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk}, {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
              {"vocab", vocab}, {"merges", mergeList}}}};
}

// BOS before every sequence (and before the second of a pair), as the model's tokenizer adds it.
json bosTemplate(const std::string &b, int64_t bos) {
    return {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", b}, {"type_id", 1}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{b, {{"id", b}, {"ids", {bos}}, {"tokens", {b}}}}}}};
}

} // namespace

HfTokenizerFiles hfTokenizerFiles(const Model &model) {
    HfTokenizerFiles out;
    const std::string &kind = model.tokenizer.kind;
    if (kind != "gguf" && kind != "llama2c") {
        if (model.tokenizer.files.empty())
            out.note = kind.empty() ? "the model has no tokenizer" : "its " + kind + " tokenizer has no Hugging Face form";
        return out;
    }
    const std::unique_ptr<Tokenizer> tok = loadOrSayWhy(model, out.note);
    if (!tok)
        return out;
    std::vector<std::string> pieces;
    json tj;
    if (const auto *sp = dynamic_cast<const ScoreBpeTokenizer *>(tok.get()))
        tj = scoreBpeTokenizerJson(sp->spec(), pieces);
    else if (kind == "gguf" && model.metadata.value("tokenizer.ggml.model", "") == "gpt2")
        tj = byteLevelTokenizerJson(model.metadata, model.sourcePath, pieces);
    else {
        out.note = "its " + tok->kind() + " tokenizer has no Hugging Face form";
        return out;
    }
    const auto valid = [&](int64_t id) { return id >= 0 && id < int64_t(pieces.size()); };
    if (tok->addBos && valid(tok->bos))
        tj["post_processor"] = bosTemplate(pieces[size_t(tok->bos)], tok->bos);
    json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"clean_up_tokenization_spaces", false}};
    if (valid(tok->bos))
        config["bos_token"] = pieces[size_t(tok->bos)];
    if (valid(tok->eos))
        config["eos_token"] = pieces[size_t(tok->eos)];
    if (model.config.maxPositions > 0)
        config["model_max_length"] = model.config.maxPositions;
    const json &meta = model.metadata;
    if (meta.is_object() && meta.contains("tokenizer.chat_template") && meta["tokenizer.chat_template"].is_string())
        config["chat_template"] = meta["tokenizer.chat_template"];
    out.files = {{"tokenizer.json", tj.dump(2, ' ', false, json::error_handler_t::strict) + "\n"},
                 {"tokenizer_config.json", config.dump(2) + "\n"}};
    return out;
}

} // namespace lathe

namespace lathe {

namespace {

// llama.cpp's tokenizer.ggml.pre name for byte-level pre-tokenizer steps: the name whose steps (as Lathe reads a
// GGUF) equal these; empty when none does.
std::string ggufPreName(const ByteLevelBpeTokenizer::Spec &spec) {
    const auto same = [](const std::vector<ByteLevelBpeTokenizer::PreStep> &a,
                         const std::vector<ByteLevelBpeTokenizer::PreStep> &b) {
        if (a.size() != b.size())
            return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (a[i].type != b[i].type || (a[i].type == ByteLevelBpeTokenizer::PreStep::Regex && a[i].pattern != b[i].pattern))
                return false;
        return true;
    };
    for (const char *name : {"gpt-2", "smollm", "llama-bpe", "qwen2"}) {
        std::vector<ByteLevelBpeTokenizer::PreStep> steps;
        addGgufPreSteps(name, "", steps);
        const std::string n = name;
        // Lathe reads NFC and ignore_merges from the name: they must agree as well.
        if (same(steps, spec.preSteps) && spec.nfc == (n == "qwen2") && spec.ignoreMerges == (n == "llama-bpe"))
            return n;
    }
    return {};
}

// The chat template of a Hugging Face tokenizer, from tokenizer_config.json beside the tokenizer files.
std::string hfChatTemplate(const Model &model) {
    namespace fs = std::filesystem;
    for (const std::string &f : model.tokenizer.files) {
        const fs::path cfg = fs::path(f).parent_path() / "tokenizer_config.json";
        std::ifstream in(cfg);
        if (!in)
            continue;
        const json j = json::parse(in, nullptr, false);
        if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
            return j["chat_template"].get<std::string>();
        return {};
    }
    return {};
}

} // namespace

GgufTokenizerMetadata ggufTokenizerMetadata(const Model &model) {
    GgufTokenizerMetadata out;
    const json &meta = model.metadata;
    if (model.tokenizer.kind == "gguf" && meta.is_object()) {
        for (const auto &[key, value] : meta.items())
            if (key.rfind("tokenizer.", 0) == 0)
                out.keys[key] = value;
        return out;
    }
    const std::unique_ptr<Tokenizer> tok = loadOrSayWhy(model, out.note);
    if (!tok)
        return out;
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    json &k = out.keys;
    if (const auto *bl = dynamic_cast<const ByteLevelBpeTokenizer *>(tok.get())) {
        const ByteLevelBpeTokenizer::Spec spec = bl->spec();
        const std::string pre = ggufPreName(spec);
        if (pre.empty()) {
            out.note = "its byte-level pre-tokenizer matches none of llama.cpp's (gpt-2, smollm, llama-bpe, qwen2)";
            return out;
        }
        tokens = spec.tokens;
        types.assign(tokens.size(), 1);
        for (const auto &[text, id] : spec.addedTokens)
            if (id >= 0 && size_t(id) < types.size())
                types[size_t(id)] = 3; // control: matched verbatim, not printed by llama.cpp's detokenizer
        json merges = json::array();
        for (const auto &[a, b] : spec.merges)
            merges.push_back(a + " " + b);
        k["tokenizer.ggml.model"] = "gpt2";
        k["tokenizer.ggml.pre"] = pre;
        k["tokenizer.ggml.merges"] = std::move(merges);
    } else if (const auto *sb = dynamic_cast<const ScoreBpeTokenizer *>(tok.get())) {
        sentencePieceVocabulary(sb->spec(), tokens, types);
        std::vector<float> scores = sb->spec().scores;
        scores.resize(tokens.size(), 0.0f);
        k["tokenizer.ggml.model"] = "llama";
        k["tokenizer.ggml.scores"] = scores;
        k["tokenizer.ggml.unknown_token_id"] = sb->spec().unk;
        k["tokenizer.ggml.add_space_prefix"] = sb->spec().addDummyPrefix;
    } else if (const auto *sp = dynamic_cast<const SentencePieceTokenizer *>(tok.get())) {
        std::vector<float> scores;
        sp->vocabulary(tokens, scores, types);
        k["tokenizer.ggml.model"] = "llama";
        k["tokenizer.ggml.scores"] = scores;
        for (size_t i = 0; i < types.size(); ++i)
            if (types[i] == 2) {
                k["tokenizer.ggml.unknown_token_id"] = int64_t(i);
                break;
            }
    } else {
        out.note = "its " + tok->kind() + " tokenizer has no llama.cpp form";
        return out;
    }
    // llama.cpp takes the vocabulary size from the token list: pad it to the embedding's rows, as its converter does.
    for (size_t i = tokens.size(); i < size_t(std::max<int64_t>(model.config.vocabSize, 0)); ++i) {
        tokens.push_back("[PAD" + std::to_string(i) + "]");
        types.push_back(5); // unused
    }
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i].empty()) { // an id without an entry (a hole in tokenizer.json's vocabulary)
            tokens[i] = "[PAD" + std::to_string(i) + "]";
            types[i] = 5;
        }
    if (k.contains("tokenizer.ggml.scores"))
        k["tokenizer.ggml.scores"].get_ref<json::array_t &>().resize(tokens.size(), 0.0);
    k["tokenizer.ggml.tokens"] = tokens;
    k["tokenizer.ggml.token_type"] = types;
    if (tok->bos >= 0)
        k["tokenizer.ggml.bos_token_id"] = tok->bos;
    if (tok->eos >= 0)
        k["tokenizer.ggml.eos_token_id"] = tok->eos;
    k["tokenizer.ggml.add_bos_token"] = tok->addBos;
    k["tokenizer.ggml.add_eos_token"] = tok->addEos;
    if (const std::string chat = hfChatTemplate(model); !chat.empty())
        k["tokenizer.chat_template"] = chat;
    return out;
}

} // namespace lathe
