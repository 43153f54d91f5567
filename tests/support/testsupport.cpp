#include "testsupport.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace fs = std::filesystem;

namespace lathe::test {

std::vector<uint8_t> floatBytes(const std::vector<float> &v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

std::vector<uint8_t> safetensorsImage(const std::map<std::string, RawTensor> &tensors) {
    nlohmann::json h = nlohmann::json::object();
    uint64_t off = 0;
    for (const auto &[name, t] : tensors) {
        h[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
        off += t.bytes.size();
    }
    const std::string hs = h.dump();
    Bytes out;
    out.put<uint64_t>(hs.size());
    out.v.insert(out.v.end(), hs.begin(), hs.end());
    for (const auto &[name, t] : tensors)
        out.v.insert(out.v.end(), t.bytes.begin(), t.bytes.end());
    return out.v;
}

namespace {

RawTensor filled(std::vector<int64_t> shape, float seed) {
    int64_t n = 1;
    for (auto d : shape)
        n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        v[size_t(i)] = 0.01f * float((i * 7 + int64_t(seed * 13)) % 101 - 50);
    return {"F32", std::move(shape), floatBytes(v)};
}

} // namespace

std::map<std::string, RawTensor> tinyLlamaTensors() {
    const int64_t d = 16, f = 24, kv = 8, vocab = 32;
    std::map<std::string, RawTensor> t;
    t["model.embed_tokens.weight"] = filled({vocab, d}, 1);
    t["model.norm.weight"] = filled({d}, 2);
    t["lm_head.weight"] = filled({vocab, d}, 3);
    for (int l = 0; l < 2; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        t[p + "input_layernorm.weight"] = filled({d}, 4.f + l);
        t[p + "post_attention_layernorm.weight"] = filled({d}, 5.f + l);
        t[p + "self_attn.q_proj.weight"] = filled({d, d}, 6.f + l);
        t[p + "self_attn.k_proj.weight"] = filled({kv, d}, 7.f + l);
        t[p + "self_attn.v_proj.weight"] = filled({kv, d}, 8.f + l);
        t[p + "self_attn.o_proj.weight"] = filled({d, d}, 9.f + l);
        t[p + "mlp.gate_proj.weight"] = filled({f, d}, 10.f + l);
        t[p + "mlp.up_proj.weight"] = filled({f, d}, 11.f + l);
        t[p + "mlp.down_proj.weight"] = filled({d, f}, 12.f + l);
    }
    return t;
}

std::string tinyLlamaConfig(int64_t hidden, const std::string &modelType) {
    nlohmann::json c = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", modelType},
                        {"hidden_size", hidden},
                        {"intermediate_size", 24},
                        {"num_hidden_layers", 2},
                        {"num_attention_heads", 4},
                        {"num_key_value_heads", 2},
                        {"vocab_size", 32},
                        {"max_position_embeddings", 64},
                        {"rms_norm_eps", 1e-5},
                        {"tie_word_embeddings", false}};
    return c.dump(2);
}

void writeFile(const std::string &path, const std::vector<uint8_t> &bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write " + path);
}

void writeText(const std::string &path, const std::string &text) {
    writeFile(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<uint8_t> tinyLlamaGguf(const std::string &arch) {
    // GGUF names and dims (fastest first) of the tiny Llama.
    const uint64_t d = 16, f = 24, kv = 8, vocab = 32;
    std::vector<std::pair<std::string, std::vector<uint64_t>>> tensors = {
        {"token_embd.weight", {d, vocab}}, {"output_norm.weight", {d}}, {"output.weight", {d, vocab}}};
    for (int l = 0; l < 2; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        tensors.push_back({p + "attn_norm.weight", {d}});
        tensors.push_back({p + "ffn_norm.weight", {d}});
        tensors.push_back({p + "attn_q.weight", {d, d}});
        tensors.push_back({p + "attn_k.weight", {d, kv}});
        tensors.push_back({p + "attn_v.weight", {d, kv}});
        tensors.push_back({p + "attn_output.weight", {d, d}});
        tensors.push_back({p + "ffn_gate.weight", {d, f}});
        tensors.push_back({p + "ffn_up.weight", {d, f}});
        tensors.push_back({p + "ffn_down.weight", {f, d}});
    }
    Bytes b;
    b.v.insert(b.v.end(), {'G', 'G', 'U', 'F'});
    b.put<uint32_t>(3).put<uint64_t>(tensors.size()).put<uint64_t>(9);
    b.kvString("general.architecture", arch);
    b.kvU32(arch + ".embedding_length", uint32_t(d));
    b.kvU32(arch + ".feed_forward_length", uint32_t(f));
    b.kvU32(arch + ".block_count", 2);
    b.kvU32(arch + ".attention.head_count", 4);
    b.kvU32(arch + ".attention.head_count_kv", 2);
    b.kvU32(arch + ".context_length", 64);
    b.kvU32(arch + ".vocab_size", uint32_t(vocab));
    b.kvU32("general.alignment", 32);
    uint64_t off = 0;
    std::vector<uint64_t> sizes;
    for (const auto &[name, dims] : tensors) {
        b.str(name).put<uint32_t>(uint32_t(dims.size()));
        uint64_t n = 1;
        for (auto x : dims) {
            b.put<uint64_t>(x);
            n *= x;
        }
        b.put<uint32_t>(0).put<uint64_t>(off); // F32
        sizes.push_back(n * 4);
        off += (n * 4 + 31) / 32 * 32;
    }
    b.padTo(32);
    for (size_t i = 0; i < tensors.size(); ++i) {
        std::vector<float> vals(sizes[i] / 4);
        for (size_t j = 0; j < vals.size(); ++j)
            vals[j] = 0.01f * float((j * 3 + i) % 17);
        const auto bytes = floatBytes(vals);
        b.v.insert(b.v.end(), bytes.begin(), bytes.end());
        b.padTo(32);
    }
    return b.v;
}

std::string sourceDir() { return LATHE_SOURCE_DIR; }
std::string fixturesDir() { return sourceDir() + "/tests/fixtures"; }

std::string sharedDataDir() {
    if (const char *e = std::getenv("LATHE_SHARED_DATA"))
        return e;
    return (fs::path(sourceDir()).parent_path() / "shared" / "data").string();
}

std::string dataDir() { return sourceDir() + "/tests/data"; }

std::string modelCacheDir() {
    if (const char *e = std::getenv("LATHE_MODEL_CACHE"))
        return e;
    const char *home = std::getenv("HOME");
    return (fs::path(home ? home : "/tmp") / ".cache" / "lathe" / "models").string();
}

std::string referencePython() {
    fs::path env;
    if (const char *e = std::getenv("LATHE_REFERENCE_ENV"))
        env = e;
    else if (const char *home = std::getenv("HOME"))
        env = fs::path(home) / ".cache" / "lathe" / "venv-hf";
    const fs::path py = env / "bin" / "python";
    std::error_code ec;
    if (env.empty() || !fs::exists(py, ec) || !fs::exists(env / "lib", ec))
        return {};
    return py.string();
}

std::string tempDir(const std::string &tag) {
    // Removed when the test program exits, unless LATHE_KEEP_TEST_FILES is set (to look at them after a failure).
    static std::vector<fs::path> created;
    static const bool registered = [] {
        std::atexit([] {
            if (std::getenv("LATHE_KEEP_TEST_FILES"))
                return;
            std::error_code ec;
            for (const fs::path &p : created)
                fs::remove_all(p, ec);
        });
        return true;
    }();
    (void)registered;
    const fs::path p = fs::temp_directory_path() / ("lathe-test-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    created.push_back(p);
    return p.string();
}

namespace {
// Every test program gets its own XDG cache folder (removed at exit with the other temporary folders): the analysis
// archives it writes (analysis/analysisarchive.h: the per-user cache by default) never reach the user's ~/.cache,
// and no test sees what another program or an earlier run left there.
const bool kPrivateXdgCache = [] {
    ::setenv("XDG_CACHE_HOME", tempDir("xdg-cache").c_str(), 1);
    return true;
}();
} // namespace

} // namespace lathe::test
