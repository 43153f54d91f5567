#!/usr/bin/env bash
# CPU training-step benchmark (issue 17's speed targets): `lathe-cli bench train` and PyTorch (transformers, fp32,
# AdamW, the same model, sequence length, batch and threads) alternating, ROUNDS times, on an otherwise idle
# machine. The machines are shared and noisy, so each Lathe run is compared with the PyTorch run next to it.
# Prints every JSON line, then a table and one JSON summary line: tokens/s of both, Lathe's fraction of the sgemm
# peak measured in its own run, peak memory of both, and the range of the ratios.
#   benchmarks/bench_train.sh [MODEL] [SEQ_LEN] [BATCH] [THREADS]
# Defaults: SmolLM2-135M-Instruct (Q4_1 GGUF from packaging/fetch-models.sh), 512, 1, all cores; ROUNDS=2,
# REPEAT=5 (timed steps per run, the median kept). The PyTorch side needs packaging/make-reference-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$HOME/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
seq="${2:-512}"
batch="${3:-1}"
threads="${4:-$(nproc)}"
rounds="${ROUNDS:-2}"
repeat="${REPEAT:-5}"
cli="${LATHE_BUILD_DIR:-build}/app/lathe-cli"
py="${LATHE_REFERENCE_ENV:-$HOME/.cache/lathe/venv-hf}/bin/python"
if [ ! -x "$py" ]; then
  echo "transformers environment not found ($py): run packaging/make-reference-env.sh first" >&2
  exit 1
fi
lines=()
for ((r = 1; r <= rounds; r++)); do
  l="$("$cli" bench train --model "$model" --seq-len "$seq" --batch "$batch" --threads "$threads" --repeat "$repeat" --json | tail -1)"
  echo "$l"
  t="$("$py" benchmarks/transformers_reference.py train --model "$model" --seq-len "$seq" --batch "$batch" \
        --threads "$threads" --repeat "$repeat" 2>/dev/null | tail -1)"
  echo "$t"
  lines+=("$l" "$t")
done
python3 - "${lines[@]}" <<'PY'
import json, sys
runs = [json.loads(a) for a in sys.argv[1:]]
lathe, torch = runs[0::2], runs[1::2]
print(f"{'round':>5} {'lathe tokens/s':>15} {'of sgemm peak':>14} {'PyTorch tokens/s':>17} {'ratio':>6} "
      f"{'lathe MB':>9} {'PyTorch MB':>11}")
ratios = []
for i, (l, t) in enumerate(zip(lathe, torch), 1):
    ratios.append(l["tokens_per_s"] / t["tokens_per_s"])
    print(f"{i:>5} {l['tokens_per_s']:>15.1f} {l['fraction_of_peak']:>14.3f} {t['tokens_per_s']:>17.1f} "
          f"{ratios[-1]:>6.2f} {l['peak_rss_mb']:>9.0f} {t['peak_rss_mb']:>11.0f}")
print(json.dumps({"bench": "train-vs-pytorch", "model": lathe[0]["model"], "seq_len": lathe[0]["seq_len"],
                  "batch": lathe[0]["batch"], "threads": lathe[0]["threads"], "blas": lathe[0]["blas"],
                  "lathe_tokens_per_s": [l["tokens_per_s"] for l in lathe],
                  "fraction_of_peak": [l["fraction_of_peak"] for l in lathe],
                  "pytorch_tokens_per_s": [t["tokens_per_s"] for t in torch],
                  "pytorch": torch[0]["tool"] + ", torch " + torch[0]["torch"],
                  "ratio_min": min(ratios), "ratio_max": max(ratios),
                  "lathe_peak_rss_mb": max(l["peak_rss_mb"] for l in lathe),
                  "pytorch_peak_rss_mb": max(t["peak_rss_mb"] for t in torch)}))
PY
