#!/usr/bin/env bash
# The two Quick start commands of the README:
#   packaging/quickstart.sh demo   install dependencies, build, open the demo model (GUI with a display,
#                                  otherwise lathe-cli prints its summary)
#   packaging/quickstart.sh test   install dependencies, build, run the whole test suite with ctest
# Build folder: $LATHE_BUILD_DIR (default build/). Incremental: re-running only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-demo}"
build="${LATHE_BUILD_DIR:-build}"
jobs="$(nproc 2>/dev/null || echo 2)"

bash packaging/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs"

demo=resources/demo/stories260K.bin
case "$mode" in
  demo)
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      exec "$build/app/lathe" "$demo"
    fi
    echo "No display: running lathe-cli on the demo model (summary, then a greedy continuation)."
    "$build/app/lathe-cli" inspect "$demo" --scan
    exec "$build/app/lathe-cli" generate --model "$demo" --prompt "Once upon a time" --max-new 40
    ;;
  test)
    bash packaging/fetch-models.sh
    exec ctest --test-dir "$build" --output-on-failure -j "$jobs"
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
