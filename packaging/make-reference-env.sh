#!/usr/bin/env bash
# Creates the Python environment that generates the reference fixtures (tests/fixtures/make_*_references.py) and
# runs the transformers side of the benchmarks (benchmarks/transformers_reference.py): torch, transformers,
# tokenizers, sentencepiece, gguf, accelerate from PyPI. Outside the source tree, in $LATHE_REFERENCE_ENV
# (default ~/.cache/lathe/venv-hf); about 6 GB (PyPI's torch wheels carry CUDA libraries). Not needed to build or
# test Lathe: the fixtures it makes are committed.
#
# Usage: packaging/make-reference-env.sh [--versions "4.40.2 4.46.3 4.57.1"]
# --versions also installs each listed transformers version (with the tokenizers and hub it needs) into its own
# folder, $LATHE_REFERENCE_ENV-transformers/VERSION, over the environment's torch (pip --target: a few hundred MB
# each instead of another torch). The exports' remote-code checks (tst_methods slicedExportLoadsInTransformers,
# tst_finetune loSparseCompactExportLoadsInTransformers) run in the environment's own version and, with
# LATHE_TRANSFORMERS_OVERLAYS set to the colon-separated folders (printed at the end), in each of these.
set -euo pipefail
venv="${LATHE_REFERENCE_ENV:-$HOME/.cache/lathe/venv-hf}"
versions=""
if [ "${1:-}" = "--versions" ]; then
  versions="${2:?--versions needs a list such as \"4.40.2 4.46.3\"}"
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q torch transformers tokenizers sentencepiece safetensors numpy gguf accelerate protobuf h5py
"$venv/bin/python" -c "import torch, transformers; print('reference env:', '$venv', 'torch', torch.__version__, 'transformers', transformers.__version__)"
overlays=""
for v in $versions; do
  dir="$venv-transformers/$v"
  if [ ! -d "$dir/transformers" ]; then
    "$venv/bin/pip" install -q --target "$dir" "transformers==$v"
  fi
  PYTHONPATH="$dir" "$venv/bin/python" -c "import transformers; print('  overlay:', '$dir', 'transformers', transformers.__version__)"
  overlays="${overlays:+$overlays:}$dir"
done
if [ -n "$overlays" ]; then
  echo "export LATHE_TRANSFORMERS_OVERLAYS=$overlays"
fi
