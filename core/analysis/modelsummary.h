#pragma once

#include "model/model.h"

#include <nlohmann/json.hpp>

#include <string>

namespace lathe {

// What `lathe-cli inspect` prints: architecture, dimensions, parameter counts by role, group and block, storage
// types, size on disk and the memory needed to hold the weights in fp32 and bf16. Reads no weights.
nlohmann::json summarizeModel(const Model &model);

// Human-readable rendering of summarizeModel()'s object.
std::string formatSummary(const nlohmann::json &summary);

// "1.23 GiB" style sizes for people.
std::string humanBytes(uint64_t bytes);
std::string humanCount(int64_t n); // "134.5M"

} // namespace lathe
