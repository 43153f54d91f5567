#!/usr/bin/env bash
# The sanitizer and fuzzing gate (run by .ci/run after the test suite; also on its own):
#   1. core, lathe-cli and every test built with AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -O1, no GUI,
#      no CUDA) in build-san/, and the whole ctest suite run under them (leak detection on; any report fails);
#   2. the libFuzzer targets (tests/fuzz) built with clang in build-fuzz/, each run from its committed seed corpus
#      for $LATHE_FUZZ_RUNS inputs (default 20000; about half a minute each on 2 cores) with a fixed seed, so that
#      a run is reproducible; LATHE_FUZZ_RUNS=-1 with LATHE_FUZZ_SECONDS=N fuzzes by time instead.
# Both folders are incremental. Needs the packages of packaging/install-deps.sh, and clang for step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc 2>/dev/null || echo 2)"
runs="${LATHE_FUZZ_RUNS:-20000}"
seconds="${LATHE_FUZZ_SECONDS:-0}"

bash packaging/install-deps.sh
if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-dev 2>/dev/null | grep -q "ok installed"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-dev >/dev/null
fi

echo "== sanitizers: ASan + UBSan build and test suite"
cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
  "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1" -DLATHE_SANITIZE=address,undefined -DLATHE_WITH_CUDA=OFF -DLATHE_BUILD_GUI=OFF >/dev/null
cmake --build build-san -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-san --output-on-failure -j "$jobs"

echo "== fuzzing: $runs runs per target (seed 1) from the seed corpora"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATHE_BUILD_FUZZERS=ON \
  -DLATHE_BUILD_GUI=OFF -DLATHE_BUILD_TESTS=OFF -DLATHE_WITH_CUDA=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzz_safetensors fuzz_gguf fuzz_jobspec fuzz_config fuzz_tokenizer_json
# Runs one target on a scratch corpus seeded with the given files and folders' files (new inputs stay out of the
# repository); prints its summary, and the end of its log when it found something.
fuzz() {
  local name="$1"; shift
  local corpus log rc=0
  corpus="$(mktemp -d)"; log="$(mktemp)"
  local i=0
  for seed in "$@"; do
    while IFS= read -r -d '' f; do
      cp "$f" "$corpus/seed-$i"; i=$((i + 1))
    done < <(find "$seed" -type f -size -4M -print0)
  done
  echo "-- $name ($i seeds)"
  (cd "$corpus" && "$root/build-fuzz/tests/fuzz/$name" -runs="$runs" -seed=1 -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
     -print_final_stats=1 "$corpus" >"$log" 2>&1) || rc=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: Done)" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log"
    echo "check-sanitizers: $name failed (rc $rc)"
  fi
  rm -rf "$corpus" "$log"
  return "$rc"
}
root="$PWD"
fuzz fuzz_safetensors tests/data/bad tests/fixtures/hf-llama
fuzz fuzz_gguf tests/data/bad tests/fixtures/tiny-llama.gguf
fuzz fuzz_jobspec tests/fuzz/corpus/jobspec
fuzz fuzz_config tests/fuzz/corpus/config
fuzz fuzz_tokenizer_json tests/fuzz/corpus/tokenizer
echo "check-sanitizers: done"
