// The tokenizer factory: finds and reads a model's tokenizer (its files, or the vocabulary inside a GGUF) and the
// tokenizer files a user names. In io because it opens files and GGUF models; the tokenizers themselves know no
// file formats beyond what their specs hold.

#include "io/tokenizerloader.h"

#include "base/error.h"
#include "base/mappedfile.h"
#include "io/modelloader.h"
#include "model/model.h"
#include "tokenizers/bytelevelbpe.h"
#include "tokenizers/scorebpe.h"
#include "tokenizers/sentencepiecetokenizer.h"
#include "tokenizers/wordpiecetokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <limits>
#include <sstream>
#include <unordered_map>

namespace lathe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json readJson(const fs::path &p) {
    const std::string text = readWholeFile(p.string());
    try {
        return json::parse(text);
    } catch (const json::exception &e) {
        throw LatheError(p.string() + ": invalid JSON (" + e.what() + ")");
    }
}

// The array `key` of the object `obj`, by reference (no copy, no temporary to outlive): an empty array when absent
// or null, a LatheError naming `file` when it is something else.
const json &arrayAt(const json &obj, const char *key, const std::string &file) {
    static const json kEmpty = json::array();
    if (!obj.is_object())
        return kEmpty;
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return kEmpty;
    require(it->is_array(), file, std::string("'") + key + "' is not an array");
    return *it;
}

std::string tokenContent(const json &t) {
    if (t.is_string())
        return t.get<std::string>();
    if (t.is_object() && t.contains("content") && t["content"].is_string())
        return t["content"].get<std::string>();
    return {};
}

// tokenizer_config.json next to the tokenizer: add_bos_token / add_eos_token and the BOS/EOS strings.
void applyTokenizerConfig(Tokenizer &tok, const fs::path &dir, const std::unordered_map<std::string, int32_t> &ids) {
    const fs::path p = dir / "tokenizer_config.json";
    if (!fs::exists(p))
        return;
    const json c = readJson(p);
    auto idOf = [&](const char *key) {
        auto it = c.find(key);
        if (it == c.end())
            return -1;
        auto f = ids.find(tokenContent(*it));
        return f == ids.end() ? -1 : f->second;
    };
    if (int32_t b = idOf("bos_token"); b >= 0)
        tok.bos = b;
    if (int32_t e = idOf("eos_token"); e >= 0)
        tok.eos = e;
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean())
        tok.addBos = c["add_bos_token"].get<bool>();
    if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean())
        tok.addEos = c["add_eos_token"].get<bool>();
}

void parsePreTokenizer(const json &pt, std::vector<ByteLevelBpeTokenizer::PreStep> &steps, const std::string &file) {
    if (pt.is_null())
        return;
    const std::string type = pt.value("type", "");
    using Step = ByteLevelBpeTokenizer::PreStep;
    if (type == "Sequence") {
        for (const json &c : arrayAt(pt, "pretokenizers", file))
            parsePreTokenizer(c, steps, file);
    } else if (type == "ByteLevel") {
        require(!pt.value("add_prefix_space", false), file, "ByteLevel with add_prefix_space is not supported");
        if (pt.value("use_regex", true))
            steps.push_back({Step::Regex, ByteLevelBpeTokenizer::gpt2Pattern()});
    } else if (type == "Split") {
        require(pt.value("behavior", "") == "Isolated" && !pt.value("invert", false), file,
                "Split pre-tokenizer with behavior '" + pt.value("behavior", "") + "' is not supported");
        const json &pat = pt["pattern"];
        std::string regex;
        if (pat.contains("Regex")) {
            regex = pat["Regex"].get<std::string>();
        } else {
            for (char ch : pat.value("String", std::string())) { // literal: escape it
                if (std::string("\\^$.|?*+()[]{}").find(ch) != std::string::npos)
                    regex += '\\';
                regex += ch;
            }
        }
        steps.push_back({Step::Regex, regex});
    } else if (type == "Digits") {
        if (pt.value("individual_digits", false))
            steps.push_back({Step::Digits, {}});
        else
            steps.push_back({Step::Regex, "\\p{N}+"});
    } else {
        throw LatheError(file + ": pre-tokenizer '" + type + "' is not supported",
                         "supported: ByteLevel, Split (Isolated), Digits, Sequence");
    }
}

// A merge written "left right" (merges.txt, GGUF, older tokenizer.json files), split at the first space after the
// first character (a merge's left side may itself be a space).
std::pair<std::string, std::string> splitMerge(const std::string &m, const std::string &source) {
    const size_t sp = m.find(' ', 1);
    require(sp != std::string::npos, source, "merge '" + m + "' has no space");
    return {m.substr(0, sp), m.substr(sp + 1)};
}

// tokenizer.json's model.merges: [left, right] pairs or "left right" strings.
std::vector<std::pair<std::string, std::string>> tokenizerJsonMerges(const json &model, const std::string &source) {
    std::vector<std::pair<std::string, std::string>> merges;
    for (const json &mg : arrayAt(model, "merges", source)) {
        if (mg.is_array() && mg.size() == 2)
            merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
        else if (mg.is_string())
            merges.push_back(splitMerge(mg.get<std::string>(), source));
    }
    return merges;
}

// A SentencePiece-style tokenizer.json (BPE with byte fallback over "▁"-spaced text: a Prepend/Replace normalizer,
// or a Metaspace pre-tokenizer; what transformers writes for Llama/Mistral tokenizers and what Lathe exports) as a
// ScoreBpeTokenizer. A piece's score is minus the rank of the first merge forming it, so "merge the adjacent pair
// whose union scores highest" follows the merge order.
std::unique_ptr<Tokenizer> scoreBpeFromJson(const json &j, std::vector<std::string> tokens, const std::string &name) {
    const json &m = j["model"];
    ScoreBpeTokenizer::Spec spec;
    spec.kind = "SentencePiece-style BPE (tokenizer.json)";
    spec.addDummyPrefix = false;
    bool spaced = false;
    const json norm = j.value("normalizer", json());
    std::vector<json> steps;
    if (norm.is_object())
        steps = norm.value("type", "") == "Sequence" ? norm.value("normalizers", std::vector<json>{}) : std::vector{norm};
    for (const json &st : steps) {
        const std::string type = st.value("type", "");
        if (type == "Prepend" && st.value("prepend", "") == spec.spaceSymbol)
            spec.addDummyPrefix = true;
        else if (type == "Replace" && st.value("pattern", json::object()).value("String", "") == " " &&
                 st.value("content", "") == spec.spaceSymbol)
            spaced = true;
        else
            throw LatheError(name + ": normalizer '" + type + "' is not supported for SentencePiece-style BPE");
    }
    const json pre = j.value("pre_tokenizer", json());
    if (pre.is_object() && pre.value("type", "") == "Metaspace") {
        require(pre.value("replacement", spec.spaceSymbol) == spec.spaceSymbol && !pre.value("split", false), name,
                "a Metaspace pre-tokenizer with another symbol or splitting is not supported");
        spaced = true;
        spec.addDummyPrefix = pre.value("prepend_scheme", std::string("always")) != "never";
    } else if (!pre.is_null()) {
        throw LatheError(name + ": pre-tokenizer '" + pre.value("type", "") + "' is not supported for SentencePiece-style BPE");
    }
    require(spaced, name, "byte-fallback BPE without the ' ' -> U+2581 step is not supported");
    std::unordered_map<std::string, int32_t> ids;
    for (size_t i = 0; i < tokens.size(); ++i)
        ids.emplace(tokens[i], int32_t(i));
    spec.scores.assign(tokens.size(), -std::numeric_limits<float>::max());
    int64_t rank = 0;
    for (const auto &[left, right] : tokenizerJsonMerges(m, name)) {
        if (auto it = ids.find(left + right); it != ids.end() && spec.scores[size_t(it->second)] == -std::numeric_limits<float>::max())
            spec.scores[size_t(it->second)] = -float(rank);
        ++rank;
    }
    spec.types.assign(tokens.size(), 1);
    for (size_t i = 0; i < tokens.size(); ++i)
        if (ScoreBpeTokenizer::byteValue(tokens[i]) >= 0)
            spec.types[i] = 6;
    for (const json &a : arrayAt(j, "added_tokens", name)) {
        const int32_t id = a.value("id", -1);
        if (id >= 0 && size_t(id) < tokens.size())
            spec.types[size_t(id)] = a.value("special", false) ? 3 : 4;
    }
    const std::string unk = m.value("unk_token", json()).is_string() ? m["unk_token"].get<std::string>() : "";
    if (auto it = ids.find(unk); it != ids.end()) {
        spec.unk = it->second;
        spec.types[size_t(it->second)] = 2;
    }
    spec.pieces = std::move(tokens);
    return std::make_unique<ScoreBpeTokenizer>(std::move(spec));
}

std::unique_ptr<Tokenizer> fromTokenizerJson(const fs::path &file) {
    const std::string name = file.string();
    const json j = readJson(file);
    require(j.is_object() && j.contains("model") && j["model"].is_object(), name, "not a tokenizer.json (no model)");
    const json &m = j["model"];
    const std::string type = m.value("type", "");
    std::unordered_map<std::string, int32_t> ids;
    int32_t maxId = -1;
    auto addId = [&](const std::string &t, int32_t id) {
        require(id >= 0 && id < (1 << 24), name, "token id " + std::to_string(id) + " is out of range");
        ids[t] = id;
        maxId = std::max(maxId, id);
    };
    require(m.contains("vocab") && m["vocab"].is_object(), name, "the model has no vocab object");
    require(!m["vocab"].empty(), name, "the vocabulary is empty", "this tokenizer.json would encode every text to nothing");
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it)
        addId(it.key(), it.value().get<int32_t>());
    std::vector<std::pair<std::string, int32_t>> added;
    for (const json &a : arrayAt(j, "added_tokens", name)) {
        require(a.is_object(), name, "an added token is not an object");
        addId(a.value("content", ""), a.value("id", -1));
        added.emplace_back(a.value("content", ""), a.value("id", -1));
    }
    std::vector<std::string> tokens(size_t(maxId + 1));
    for (const auto &[t, id] : ids)
        tokens[size_t(id)] = t;

    std::unique_ptr<Tokenizer> tok;
    const bool byteLevel = type == "BPE" && j.contains("decoder") && j["decoder"].is_object() &&
                           j["decoder"].value("type", "") == "ByteLevel";
    if (type == "BPE" && !byteLevel) {
        if (fs::exists(file.parent_path() / "tokenizer.model"))
            return std::make_unique<SentencePieceTokenizer>((file.parent_path() / "tokenizer.model").string());
        require(m.value("byte_fallback", false), name,
                "BPE without a ByteLevel decoder or byte fallback is not a tokenizer Lathe knows",
                "put the model's tokenizer.model next to it");
        tok = scoreBpeFromJson(j, std::move(tokens), name);
    } else if (type == "BPE") {
        ByteLevelBpeTokenizer::Spec spec;
        spec.kind = "byte-level BPE (tokenizer.json)";
        spec.tokens = std::move(tokens);
        spec.merges = tokenizerJsonMerges(m, name);
        parsePreTokenizer(j.value("pre_tokenizer", json()), spec.preSteps, name);
        const json norm = j.value("normalizer", json());
        if (!norm.is_null()) {
            const std::string nt = norm.value("type", "");
            if (nt == "NFC")
                spec.nfc = true;
            else
                throw LatheError(name + ": normalizer '" + nt + "' is not supported for byte-level BPE");
        }
        spec.addedTokens = added;
        spec.ignoreMerges = m.value("ignore_merges", false);
        tok = std::make_unique<ByteLevelBpeTokenizer>(std::move(spec));
    } else if (type == "WordPiece") {
        WordPieceTokenizer::Spec spec;
        spec.kind = "WordPiece (tokenizer.json)";
        spec.vocab = std::move(tokens);
        spec.prefix = m.value("continuing_subword_prefix", "##");
        spec.unk = m.value("unk_token", "[UNK]");
        const json norm = j.value("normalizer", json());
        if (norm.is_object() && norm.value("type", "") == "BertNormalizer") {
            spec.lowercase = norm.value("lowercase", true);
            spec.stripAccents = norm["strip_accents"].is_boolean() ? norm["strip_accents"].get<bool>() : spec.lowercase;
        }
        tok = std::make_unique<WordPieceTokenizer>(std::move(spec));
    } else {
        throw LatheError(name + ": tokenizer model type '" + type + "' is not supported",
                         "supported: BPE (byte-level), WordPiece; SentencePiece through tokenizer.model");
    }
    // Post-processor: which specials the model adds around a single sequence.
    const json pp = j.value("post_processor", json());
    auto specialsOf = [&](const json &p) {
        if (p.value("type", "") == "TemplateProcessing") {
            bool seenA = false;
            tok->addBos = tok->addEos = false;
            for (const json &item : p.value("single", json::array())) {
                if (item.contains("Sequence")) {
                    seenA = true;
                } else if (item.contains("SpecialToken")) {
                    auto f = ids.find(item["SpecialToken"].value("id", ""));
                    if (f == ids.end())
                        continue;
                    (seenA ? tok->eos : tok->bos) = f->second;
                    (seenA ? tok->addEos : tok->addBos) = true;
                }
            }
        } else if (p.value("type", "") == "BertProcessing" || p.value("type", "") == "RobertaProcessing") {
            tok->bos = p["cls"][1].get<int32_t>();
            tok->eos = p["sep"][1].get<int32_t>();
            tok->addBos = tok->addEos = true;
        }
    };
    if (pp.is_object()) {
        if (pp.value("type", "") == "Sequence") {
            for (const json &p : pp.value("processors", json::array()))
                specialsOf(p);
        } else {
            specialsOf(pp);
        }
    }
    applyTokenizerConfig(*tok, file.parent_path(), ids);
    return tok;
}

std::unique_ptr<Tokenizer> fromVocabMerges(const fs::path &vocabFile) {
    const fs::path mergesFile = vocabFile.parent_path() / "merges.txt";
    require(fs::exists(mergesFile), vocabFile.string(), "merges.txt is missing next to vocab.json");
    const json v = readJson(vocabFile);
    require(v.is_object(), vocabFile.string(), "vocab.json is not an object");
    require(!v.empty(), vocabFile.string(), "vocab.json is empty");
    ByteLevelBpeTokenizer::Spec spec;
    spec.kind = "byte-level BPE (vocab.json + merges.txt)";
    std::unordered_map<std::string, int32_t> ids;
    int32_t maxId = -1;
    for (auto it = v.begin(); it != v.end(); ++it) {
        const int32_t id = it.value().get<int32_t>();
        require(id >= 0 && id < (1 << 24), vocabFile.string(), "token id out of range");
        ids[it.key()] = id;
        maxId = std::max(maxId, id);
    }
    spec.tokens.resize(size_t(maxId + 1));
    for (const auto &[t, id] : ids) {
        spec.tokens[size_t(id)] = t;
        // GPT-2 / OPT register these as special tokens: matched verbatim in text.
        if (t == "<|endoftext|>" || t == "<s>" || t == "</s>" || t == "<pad>" || t == "<unk>")
            spec.addedTokens.emplace_back(t, id);
    }
    std::istringstream in(readWholeFile(mergesFile.string()));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("#version", 0) == 0 || line.empty())
            continue;
        spec.merges.push_back(splitMerge(line, mergesFile.string()));
    }
    spec.preSteps.push_back({ByteLevelBpeTokenizer::PreStep::Regex, ByteLevelBpeTokenizer::gpt2Pattern()});
    auto tok = std::make_unique<ByteLevelBpeTokenizer>(std::move(spec));
    if (auto it = ids.find("<|endoftext|>"); it != ids.end())
        tok->bos = tok->eos = it->second;
    applyTokenizerConfig(*tok, vocabFile.parent_path(), ids);
    return tok;
}

std::unique_ptr<Tokenizer> fromVocabTxt(const fs::path &file) {
    std::istringstream in(readWholeFile(file.string()));
    WordPieceTokenizer::Spec spec;
    spec.kind = "WordPiece (vocab.txt)";
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        spec.vocab.push_back(line);
    }
    require(!spec.vocab.empty(), file.string(), "vocab.txt is empty");
    const fs::path cfg = file.parent_path() / "tokenizer_config.json";
    if (fs::exists(cfg)) {
        const json c = readJson(cfg);
        spec.lowercase = c.value("do_lower_case", true);
        spec.stripAccents = c.contains("strip_accents") && c["strip_accents"].is_boolean()
                                ? c["strip_accents"].get<bool>()
                                : spec.lowercase;
    }
    return std::make_unique<WordPieceTokenizer>(std::move(spec));
}

template <typename T>
std::vector<T> jsonArray(const json &meta, const std::string &key) {
    std::vector<T> out;
    auto it = meta.find(key);
    if (it != meta.end() && it->is_array())
        for (const json &v : *it)
            out.push_back(v.get<T>());
    return out;
}

} // namespace


namespace {

std::unique_ptr<Tokenizer> fromGguf(const Model &model) {
    const json &meta = model.metadata;
    const std::string file = model.sourcePath;
    const std::string kind = meta.value("tokenizer.ggml.model", "");
    auto tokens = jsonArray<std::string>(meta, "tokenizer.ggml.tokens");
    require(!tokens.empty(), file, "the GGUF has no tokenizer.ggml.tokens", "pass --tokenizer");
    auto types = jsonArray<int32_t>(meta, "tokenizer.ggml.token_type");
    std::unique_ptr<Tokenizer> tok;
    bool addBosDefault = false;
    if (kind == "gpt2") {
        ByteLevelBpeTokenizer::Spec spec;
        spec.kind = "byte-level BPE (GGUF vocabulary)";
        for (const std::string &m : jsonArray<std::string>(meta, "tokenizer.ggml.merges"))
            spec.merges.push_back(splitMerge(m, file));
        addGgufPreSteps(meta.value("tokenizer.ggml.pre", ""), file, spec.preSteps);
        for (size_t i = 0; i < types.size() && i < tokens.size(); ++i)
            if (types[i] == 3 || types[i] == 4)
                spec.addedTokens.emplace_back(tokens[i], int32_t(i));
        spec.tokens = std::move(tokens);
        tok = std::make_unique<ByteLevelBpeTokenizer>(std::move(spec));
    } else if (kind == "llama") {
        ScoreBpeTokenizer::Spec spec;
        spec.kind = "SentencePiece BPE (GGUF vocabulary)";
        spec.pieces = std::move(tokens);
        spec.scores = jsonArray<float>(meta, "tokenizer.ggml.scores");
        spec.types = types;
        spec.types.resize(spec.pieces.size(), 1);
        spec.addDummyPrefix = meta.value("tokenizer.ggml.add_space_prefix", true);
        spec.unk = meta.value("tokenizer.ggml.unknown_token_id", 0);
        tok = std::make_unique<ScoreBpeTokenizer>(std::move(spec));
        addBosDefault = true;
    } else {
        throw LatheError(file + ": GGUF tokenizer model '" + kind + "' is not supported",
                         "supported: gpt2 (byte-level BPE), llama (SentencePiece); or pass --tokenizer");
    }
    tok->bos = meta.value("tokenizer.ggml.bos_token_id", -1);
    tok->eos = meta.value("tokenizer.ggml.eos_token_id", -1);
    tok->addBos = meta.value("tokenizer.ggml.add_bos_token", addBosDefault);
    tok->addEos = meta.value("tokenizer.ggml.add_eos_token", false);
    return tok;
}

std::unique_ptr<Tokenizer> fromLlama2c(const std::string &path, int64_t vocab) {
    auto tok = std::make_unique<ScoreBpeTokenizer>(ScoreBpeTokenizer::readLlama2c(path, vocab));
    tok->bos = 1; // llama2.c's run.c: BOS 1, EOS 2, BOS prepended when encoding a prompt
    tok->eos = 2;
    tok->addBos = true;
    return tok;
}

} // namespace

static std::unique_ptr<Tokenizer> loadTokenizerFileUnchecked(const std::string &pathArg);

std::unique_ptr<Tokenizer> loadTokenizerFile(const std::string &pathArg) {
    try {
        return loadTokenizerFileUnchecked(pathArg);
    } catch (const json::exception &e) { // a field of an unexpected type, deep inside the file
        throw LatheError(pathArg + ": unexpected tokenizer file content (" + e.what() + ")",
                         "is it a tokenizer file of a model transformers loads?");
    }
}

static std::unique_ptr<Tokenizer> loadTokenizerFileUnchecked(const std::string &pathArg) {
    fs::path path(pathArg);
    require(fs::exists(path), pathArg, "no such file or folder");
    if (fs::is_directory(path)) {
        for (const char *f : {"tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tokenizer.bin"})
            if (fs::exists(path / f))
                return loadTokenizerFile((path / f).string());
        throw LatheError(pathArg + ": no tokenizer in this folder",
                         "expected tokenizer.json, tokenizer.model, vocab.json + merges.txt, vocab.txt or tokenizer.bin");
    }
    const std::string name = path.filename().string();
    const std::string ext = path.extension().string();
    if (name == "vocab.json")
        return fromVocabMerges(path);
    if (ext == ".json")
        return fromTokenizerJson(path);
    if (ext == ".model")
        return std::make_unique<SentencePieceTokenizer>(pathArg);
    if (ext == ".txt")
        return fromVocabTxt(path);
    if (ext == ".bin")
        return fromLlama2c(pathArg, 0);
    if (ext == ".gguf")
        return loadTokenizer(*openModel(pathArg));
    throw LatheError(pathArg + ": not a tokenizer file Lathe knows",
                     "expected tokenizer.json, tokenizer.model, vocab.json, vocab.txt, a llama2.c .bin or a .gguf");
}

std::unique_ptr<Tokenizer> loadTokenizer(const Model &model) {
    const TokenizerSource &src = model.tokenizer;
    auto fileNamed = [&](const std::string &n) -> std::string {
        for (const std::string &f : src.files)
            if (fs::path(f).filename() == n)
                return f;
        return {};
    };
    const std::string kind = src.kind;
    if (kind == "gguf")
        return fromGguf(model);
    if (kind == "llama2c")
        return fromLlama2c(src.files.at(0), model.config.vocabSize);
    if (kind == "hf-json")
        return fromTokenizerJson(fileNamed("tokenizer.json"));
    if (kind == "sentencepiece")
        return std::make_unique<SentencePieceTokenizer>(fileNamed("tokenizer.model"));
    if (kind == "bpe")
        return fromVocabMerges(fileNamed("vocab.json"));
    if (kind == "wordpiece")
        return fromVocabTxt(fileNamed("vocab.txt"));
    throw LatheError(model.sourcePath + ": the model has no tokenizer",
                     "pass --tokenizer with a tokenizer.json, tokenizer.model, vocab.json, vocab.txt or tokenizer.bin");
}

} // namespace lathe
