#!/usr/bin/env bash
# Regenerates docs/screenshots/ with the GUI offscreen on SmolLM2-135M (packaging/fetch-models.sh fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${LATHE_BUILD_DIR:-build}"
model="${1:-$HOME/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
export QT_QPA_PLATFORM=offscreen
export XDG_CONFIG_HOME="$(mktemp -d)" # fresh settings: default panel values and layout
L=model.layers.10
"$build/app/lathe" "$model" --screenshot docs/screenshots/main-window.png --view 1 \
  --select $L.self_attn.q_proj.weight,$L.self_attn.k_proj.weight,$L.self_attn.v_proj.weight,$L.self_attn.o_proj.weight,$L.mlp.gate_proj.weight,$L.mlp.down_proj.weight
"$build/app/lathe" "$model" --screenshot docs/screenshots/sparsity.png --view 2 --select $L.mlp.down_proj.weight
"$build/app/lathe" "$model" --screenshot docs/screenshots/importance.png --view 3 --select $L.mlp.down_proj.weight
"$build/app/lathe" "$model" --screenshot docs/screenshots/layers.png --view 4 --select $L.mlp.down_proj.weight
# A 1280 x 720 screen: every dock and tab fits (the parameters scroll), three matrices overlaid.
"$build/app/lathe" "$model" --screenshot docs/screenshots/small-screen.png --view 1 --size 1280x720 \
  --select $L.self_attn.q_proj.weight,$L.self_attn.k_proj.weight,$L.mlp.down_proj.weight
data="${LATHE_SHARED_DATA:-../shared/data}"
if [ -f "$data/text/wikitext-2-valid.tokens.txt" ]; then # the sensitivity sweep: ~1.5 minutes on 2 cores
  "$build/app/lathe" "$model" --screenshot docs/screenshots/sensitivity.png --sweep "$data/text/wikitext-2-valid.tokens.txt"
  # A session report (spectra of block 10's down_proj selected, the sweep run) and its first screen.
  report="$(mktemp -d)/report"
  "$build/app/lathe" "$model" --report "$report" --screenshot docs/screenshots/report.png \
    --select $L.mlp.down_proj.weight --sweep "$data/text/wikitext-2-valid.tokens.txt"
  echo "report: $report/report.html, $report/report.pdf"
fi
# The Training tab's live chart: SAT on the demo model (its ladder of omission rates against the loss and the
# held-out perplexity), ~20 s on 2 cores.
text="$data/text/tinyshakespeare.txt"
[ -f "$text" ] || text=tests/data/text/tinystories-excerpt.txt
text="$(realpath "$text")" # the job's paths are read from the job file's folder
job="$(mktemp -d)"
cat > "$job/sat.json" <<JSON
{"model": "$PWD/resources/demo/stories260K.bin",
 "data": {"train": "$text", "holdout": 0.1, "seq_len": 256, "batch": 8, "eval_windows": 16, "seed": 42},
 "optimizer": {"lr": 1e-3, "schedule": "cosine", "warmup": 20},
 "steps": 200, "eval_every": 25, "checkpoint_every": 0, "method": "sat",
 "output": {"dir": "$job/run", "export": false}}
JSON
"$build/app/lathe" resources/demo/stories260K.bin --screenshot docs/screenshots/training.png --train "$job/sat.json"
rm -rf "$job"
# Compare: SmolLM2 against its Wanda 50% export (benchmarks/export_speed.sh makes it), block 10's down_proj.
wanda="$HOME/.cache/lathe/runs/export-speed/wanda/model"
if [ -d "$wanda" ]; then
  "$build/app/lathe" "$model" --screenshot docs/screenshots/compare.png --select $L.mlp.down_proj.weight --compare "$wanda"
fi
rm -rf "$XDG_CONFIG_HOME"
