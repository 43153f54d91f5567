#pragma once

// Helpers shared by the test executables and the bad-input corpus generator: minimal, independent writers of
// safetensors and GGUF bytes (so tests do not depend on the code they check), and the paths of test data.

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace lathe::test {

struct RawTensor {
    std::string dtype = "F32";
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

std::vector<uint8_t> floatBytes(const std::vector<float> &v);

// A safetensors file image: u64 header length, JSON header, data. Tensors are laid out in map order.
std::vector<uint8_t> safetensorsImage(const std::map<std::string, RawTensor> &tensors);

// The tensors of a tiny valid Llama (hidden 16, 2 blocks, 4 heads, 2 kv heads, vocab 32, intermediate 24) with
// deterministic values, and its config.json text.
std::map<std::string, RawTensor> tinyLlamaTensors();
std::string tinyLlamaConfig(int64_t hidden = 16, const std::string &modelType = "llama");

void writeFile(const std::string &path, const std::vector<uint8_t> &bytes);
void writeText(const std::string &path, const std::string &text);

// Appends little-endian values to a byte image (GGUF building).
struct Bytes {
    std::vector<uint8_t> v;
    template <typename T> Bytes &put(T x) {
        const size_t at = v.size();
        v.resize(at + sizeof(T));
        std::memcpy(v.data() + at, &x, sizeof(T));
        return *this;
    }
    Bytes &str(const std::string &s) {
        put<uint64_t>(s.size());
        v.insert(v.end(), s.begin(), s.end());
        return *this;
    }
    Bytes &kvString(const std::string &key, const std::string &val) {
        str(key).put<uint32_t>(8).str(val);
        return *this;
    }
    Bytes &kvU32(const std::string &key, uint32_t val) {
        str(key).put<uint32_t>(4).put<uint32_t>(val);
        return *this;
    }
    void padTo(size_t alignment) {
        while (v.size() % alignment)
            v.push_back(0);
    }
};

// A valid GGUF v3 image of a tiny Llama (F32 tensors) with metadata; building blocks for corrupt variants.
std::vector<uint8_t> tinyLlamaGguf(const std::string &arch = "llama");

// Source tree paths (compiled in) and shared data / model cache (environment overrides).
std::string sourceDir();
std::string fixturesDir();
std::string sharedDataDir();  // $LATHE_SHARED_DATA or <source>/../shared/data (benchmark data; tests use dataDir)
std::string dataDir();        // <source>/tests/data: the small real files the tests need, bundled (README there)
std::string modelCacheDir();  // $LATHE_MODEL_CACHE or ~/.cache/lathe/models
std::string tempDir(const std::string &tag);
// The Python of the reference environment (packaging/make-reference-env.sh: torch + transformers), or "" when it is
// not installed ($LATHE_REFERENCE_ENV or ~/.cache/lathe/venv-hf).
std::string referencePython(); // fresh empty folder under the system temp dir

} // namespace lathe::test
