#!/usr/bin/env bash
# What each Hugging Face export format buys when a user runs it with transformers (issue 22 item 4), measured side
# by side in one run on this machine: SmolLM2-135M dense, Wanda 50% (zeros in place), SliceGPT 25% (sliced folder
# with its modelling code) and LoSparse (rank ratio 0.1 + 10% of S: the merged folder and the compact folder with
# its modelling code). For each folder: its size on disk, and transformers' greedy generation with the KV cache
# (benchmarks/transformers_reference.py generate: 64 random prompt tokens, 64 new tokens, best of 3, THREADS torch
# threads): prefill and decode tokens/s, parameter bytes and peak RSS of the process. The GGUF formats in llama.cpp:
# benchmarks/gguf_llamacpp.sh. Every number goes to docs/results.md with this command.
# Usage: benchmarks/export_speed.sh [BUILD_DIR] [OUT_DIR]
# Environment: LATHE_REFERENCE_ENV (the Python with torch and transformers; packaging/make-reference-env.sh),
# THREADS (2), REUSE=1 (keep the folders of an earlier run and only measure; keep the CPU quiet meanwhile).
# The compressions take ~10 minutes on 2 cores (Wanda and SliceGPT on 16 x 256 calibration tokens, LoSparse's
# SVD initialisation and 12 training steps); the measurements ~5 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
out="${2:-$HOME/.cache/lathe/runs/export-speed}"
model="${LATHE_MODEL_CACHE:-$HOME/.cache/lathe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
data="${LATHE_SHARED_DATA:-$here/../shared/data}"
python="${LATHE_REFERENCE_ENV:-$HOME/.cache/lathe/venv-hf}/bin/python"
cli="$build/app/lathe-cli"
threads="${THREADS:-2}"
mkdir -p "$out"
calib="\"calibration\": {\"text\": \"$data/text/wikitext-2-valid.tokens.txt\", \"samples\": 16, \"seq_len\": 256, \"seed\": 42}"

# need PATH: true when PATH must be (re)made: always, or with REUSE=1 only when it is missing.
need() { [ "${REUSE:-0}" != 1 ] || [ ! -e "$1" ]; }
if need "$out/dense"; then
  "$cli" export "$model" "$out/dense" --dtype f32 --overwrite > /dev/null 2>&1
fi
for m in "wanda 0.5" "slicegpt 0.25"; do
  set -- $m
  need "$out/$1/model" || continue
  cat > "$out/$1.json" <<JSON
{"model": "$model", "method": "$1", "sparsity": $2, $calib,
 "output": {"dir": "$out/$1", "export": true, "dtype": "f32", "overwrite": true}}
JSON
  "$cli" compress "$out/$1.json" --json > "$out/$1.result.json" 2> "$out/$1.stderr"
done
# LoSparse's schedule squeezed into 12 steps (masking every step, the final budget from step 6): the shapes and the
# kept rows are those of a full run at this budget; the weights are barely trained (speed does not depend on them).
if need "$out/losparse/model-compact"; then
  cat > "$out/losparse.json" <<JSON
{"model": "$model", "data": {"train": "$data/text/wikitext-2-valid.tokens.txt", "holdout": 0.01, "seq_len": 256,
 "batch": 1, "eval_windows": 1, "seed": 1}, "optimizer": {"lr": 1e-4, "schedule": "constant"},
 "steps": 12, "eval_every": 0, "checkpoint_every": 1000, "method": "losparse",
 "losparse": {"rank_ratio": 0.1, "final_keep": 0.1, "delta_t": 1, "initial_warmup": 0, "final_warmup": 0.5},
 "output": {"dir": "$out/losparse", "export": true, "dtype": "f32", "overwrite": true}}
JSON
  "$cli" train "$out/losparse.json" --json > "$out/losparse.result.json" 2> "$out/losparse.stderr"
fi

printf '%-22s %9s %11s %11s %10s %10s\n' folder "disk MiB" "prefill t/s" "decode t/s" "params MiB" "peak RSS"
rows=""
for f in dense wanda/model slicegpt/model losparse/model losparse/model-compact; do
  dir="$out/$f"
  disk=$(du -sm "$dir" | cut -f1)
  j=$("$python" "$here/benchmarks/transformers_reference.py" generate --model "$dir" --threads "$threads" --repeat 3 2>/dev/null | tail -n 1)
  read -r pf dc wm rss < <(echo "$j" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.1f %.1f %.1f %.0f" % (r["prefill_tokens_per_s"], r["decode_tokens_per_s"], r["weights_mb"], r["peak_rss_mb"]))')
  printf '%-22s %9s %11s %11s %10s %10s\n' "$f" "$disk" "$pf" "$dc" "$wm" "$rss"
  rows="$rows${rows:+,}{\"folder\":\"$f\",\"disk_mib\":$disk,\"prefill_tps\":$pf,\"decode_tps\":$dc,\"params_mib\":$wm,\"peak_rss_mib\":$rss}"
done
tf=$("$python" -c 'import transformers, torch; print(transformers.__version__, torch.__version__)')
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "{\"bench\":\"export-speed\",\"model\":\"SmolLM2-135M-Instruct\",\"threads\":$threads,\"transformers_torch\":\"$tf\",\"cpu\":\"$cpu\",\"rows\":[$rows]}"
