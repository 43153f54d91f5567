#include "run/runresult.h"

#include "base/error.h"

using nlohmann::json;

namespace lathe {

json CompressionRunResult::toJson() const {
    json runsJ = json::array();
    for (const CompressionRunRecord &r : runs)
        runsJ.push_back({{"sparsity", r.sparsity}, {"perplexity", r.perplexity}, {"params", r.params},
                         {"bytes_dense", r.bytesDense}, {"bytes_compact", r.bytesCompact},
                         {"method_seconds", r.methodSeconds}, {"eval_seconds", r.evalSeconds},
                         {"export_dir", r.exportDir}, {"gguf_file", r.ggufFile}, {"bytes_gguf", r.bytesGguf},
                         {"layers", r.layers}, {"notes", r.notes}});
    return {{"status", status},
            {"error", error},
            {"dense", {{"perplexity", densePerplexity}, {"params", denseParams}, {"bytes", denseBytes}}},
            {"evaluation", {{"tokens", evalTokens}, {"windows", evalWindows}}},
            {"calibration", {{"sequences", calibrationWindows.size()}, {"windows", calibrationWindows},
                             {"note", calibrationNote}, {"signal_bytes", calibrationBytes}}},
            {"runs", runsJ},
            {"seconds", seconds}};
}

CompressionRunResult CompressionRunResult::fromJson(const json &j) {
    CompressionRunResult r;
    try {
        r.status = j.at("status").get<std::string>();
        r.error = j.value("error", "");
        const json &d = j.at("dense");
        r.densePerplexity = d.value("perplexity", 0.0);
        r.denseParams = d.value("params", int64_t(0));
        r.denseBytes = d.value("bytes", uint64_t(0));
        const json &e = j.at("evaluation");
        r.evalTokens = e.value("tokens", int64_t(0));
        r.evalWindows = e.value("windows", int64_t(0));
        const json &c = j.at("calibration");
        r.calibrationNote = c.value("note", "");
        r.calibrationWindows = c.value("windows", std::vector<int64_t>{});
        r.calibrationBytes = c.value("signal_bytes", uint64_t(0));
        for (const json &x : j.at("runs")) {
            CompressionRunRecord rec;
            rec.sparsity = x.at("sparsity").get<double>();
            rec.perplexity = x.value("perplexity", 0.0);
            rec.params = x.value("params", int64_t(0));
            rec.bytesDense = x.value("bytes_dense", uint64_t(0));
            rec.bytesCompact = x.value("bytes_compact", uint64_t(0));
            rec.methodSeconds = x.value("method_seconds", 0.0);
            rec.evalSeconds = x.value("eval_seconds", 0.0);
            rec.exportDir = x.value("export_dir", "");
            rec.ggufFile = x.value("gguf_file", "");
            rec.bytesGguf = x.value("bytes_gguf", uint64_t(0));
            rec.layers = x.value("layers", json());
            rec.notes = x.value("notes", json::array());
            r.runs.push_back(std::move(rec));
        }
        r.seconds = j.value("seconds", 0.0);
    } catch (const json::exception &e) {
        throw LatheError(std::string("results.json: ") + e.what(), "the file is damaged");
    }
    return r;
}

} // namespace lathe
