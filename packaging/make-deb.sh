#!/usr/bin/env bash
# Builds the Debian package: the CPU build (LATHE_WITH_CUDA=OFF: Debian does not package the CUDA libraries a GPU
# build links, so a GPU build's package would not start on a machine without the toolkit) of lathe and lathe-cli
# with the demo model, desktop entry, icon, AppStream metadata and docs. Install it with
#   sudo apt install ./build-deb/lathe_*_amd64.deb       (apt resolves the Qt, OpenBLAS, HDF5, ... dependencies)
# Usage: packaging/make-deb.sh [BUILD_DIR]   (default build-deb; incremental). Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-deb}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLATHE_WITH_CUDA=OFF -DLATHE_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/lathe_*.deb
