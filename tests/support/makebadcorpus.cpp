// Generates the bad-input corpus in tests/data/bad/: malformed safetensors, GGUF, llama2.c and HF-folder inputs,
// each with the phrase its reader's error must contain, listed in MANIFEST.json. Usage: lathe-make-bad-corpus DIR
// (the committed corpus was made with this tool; tst_badinput runs every reader over it).

#include "testsupport.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

namespace fs = std::filesystem;
using namespace lathe::test;

namespace {

nlohmann::json g_manifest = nlohmann::json::array();
fs::path g_dir;

void add(const std::string &name, const std::vector<uint8_t> &bytes, const std::string &expect) {
    writeFile((g_dir / name).string(), bytes);
    g_manifest.push_back({{"path", name}, {"expect", expect}});
}

std::vector<uint8_t> withHeader(const std::string &json, const std::vector<uint8_t> &data = {}) {
    Bytes b;
    b.put<uint64_t>(json.size());
    b.v.insert(b.v.end(), json.begin(), json.end());
    b.v.insert(b.v.end(), data.begin(), data.end());
    return b.v;
}

// An HF folder: config text + safetensors tensors (+ extra files).
void addFolder(const std::string &name, const std::string &config, const std::map<std::string, RawTensor> &tensors,
               const std::string &expect, bool loads = false) {
    const fs::path p = g_dir / name;
    fs::create_directories(p);
    writeText((p / "config.json").string(), config);
    if (!tensors.empty())
        writeFile((p / "model.safetensors").string(), safetensorsImage(tensors));
    g_manifest.push_back({{"path", name}, {"expect", expect}, {"loads", loads}});
}

Bytes ggufStart(uint32_t version, uint64_t nTensors, uint64_t nKv) {
    Bytes b;
    b.v.insert(b.v.end(), {'G', 'G', 'U', 'F'});
    b.put<uint32_t>(version).put<uint64_t>(nTensors).put<uint64_t>(nKv);
    return b;
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: lathe-make-bad-corpus DIR\n");
        return 2;
    }
    g_dir = argv[1];
    fs::remove_all(g_dir);
    fs::create_directories(g_dir);
    const std::vector<uint8_t> sixteen(16, 0);

    // --- safetensors
    add("st-truncated-length.safetensors", {1, 2, 3, 4, 5}, "shorter than the 8-byte header length");
    {
        Bytes b;
        b.put<uint64_t>(1000);
        b.v.resize(100, ' ');
        add("st-header-past-end.safetensors", b.v, "runs past the end of the file");
    }
    {
        Bytes b;
        b.put<uint64_t>(std::numeric_limits<uint64_t>::max());
        b.v.resize(64, '{');
        add("st-header-length-max.safetensors", b.v, "runs past the end of the file");
    }
    add("st-invalid-json.safetensors", withHeader("{\"a\": {\"dtype\": \"F32\", "), "not valid JSON");
    add("st-not-object.safetensors", withHeader("[1, 2, 3]"), "not a JSON object");
    add("st-unknown-dtype.safetensors",
        withHeader(R"({"w": {"dtype": "F99", "shape": [2, 2], "data_offsets": [0, 16]}})", sixteen), "unknown dtype 'F99'");
    add("st-offsets-outside.safetensors",
        withHeader(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}})", sixteen),
        "lie outside the data section");
    add("st-overlap.safetensors",
        withHeader(R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},)"
                   R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                   sixteen),
        "overlapping");
    add("st-size-mismatch.safetensors",
        withHeader(R"({"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}})", sixteen),
        "needs 24 bytes but its data_offsets cover 16");
    add("st-absurd-shape.safetensors",
        withHeader(R"({"w": {"dtype": "F32", "shape": [1000000000000, 1000000000000], "data_offsets": [0, 16]}})", sixteen),
        "absurd");
    add("st-negative-dim.safetensors",
        withHeader(R"({"w": {"dtype": "F32", "shape": [-4, 1], "data_offsets": [0, 16]}})", sixteen), "negative");
    add("st-reversed-offsets.safetensors",
        withHeader(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", sixteen), "reversed");

    // --- GGUF
    const std::vector<uint8_t> good = tinyLlamaGguf();
    {
        auto b = good;
        std::memcpy(b.data(), "GGML", 4);
        add("gguf-bad-magic.gguf", b, "bad magic");
    }
    {
        auto b = good;
        b[4] = 99;
        add("gguf-bad-version.gguf", b, "unsupported GGUF version 99");
    }
    add("gguf-truncated-header.gguf", std::vector<uint8_t>(good.begin(), good.begin() + 10), "truncated");
    add("gguf-truncated-data.gguf", std::vector<uint8_t>(good.begin(), good.end() - 100), "outside the data section");
    add("gguf-huge-tensor-count.gguf", ggufStart(3, uint64_t(1) << 60, 0).v, "tensor count");
    {
        Bytes b = ggufStart(3, 0, 1);
        b.put<uint64_t>(uint64_t(1) << 50); // key length
        b.v.resize(b.v.size() + 32, 'k');
        add("gguf-huge-string.gguf", b.v, "truncated");
    }
    {
        Bytes b = ggufStart(3, 0, 1);
        b.str("tokenizer.ggml.tokens").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(uint64_t(1) << 40);
        b.v.resize(b.v.size() + 64, 0);
        add("gguf-huge-array.gguf", b.v, "longer than the file");
    }
    {
        Bytes b = ggufStart(3, 1, 1);
        b.kvString("general.architecture", "llama");
        b.str("w").put<uint32_t>(2).put<uint64_t>(32).put<uint64_t>(4).put<uint32_t>(77).put<uint64_t>(0);
        b.padTo(32);
        b.v.resize(b.v.size() + 512, 0);
        add("gguf-unknown-type.gguf", b.v, "unsupported ggml type 77");
    }
    {
        Bytes b = ggufStart(3, 1, 1);
        b.kvString("general.architecture", "llama");
        b.str("w").put<uint32_t>(7).put<uint64_t>(1).put<uint64_t>(1).put<uint64_t>(1).put<uint64_t>(1)
            .put<uint64_t>(1).put<uint64_t>(1).put<uint64_t>(1).put<uint32_t>(0).put<uint64_t>(0);
        b.padTo(32);
        b.v.resize(b.v.size() + 64, 0);
        add("gguf-too-many-dims.gguf", b.v, "7 dimensions");
    }
    {
        Bytes b = ggufStart(3, 0, 1);
        b.str("general.alignment").put<uint32_t>(4).put<uint32_t>(48);
        add("gguf-bad-alignment.gguf", b.v, "not a power of two");
    }
    {
        Bytes b = ggufStart(3, 1, 1);
        b.kvString("general.architecture", "llama");
        b.str("w").put<uint32_t>(2).put<uint64_t>(1u << 30).put<uint64_t>(1u << 30).put<uint32_t>(0).put<uint64_t>(0);
        b.padTo(32);
        b.v.resize(b.v.size() + 64, 0);
        add("gguf-absurd-tensor.gguf", b.v, "dimensions are absurd");
    }
    {
        Bytes b = ggufStart(3, 0, 1);
        b.kvU32("general.file_type", 1);
        add("gguf-no-architecture.gguf", b.v, "general.architecture");
    }
    add("gguf-unknown-architecture.gguf", tinyLlamaGguf("mamba"), "unsupported GGUF architecture 'mamba'");

    // --- llama2.c
    {
        Bytes b;
        for (int32_t v : {64, 172, 5, 8, 4, 512, 512})
            b.put<int32_t>(v);
        b.v.resize(1000, 0);
        add("l2c-truncated.bin", b.v, "truncated: file is 1000 bytes");
    }
    {
        Bytes b;
        for (int32_t v : {1 << 30, 172, 5, 8, 4, 512, 512})
            b.put<int32_t>(v);
        b.v.resize(256, 0);
        add("l2c-absurd-dims.bin", b.v, "out of range");
    }
    add("l2c-short.bin", std::vector<uint8_t>(10, 1), "shorter than the 28-byte llama2.c header");
    {
        Bytes b;
        for (int32_t v : {64, 172, 5, 7, 4, 512, 512}) // 7 heads do not divide 64
            b.put<int32_t>(v);
        b.v.resize(1000, 0);
        add("l2c-bad-heads.bin", b.v, "not a multiple of the key/value head count");
    }

    // --- Hugging Face folders
    const auto tensors = tinyLlamaTensors();
    addFolder("hf-invalid-config", "{\"model_type\": \"llama\",", tensors, "invalid JSON");
    addFolder("hf-unknown-architecture", tinyLlamaConfig(16, "mamba"), tensors, "unsupported architecture 'mamba'");
    addFolder("hf-shape-mismatch", tinyLlamaConfig(32), tensors, "but the config implies");
    {
        std::string cfg = tinyLlamaConfig(16);
        cfg.replace(cfg.find("\"hidden_size\": 16"), 17, "\"hidden_size\": 1000000000000");
        addFolder("hf-absurd-config", cfg, tensors, "out of range");
    }
    addFolder("hf-no-weights", tinyLlamaConfig(), {}, "no model.safetensors");
    {
        auto t = tensors;
        t.erase("model.layers.1.self_attn.q_proj.weight");
        addFolder("hf-missing-tensor", tinyLlamaConfig(), t, "block 1 has no attn_q weight");
    }
    {
        addFolder("hf-missing-shard", tinyLlamaConfig(), {}, "missing shard 'model-00002-of-00002.safetensors'");
        std::map<std::string, RawTensor> half;
        nlohmann::json wm;
        size_t i = 0;
        for (const auto &[name, t] : tensors) {
            const bool first = i++ < tensors.size() / 2;
            wm[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
            if (first)
                half[name] = t;
        }
        const fs::path p = g_dir / "hf-missing-shard";
        writeFile((p / "model-00001-of-00002.safetensors").string(), safetensorsImage(half));
        writeText((p / "model.safetensors.index.json").string(), nlohmann::json({{"weight_map", wm}}).dump(2));
    }
    {
        auto t = tensors;
        std::vector<float> v(16 * 16, 0.5f);
        v[3] = std::nanf("");
        v[7] = std::numeric_limits<float>::infinity();
        t["model.layers.0.self_attn.q_proj.weight"].bytes = floatBytes(v);
        addFolder("hf-nan-weights", tinyLlamaConfig(), t, "model.layers.0.self_attn.q_proj.weight", true);
    }

    writeText((g_dir / "MANIFEST.json").string(), g_manifest.dump(1) + "\n");
    std::printf("wrote %zu bad inputs to %s\n", g_manifest.size(), g_dir.c_str());
    return 0;
}
