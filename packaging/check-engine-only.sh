#!/usr/bin/env bash
# The engine-only configuration a lent GPU machine builds (benchmarks/gpu_session.sh: no GUI, no tests, no
# OpenBLAS, no HDF5; the CUDA plugin when the toolkit is here), built and run on the demo model: devices, eval, a
# Wanda compression run killed after some blocks and resumed from its layer checkpoint, and a short PST training
# run. A device's minutes are too few to find out there that this configuration does not build or link.
# Usage: packaging/check-engine-only.sh [BUILD_DIR]   (default build-engine; incremental)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build-engine}"
mkdir -p "$build"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLATHE_BUILD_GUI=OFF -DLATHE_BUILD_TESTS=OFF \
  -DLATHE_USE_OPENBLAS=OFF -DLATHE_USE_HDF5=OFF -DCMAKE_CUDA_ARCHITECTURES=90 > "$build/configure.log" 2>&1 ||
  { tail -30 "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target lathe-cli > "$build/build.log" 2>&1 ||
  { grep -m 20 -B2 -A6 -E 'error|undefined reference' "$build/build.log"; exit 1; }
cli="$build/app/lathe-cli"
demo="$here/resources/demo/stories260K.bin"
text="$here/tests/data/text/tinystories-excerpt.txt"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$cli" devices > /dev/null
"$cli" eval --model "$demo" --text "$text" --seq-len 128 2>/dev/null | grep -q Perplexity
cat > "$work/wanda.json" <<JSON
{"model": "$demo", "method": "wanda", "sparsity": 0.5, "device": "cpu",
 "calibration": {"text": "$text", "samples": 64, "seq_len": 256},
 "output": {"dir": "$work/unused", "checkpoint_seconds": 0}}
JSON
"$cli" compress "$work/wanda.json" --output "$work/ref" > /dev/null 2>&1
for delay in 0.3 0.5 0.8 1.2; do
  rm -rf "$work/k"
  timeout -s KILL "$delay" "$cli" compress "$work/wanda.json" --output "$work/k" > /dev/null 2>&1 || true
  [ -f "$work/k/layer-checkpoint/state.safetensors" ] && break
done
"$cli" compress "$work/wanda.json" --output "$work/k" --resume > /dev/null 2>&1
cmp "$work/k/model/model.safetensors" "$work/ref/model/model.safetensors"
cat > "$work/pst.json" <<JSON
{"model": "$demo", "method": "pst", "pst": {"final_sparsity": 0.5},
 "data": {"train": "$text", "holdout": 0.1, "seq_len": 64, "batch": 2, "eval_windows": 2},
 "steps": 6, "eval_every": 3, "checkpoint_every": 0, "output": {"dir": "$work/train"}}
JSON
"$cli" train "$work/pst.json" > /dev/null 2>&1
test -s "$work/train/model/model.safetensors"
echo "engine-only build ($([ -f "$build/app/liblathe_gpu.so" ] && echo "with" || echo "without") the CUDA plugin): builds, evaluates, resumes a Wanda point from its layer checkpoint, trains PST"
