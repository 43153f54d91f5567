#!/usr/bin/env bash
# CPU forward-pass benchmark: Lathe and Hugging Face transformers on the same model, sequence length and thread
# count, one after the other on an otherwise idle machine. Prints Lathe's table, both JSON lines, and the ratio.
#   benchmarks/bench_forward.sh [MODEL] [SEQ_LEN] [THREADS]
# Defaults: SmolLM2-135M-Instruct (Q4_1 GGUF from packaging/fetch-models.sh), 512, all cores. The transformers side
# needs packaging/make-reference-env.sh; it is skipped when that environment is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-$HOME/.cache/lathe/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
seq="${2:-512}"
threads="${3:-$(nproc)}"
cli="${LATHE_BUILD_DIR:-build}/app/lathe-cli"
py="${LATHE_REFERENCE_ENV:-$HOME/.cache/lathe/venv-hf}/bin/python"

lathe_json="$("$cli" bench forward --model "$model" --seq-len "$seq" --threads "$threads" --repeat 5 | tee /dev/stderr | tail -1)"
if [ -x "$py" ]; then
  tf_json="$("$py" benchmarks/transformers_reference.py speed --model "$model" --seq-len "$seq" --threads "$threads" --repeat 5 2>/dev/null | tail -1)"
  echo "$tf_json"
  python3 - "$lathe_json" "$tf_json" <<'PY'
import json, sys
l, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"lathe {l['tokens_per_s']:.1f} tokens/s ({100*l['fraction_of_peak']:.1f}% of the sgemm peak), "
      f"transformers {t['tokens_per_s']:.1f} tokens/s: lathe is {l['tokens_per_s']/t['tokens_per_s']:.2f}x")
PY
else
  echo "transformers environment not found ($py): run packaging/make-reference-env.sh for the comparison"
fi
