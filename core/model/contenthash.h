#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lathe {

class Model;

// A fast 64-bit non-cryptographic hash (four multiply-rotate lanes over 32-byte stripes, in the style of xxHash64)
// for recognising content, not for security.
uint64_t hashBytes(const void *data, size_t size, uint64_t seed = 0);

// The identity of a model's weights: every tensor's name, storage type, shape and bytes, in table order, hashed
// tensor by tensor in parallel and combined. Renaming or moving the files keeps it; changing one weight changes it.
// 16 lower-case hex digits.
std::string modelContentHash(const Model &model);

} // namespace lathe
