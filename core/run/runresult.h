#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lathe {

// What a compression run reports: results.json of its run folder, the CLI's --json and the GUI's Results view.

struct CompressionRunRecord {
    double sparsity = 0;
    double perplexity = 0;      // 0 when not evaluated
    int64_t params = 0;         // parameters after (pruning: non-zero; slicing: every matrix incl. shortcuts)
    uint64_t bytesDense = 0;    // exported HF folder's weights (dtype of the export)
    uint64_t bytesCompact = 0;  // compact form (pruning: CSR / N:M in run.h5; slicing: = bytesDense)
    double methodSeconds = 0, evalSeconds = 0;
    std::string exportDir;      // empty when not exported
    std::string ggufFile;       // the GGUF written beside it (output.gguf), empty when none
    uint64_t bytesGguf = 0;     // its size
    nlohmann::json layers;      // per-layer report of the method
    nlohmann::json notes = nlohmann::json::array();
};

struct CompressionRunResult {
    std::string status = "running"; // "running" while the job runs, then "done", "cancelled" or "failed"
    std::string error;
    double densePerplexity = 0;
    int64_t denseParams = 0;
    uint64_t denseBytes = 0;
    int64_t evalTokens = 0, evalWindows = 0;
    std::string calibrationNote;
    std::vector<int64_t> calibrationWindows; // one per calibration sequence: the windows picked, for reproducing the run
    uint64_t calibrationBytes = 0; // host memory of the signals held by the method, announced before the run
    std::vector<CompressionRunRecord> runs;
    double seconds = 0;
    nlohmann::json toJson() const;
    // Reads what toJson wrote (a run folder's results.json); LatheError when a field has the wrong type.
    static CompressionRunResult fromJson(const nlohmann::json &j);
};

} // namespace lathe
