#!/usr/bin/env bash
# What the GGUF exports buy in llama.cpp (issue 22 items 2 and 4), measured side by side in one run on this machine:
# SmolLM2-135M dense and Wanda 50% (unstructured), each written by `lathe-cli export` / output.gguf as F16 and
# Q8_0, then for every file:
#   - llama.cpp's own perplexity (llama-perplexity: windows of CTX tokens, only the second half of each window
#     scored, CHUNKS windows of WikiText-2 raw test),
#   - Lathe's perplexity of the same file (lathe-cli eval: every token of non-overlapping CTX windows, the first
#     CHUNKS x CTX tokens), so that the two runtimes are compared on the same weights,
#   - llama-bench prompt processing (pp64) and generation (tg32) tokens/s at THREADS threads, and the file size.
# llama.cpp is not a dependency of Lathe: give its binaries' folder (llama-perplexity, llama-bench) in LLAMA_CPP_BIN,
# e.g. a CPU build of the llama.cpp that PyPI's llama-cpp-python sdist vendors:
#   pip download --no-deps --no-binary :all: llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
#   cmake -S llama_cpp_python-*/vendor/llama.cpp -B lcp -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
#   cmake --build lcp -j --target llama-perplexity llama-bench llama-completion
# (GGML_NATIVE=ON crashed on quantized types on a VM whose CPU reports AMX.)
# Usage: LLAMA_CPP_BIN=DIR benchmarks/gguf_llamacpp.sh [BUILD_DIR] [OUT_DIR]
# Environment: CTX (256), CHUNKS (16), THREADS (2), SAMPLES (Wanda calibration windows of 256 tokens, 32),
# REUSE=1 (keep the four .gguf files of an earlier run in OUT_DIR and only measure; keep the CPU quiet meanwhile).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
out="${2:-$HOME/.cache/lathe/runs/gguf-llamacpp}"
bin="${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to the folder holding llama-perplexity and llama-bench}"
model="${LATHE_MODEL_CACHE:-$HOME/.cache/lathe/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
data="${LATHE_SHARED_DATA:-$here/../shared/data}"
text="$data/text/wikitext-2-raw-test.txt"
cli="$build/app/lathe-cli"
ctx="${CTX:-256}"
chunks="${CHUNKS:-16}"
threads="${THREADS:-2}"
samples="${SAMPLES:-32}"
mkdir -p "$out"

# Dense: the source as F16 and Q8_0. Wanda 50%: a compression run writing the F16 GGUF itself (output.gguf), and
# its Hugging Face folder exported again as Q8_0.
if [ "${REUSE:-0}" != 1 ] || [ ! -f "$out/wanda50-q8_0.gguf" ]; then
  "$cli" export "$model" "$out/dense-f16.gguf" --dtype f16 --overwrite > /dev/null 2>&1
  "$cli" export "$model" "$out/dense-q8_0.gguf" --dtype q8_0 --overwrite > /dev/null 2>&1
  cat > "$out/wanda-50.json" <<JSON
{"model": "$model", "method": "wanda", "sparsity": 0.5,
 "calibration": {"text": "$data/text/wikitext-2-valid.tokens.txt", "samples": $samples, "seq_len": $ctx, "seed": 42},
 "output": {"dir": "$out/wanda-50", "export": true, "gguf": "f16", "overwrite": true}}
JSON
  "$cli" compress "$out/wanda-50.json" --json > "$out/wanda-50.result.json" 2> "$out/wanda-50.stderr"
  cp "$out/wanda-50/model.gguf" "$out/wanda50-f16.gguf"
  "$cli" export "$out/wanda-50/model" "$out/wanda50-q8_0.gguf" --dtype q8_0 --overwrite > /dev/null 2>&1
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf '%-16s %10s %12s %12s %10s %10s\n' file MiB "llama.cpp PPL" "Lathe PPL" "pp64 t/s" "tg32 t/s"
rows=""
for f in dense-f16 dense-q8_0 wanda50-f16 wanda50-q8_0; do
  g="$out/$f.gguf"
  mib=$(( $(stat -c %s "$g") / 1048576 ))
  ppl_cpp=$("$bin/llama-perplexity" -m "$g" -f "$text" -c "$ctx" --chunks "$chunks" -t "$threads" 2>&1 |
            sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  ppl_lathe=$("$cli" eval --model "$g" --text "$text" --seq-len "$ctx" --max-tokens $((ctx * chunks)) --json 2>/dev/null |
              python3 -c 'import json,sys; print("%.3f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["perplexity"])')
  bench=$("$bin/llama-bench" -m "$g" -p 64 -n 32 -t "$threads" -r 3 -o json 2>/dev/null)
  pp=$(echo "$bench" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.1f" % [x for x in r if x["n_prompt"]>0][0]["avg_ts"])')
  tg=$(echo "$bench" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.1f" % [x for x in r if x["n_gen"]>0][0]["avg_ts"])')
  printf '%-16s %10s %12s %12s %10s %10s\n' "$f" "$mib" "$ppl_cpp" "$ppl_lathe" "$pp" "$tg"
  rows="$rows${rows:+,}{\"file\":\"$f\",\"mib\":$mib,\"ppl_llamacpp\":$ppl_cpp,\"ppl_lathe\":$ppl_lathe,\"pp64_tps\":$pp,\"tg32_tps\":$tg}"
done
echo "{\"bench\":\"gguf-llamacpp\",\"model\":\"SmolLM2-135M-Instruct\",\"ctx\":$ctx,\"chunks\":$chunks,\"threads\":$threads,\"cpu\":\"$cpu\",\"rows\":[$rows]}"
