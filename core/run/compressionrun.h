#pragma once

#include "base/progress.h"
#include "run/compressionspec.h"
#include "run/runresult.h"

namespace lathe {

// validateSpec, then every check that needs the model, without writing anything: the targets regex and the
// layers it matches, per-layer ratios against the model's blocks, SliceGPT's support and widths, sequence lengths
// against the model's positions, the tokenizer. `lathe-cli compress --check` runs this.
void checkCompressionSpec(const CompressionSpec &spec);

// Runs the spec: makes every check of checkCompressionSpec and tokenizes the texts before it creates anything, then
// creates the run folder (replacing a previous run there only when the spec allows overwriting; its marker says it
// is a run folder), builds the calibration set, evaluates the dense model,
// then per sparsity value reopens the model, runs the method, evaluates, exports. The output folder receives
// spec.json, run.log (one line per event), progress.jsonl (one JSON line per layer/stage), results.json, and per
// run the exported model (model/ or sparsity-0.25/model) and run.h5 (pruning). Progress reports the fraction
// of the whole job and "run i/n: block l/L: stage". Cancellation: CancelledError after results.json records
// status "cancelled"; exports are atomic so no half-written model is left. With spec.resume, a folder left by an
// interrupted run of the same job (killed, cancelled, failed) is continued: the points results.json records as
// finished, whose exports are in place, and the dense evaluation are kept; the result is that of an
// uninterrupted run (timings aside).
CompressionRunResult runCompression(const CompressionSpec &spec, const ProgressCallback &progress = {});

} // namespace lathe
