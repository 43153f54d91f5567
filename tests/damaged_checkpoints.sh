#!/usr/bin/env bash
# Adversarial check of Wanda's and SliceGPT's layer checkpoints (issue 20 item 9), by hand, not in ctest (a few
# minutes): a run of the demo model is killed after at least two saved blocks, its layer-checkpoint/ is damaged in
# 45 ways (truncated or corrupted files, missing, swapped or replaced ones, a FIFO, a folder, /dev/zero, random
# bytes, a stale temporary), and each is resumed with --resume. Every resume must end with the uninterrupted run's
# exported weights byte for byte (a damaged checkpoint is set aside and the point runs from its first block), or
# refuse with a message; none may crash or hang.
# Usage: tests/damaged_checkpoints.sh BUILD_DIR [wanda|slicegpt]...   (default both)
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cli="$(cd "$1" && pwd)/app/lathe-cli"
shift
methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=(wanda slicegpt)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
text="$here/tests/data/text/tinystories-excerpt.txt"
total_bad=0
for method in "${methods[@]}"; do
  spec="$work/$method.json"
  extra=""
  [ "$method" = slicegpt ] && extra=', "slicegpt": {"random_orientation": true}'
  cat > "$spec" <<JSON
{"model": "$here/resources/demo/stories260K.bin", "method": "$method", "sparsity": 0.5$extra,
 "calibration": {"text": "$text", "samples": 64, "seq_len": 256},
 "evaluation": {"text": "$text", "seq_len": 128, "max_tokens": 2048},
 "device": "cpu", "output": {"dir": "$work/unused", "checkpoint_seconds": 0}}
JSON
  "$cli" compress "$spec" --output "$work/ref-$method" >/dev/null 2>&1 || { echo "$method: the reference run failed"; exit 1; }
  want=$(sha256sum "$work/ref-$method/model/model.safetensors" | cut -d' ' -f1)
  base="$work/run-$method"
  for d in 0.3 0.5 0.7 0.9 1.1 1.3 1.5 1.8 2.1 2.5 3; do
    rm -rf "$base"
    timeout -s KILL "$d" "$cli" compress "$spec" --output "$base" >/dev/null 2>&1
    [ -f "$base/layer-checkpoint/block-0001.safetensors" ] && [ -f "$base/layer-checkpoint/state.safetensors" ] && break
  done
  [ -f "$base/layer-checkpoint/state.safetensors" ] || { echo "$method: no kill left a layer checkpoint"; exit 1; }
  rm -rf "$base.orig"; cp -a "$base" "$base.orig"
  n=0; same=0; refused=0; bad=0
  damage() { # name, then a command run in the checkpoint folder
    local name=$1 rc got; shift
    n=$((n + 1)); rm -rf "$base"; cp -a "$base.orig" "$base"
    ( cd "$base/layer-checkpoint" && eval "$@" ) 2>/dev/null
    timeout 120 "$cli" compress "$spec" --output "$base" --resume > "$work/out.txt" 2>&1; rc=$?
    if [ $rc -eq 124 ]; then bad=$((bad + 1)); echo "$method: HANG: $name"; return; fi
    if [ $rc -gt 128 ]; then bad=$((bad + 1)); echo "$method: CRASH (status $rc): $name"; return; fi
    if [ $rc -ne 0 ]; then refused=$((refused + 1)); echo "$method: refused, $name: $(grep -m1 error "$work/out.txt")"; return; fi
    got=$(sha256sum "$base/model/model.safetensors" | cut -d' ' -f1)
    if [ "$got" = "$want" ]; then same=$((same + 1)); else bad=$((bad + 1)); echo "$method: WRONG RESULT: $name"; fi
  }
  sz=$(stat -c %s "$base.orig/layer-checkpoint/state.safetensors")
  bz=$(stat -c %s "$base.orig/layer-checkpoint/block-0000.safetensors")
  for t in 0 1 7 8 9 64 100 1000 $((sz / 2)) $((sz - 1)); do damage "state truncated to $t" "truncate -s $t state.safetensors"; done
  for t in 0 50 200 $((bz - 1)); do damage "block 0 truncated to $t" "truncate -s $t block-0000.safetensors"; done
  for off in 0 3 8 9 12 20 40 60 80 120 160 200 300 400; do
    damage "state byte $off set to 0xff" "printf '\\xff' | dd of=state.safetensors bs=1 seek=$off conv=notrunc"
  done
  for off in 8 30 60 90 120 200; do
    damage "block 1 byte $off set to 0" "printf '\\x00' | dd of=block-0001.safetensors bs=1 seek=$off conv=notrunc"
  done
  damage "block 0 missing" "rm block-0000.safetensors"
  damage "state missing" "rm state.safetensors"
  damage "state is a folder" "rm state.safetensors; mkdir state.safetensors"
  damage "state is a FIFO" "rm state.safetensors; mkfifo state.safetensors"
  damage "block 0 is a FIFO" "rm block-0000.safetensors; mkfifo block-0000.safetensors"
  damage "state links to /dev/zero" "rm state.safetensors; ln -s /dev/zero state.safetensors"
  damage "layer-checkpoint is a file" "cd ..; rm -rf layer-checkpoint; echo x > layer-checkpoint"
  damage "blocks 0 and 1 swapped" "mv block-0000.safetensors x; mv block-0001.safetensors block-0000.safetensors; mv x block-0001.safetensors"
  damage "state is random bytes" "head -c $sz /dev/urandom > state.safetensors"
  damage "a stale temporary beside it" "cp state.safetensors .state.safetensors.lathe-tmp-999999-abc"
  damage "the folder emptied" "rm -f ./*"
  echo "$method: $n damaged checkpoints: $same resumed to the uninterrupted run's weights, $refused refused, $bad crashed, hung or wrong"
  total_bad=$((total_bad + bad))
done
[ $total_bad -eq 0 ]
