#!/usr/bin/env bash
# Creates the Python environment that generates the reference fixtures (tests/fixtures/make_*_references.py) and
# runs the transformers side of the benchmarks (benchmarks/transformers_reference.py): torch, transformers,
# tokenizers, sentencepiece, gguf, accelerate from PyPI. Outside the source tree, in $LATHE_REFERENCE_ENV
# (default ~/.cache/lathe/venv-hf); about 6 GB (PyPI's torch wheels carry CUDA libraries). Not needed to build or
# test Lathe: the fixtures it makes are committed.
set -euo pipefail
venv="${LATHE_REFERENCE_ENV:-$HOME/.cache/lathe/venv-hf}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q torch transformers tokenizers sentencepiece safetensors numpy gguf accelerate protobuf h5py
"$venv/bin/python" -c "import torch, transformers; print('reference env:', '$venv', 'torch', torch.__version__, 'transformers', transformers.__version__)"
