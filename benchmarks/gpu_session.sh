#!/usr/bin/env bash
# Everything a session with a lent GPU machine should run, in one device call (its device time is short):
# build the engine (core + gpu + lathe-cli, no Qt/HDF5/OpenBLAS) for sm_90 unless a build-gpu/ made here runs there
# (session 23 built it on the Debian 12 machine and carried build-gpu/app/lathe-cli and liblathe_gpu.so), then
#   check     lathe-cli check-gpu: every GPU path against its CPU reference (gpu/gpuselfcheck.h, tolerances there)
#   forward   bench forward on a random bf16 Llama-2-7B at 2048 tokens (issue 3: >= 40k tokens/s prefill on an H100)
#   slicegpt  bench slicegpt on a random Llama-2-7B, 1024 x 2048 calibration tokens (issue 5: <= 5 min on an H100)
#   train     bench train on a random SmolLM2-135M shape, bf16 products, 16 x 1024 tokens (issue 17: >= 35% MFU;
#             the fraction printed is against the 8192^3 bf16 GEMM measured in the same run; --profile: the time
#             of every op, and of the products' bf16 operand rounding inside them), fp32 at 4 x 512, and bf16 with SAT's gathered step at omission 0.5 (--omit 0.5; issue
#             18's speed-up while omitting); both bf16 steps again with LATHE_GPU_TRAIN_ATTENTION=fused (the fused
#             attention kernels, whose first-step losses must match); SAT's later rungs (--omit 0.4 ... 0.1) and
#             the default ladder's speed-up from the rungs' step times
#   train-run lathe-cli train on the demo model with "device": "cuda" (fp32) beside the same job on the CPU: the
#             final evaluation losses must agree to 1e-3; then the GPU run killed at three moments and resumed must
#             export the uninterrupted run's bytes (the GPU step is deterministic: no atomics); then bf16 products
#             on score blocks and with the fused attention (LATHE_GPU_TRAIN_ATTENTION=fused); then recovery,
#             LoSparse, PST, SAT and BERT's masked LM (tf-bert-mlm) on the GPU beside the CPU (final losses within
#             1e-2)
#   resume    SliceGPT on the demo model on the GPU, killed after blocks 0-3 are saved and resumed from its layer checkpoint:
#             the export must equal an uninterrupted run's byte for byte (issue 20 item 9; the signals live on the GPU)
#   estimate  lathe-cli compress --estimate on the GPU (its forward pass probed there) against the run's wall time
#             and nvidia-smi's peak of its GPU memory, Wanda and SliceGPT on the demo model, and lathe-cli train
#             --estimate (time and GPU memory, the same way) (issue 19 item 3: state the error; nothing fails on it)
# Usage (on the device, from the repository root, with .devdeps carried; prepare it here with
# ../shared/tools/device-deps.sh):  benchmarks/gpu_session.sh [check|forward|slicegpt|train|train-run|resume|estimate|all]...
# ("train" runs the train-run stage too).
# Logs go to $OUT (the device tool's folder) or /tmp/lathe-gpu-out; the device tool returns at most 8 files, so a
# call points OUT elsewhere and packs the logs (session 23: OUT=/tmp/o ...; tar czf $OUT/logs.tgz the *.log and
# *.json under it). STAGE_TIMEOUT (seconds, default 300) limits each command stage.
set -uo pipefail
out="${OUT:-/tmp/lathe-gpu-out}"
mkdir -p "$out"
if [ -d .devdeps ]; then
  for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/devroot; done
  export CMAKE_PREFIX_PATH=/tmp/devroot/usr
  export LD_LIBRARY_PATH="/tmp/devroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# A build carried from a Debian 12 machine (same configuration, made against the same .devdeps) saves the build's
# minutes of device time; when it does not run here (missing system libraries), build here instead.
if [ -x build-gpu/app/lathe-cli ] && ! build-gpu/app/lathe-cli devices 2>&1 | grep -q '^gpu '; then
  echo "the carried build-gpu/app/lathe-cli does not run here or sees no GPU:"; build-gpu/app/lathe-cli devices 2>&1 | head -8
  rm -rf build-gpu
fi
if [ ! -x build-gpu/app/lathe-cli ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLATHE_BUILD_GUI=OFF -DLATHE_BUILD_TESTS=OFF \
    -DLATHE_USE_OPENBLAS=OFF -DLATHE_USE_HDF5=OFF -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 ||
    { tail -40 "$out/configure.log"; exit 1; }
  cmake --build build-gpu -j "$(nproc)" --target lathe-cli > "$out/build.log" 2>&1 ||
    { grep -m 20 -B2 -A6 'error' "$out/build.log"; exit 1; }
fi
cli=build-gpu/app/lathe-cli
# The CUDA backend is a plugin beside lathe-cli (built with it), loaded when the GPUs are asked for.
[ -f build-gpu/app/liblathe_gpu.so ] || { echo "build-gpu/app/liblathe_gpu.so is missing: the CUDA toolkit was not found"; exit 1; }
"$cli" devices
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null
status=0
run() { # name command...
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  # No stage may take the whole device call with it: each gets STAGE_TIMEOUT seconds (default 300).
  if [ "$(type -t "$1")" = function ]; then
    "$@" > "$out/$name.log" 2>&1
  else
    timeout -s KILL "${STAGE_TIMEOUT:-300}" "$@" > "$out/$name.log" 2>&1
  fi
  local rc=$?
  tail -n 30 "$out/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
# layer_resume: see the header.
layer_resume() {
  local d="$out/resume" text="$PWD/tests/data/text/tinystories-excerpt.txt"
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/job.json" <<JSON
{"model": "$PWD/resources/demo/stories260K.bin", "method": "slicegpt", "sparsity": 0.25,
 "slicegpt": {"random_orientation": true, "precision": "fp32"},
 "calibration": {"text": "$text", "samples": 64, "seq_len": 256}, "device": "cuda",
 "output": {"dir": "$d/ref", "checkpoint_seconds": 0}}
JSON
  "$cli" compress "$d/job.json" > /dev/null 2>&1 || return 1
  # Killed as soon as block 0, 1, 2 or 3 of the demo's 5 has its checkpoint file and the checkpoint its state
  # (checkpoint_seconds 0: a save after every block), so that each kill lands inside the layer-by-layer phase,
  # however fast the device.
  local block continued=0 pid waited
  for block in 0 1 2 3; do
    rm -rf "$d/k"
    "$cli" compress "$d/job.json" --output "$d/k" > /dev/null 2>&1 &
    pid=$!
    waited=0
    while kill -0 "$pid" 2> /dev/null && [ $waited -lt 30000 ] &&
          ! { [ -e "$d/k/layer-checkpoint/block-000$block.safetensors" ] && [ -e "$d/k/layer-checkpoint/state.safetensors" ]; }; do
      sleep 0.002; waited=$((waited + 2))
    done
    kill -KILL "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
    "$cli" compress "$d/job.json" --output "$d/k" --resume > /dev/null 2>&1 || return 1
    grep -h "continuing from the layer checkpoint" "$d/k/run.log" && continued=$((continued + 1))
    cmp "$d/k/model/model.safetensors" "$d/ref/model/model.safetensors" || return 1
  done
  echo "$continued of 4 runs killed after a block's checkpoint continued from a layer checkpoint; every export equal"
}
# train_run: see the header.
train_run() {
  local d="$out/train-run" text="$PWD/tests/data/text/tinystories-excerpt.txt"
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/job.json" <<JSON
{"model": "$PWD/resources/demo/stories260K.bin",
 "data": {"train": "$text", "holdout": 0.1, "seq_len": 128, "batch": 4, "accumulate": 2, "eval_windows": 4, "seed": 1},
 "optimizer": {"lr": 1e-3, "warmup": 5, "clip": 1.0}, "steps": 60, "eval_every": 20, "checkpoint_every": 7,
 "device": "cuda", "precision": "fp32", "output": {"dir": "$d/gpu"}}
JSON
  "$cli" train "$d/job.json" > "$d/gpu.log" 2>&1 || { tail -5 "$d/gpu.log"; return 1; }
  "$cli" train "$d/job.json" --device cpu --output "$d/cpu" > "$d/cpu.log" 2>&1 || { tail -5 "$d/cpu.log"; return 1; }
  python3 - "$d" <<'PY' || return 1
import json, sys
d = sys.argv[1]
g, c = (json.load(open(f"{d}/{k}/results.json")) for k in ("gpu", "cpu"))
print("device:", g["device"])
for a, b in zip(g["evals"], c["evals"]):
    print(f"step {a['step']}: eval loss GPU {a['eval_loss']:.6f} CPU {b['eval_loss']:.6f}")
gl, cl = g["evals"][-1]["eval_loss"], c["evals"][-1]["eval_loss"]
sys.exit(0 if abs(gl - cl) <= 1e-3 * abs(cl) else 1)
PY
  local delay
  for delay in 1.0 2.0 3.0; do
    rm -rf "$d/k"
    timeout -s KILL "$delay" "$cli" train "$d/job.json" --output "$d/k" > /dev/null 2>&1
    "$cli" train --resume "$d/k" > /dev/null 2>&1 || return 1
    cmp "$d/k/model/model.safetensors" "$d/gpu/model/model.safetensors" || return 1
    grep -h "resumed at step" "$d/k/run.log"
  done
  echo "killed and resumed 3 times: every export equal to the uninterrupted GPU run's"
  # bf16 products on score blocks and with the fused attention kernels (LATHE_GPU_TRAIN_ATTENTION=fused; the demo
  # model's 8-wide heads padded to 16), each against the CPU's fp32 run (final eval loss within 3e-2: bf16
  # rounding over 60 steps; a wrong kernel is far outside it); the fused run must say it ran them.
  local attn
  python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); j["checkpoint_every"] = 0; j["precision"] = "bf16"
json.dump(j, open(sys.argv[2], "w"))' "$d/job.json" "$d/bf16.json" || return 1
  for attn in blocks fused; do
    LATHE_GPU_TRAIN_ATTENTION=$attn "$cli" train "$d/bf16.json" --output "$d/bf16-$attn" > "$d/bf16-$attn.log" 2>&1 ||
      { tail -5 "$d/bf16-$attn.log"; return 1; }
  done
  python3 - "$d" <<'PY' || return 1
import json, sys
d = sys.argv[1]
c = json.load(open(f"{d}/cpu/results.json"))["evals"][-1]["eval_loss"]
ok = True
for attn in ("blocks", "fused"):
    r = json.load(open(f"{d}/bf16-{attn}/results.json"))
    g = r["evals"][-1]["eval_loss"]
    ran = ("fused attention" in r["device"]) == (attn == "fused")
    print(f"bf16 {attn}: final eval loss {g:.6f} against the CPU's {c:.6f}; {r['device']}")
    ok = ok and ran and abs(g - c) <= 3e-2 * abs(c)
sys.exit(0 if ok else 1)
PY
  # The methods the GPU trainer runs, GPU against CPU (their masks follow the gradients: 1e-2 of the final loss),
  # and BERT's masked-LM training (tf-bert-mlm, plain; windows of 32 of its 64 positions).
  local method
  for method in recovery losparse pst sat bert; do
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); j["checkpoint_every"] = 0
if sys.argv[2] == "bert": j["model"] = sys.argv[4] + "/tests/fixtures/tf-bert-mlm"; j["data"]["seq_len"] = 32
else: j["method"] = sys.argv[2]
json.dump(j, open(sys.argv[3], "w"))' "$d/job.json" "$method" "$d/$method.json" "$PWD" || return 1
    "$cli" train "$d/$method.json" --output "$d/$method-gpu" > "$d/$method-gpu.log" 2>&1 ||
      { tail -5 "$d/$method-gpu.log"; return 1; }
    "$cli" train "$d/$method.json" --device cpu --output "$d/$method-cpu" > "$d/$method-cpu.log" 2>&1 ||
      { tail -5 "$d/$method-cpu.log"; return 1; }
    python3 - "$d" "$method" <<'PY' || return 1
import json, sys
d, m = sys.argv[1], sys.argv[2]
g, c = (json.load(open(f"{d}/{m}-{k}/results.json")) for k in ("gpu", "cpu"))
gl, cl = g["evals"][-1]["eval_loss"], c["evals"][-1]["eval_loss"]
print(f"{m}: final eval loss GPU {gl:.6f} CPU {cl:.6f}; GPU {g['device']}")
sys.exit(0 if abs(gl - cl) <= 1e-2 * abs(cl) else 1)
PY
  done
}
# Runs a command in the background with its output to LOG, polling nvidia-smi every 0.1 s for its process's GPU
# memory (a peak between two polls is missed); leaves the peak in MiB in $peak (0 if never seen) and the wall time
# in $t0 and $t1; returns the command's status.
run_with_gpu_peak() { # log command...
  local log=$1 pid used; shift
  peak=0
  t0=$(date +%s.%N)
  "$@" > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    used=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
           awk -F', *' -v p="$pid" '$1 == p {print $2}')
    [ -n "$used" ] && [ "$used" -gt "$peak" ] && peak=$used
    sleep 0.1
  done
  wait "$pid"
  local rc=$?
  t1=$(date +%s.%N)
  return $rc
}
# estimate: see the header.
estimate_error() {
  local d="$out/estimate" text="$PWD/tests/data/text/tinystories-excerpt.txt" method
  rm -rf "$d"; mkdir -p "$d"
  for method in wanda slicegpt; do
    cat > "$d/$method.json" <<JSON
{"model": "$PWD/resources/demo/stories260K.bin", "method": "$method", "sparsity": 0.25,
 "calibration": {"text": "$text", "samples": 64, "seq_len": 256},
 "evaluation": {"text": "$text", "seq_len": 256, "dense": true}, "device": "cuda",
 "output": {"dir": "$d/$method"}}
JSON
    "$cli" compress "$d/$method.json" --estimate --json > "$d/$method-estimate.json" || return 1
    local t0 t1 peak
    run_with_gpu_peak "$d/$method-run.log" "$cli" compress "$d/$method.json" ||
      { tail -5 "$d/$method-run.log"; return 1; }
    python3 - "$d/$method-estimate.json" "$t0" "$t1" "$method" "$peak" <<'PY' || return 1
import json, sys
e = json.load(open(sys.argv[1])); wall = float(sys.argv[3]) - float(sys.argv[2]); peak = int(sys.argv[5])
print(f"{sys.argv[4]}: probe {e['probe'].get('device', {}).get('name', 'CPU only')}; estimate {e['seconds']:.2f} s, "
      f"run {wall:.2f} s wall, error {100 * (e['seconds'] - wall) / wall:+.0f}%; GPU memory estimate "
      f"{e['device_bytes'] / 2**20:.0f} MiB (512 of it the allowance), nvidia-smi peak {peak} MiB"
      + (f" ({100 * (e['device_bytes'] / 2**20 - peak) / peak:+.0f}%)" if peak else " (not seen)"))
for p in e["phases"]:
    print(f"  {p['phase']}: {p['seconds']:.3f} s x {p['times']}")
PY
  done
  # Training (issue 19 item 3 for `train --estimate`): the demo model on the GPU, bf16 products, 16 x 256 tokens a
  # step; the estimated time against the run's wall time, and the estimated GPU memory against the process's peak
  # as nvidia-smi reports it (polled every 0.1 s: a peak between two polls is missed).
  cat > "$d/train.json" <<JSON
{"model": "$PWD/resources/demo/stories260K.bin",
 "data": {"train": "$text", "holdout": 0.1, "seq_len": 256, "batch": 16, "eval_windows": 8, "seed": 1},
 "optimizer": {"lr": 1e-3, "warmup": 5}, "steps": 200, "eval_every": 50, "checkpoint_every": 100,
 "device": "cuda", "precision": "bf16", "output": {"dir": "$d/train"}}
JSON
  "$cli" train "$d/train.json" --estimate --json > "$d/train-estimate.json" || return 1
  local t0 t1 peak
  run_with_gpu_peak "$d/train-run.log" "$cli" train "$d/train.json" || { tail -5 "$d/train-run.log"; return 1; }
  python3 - "$d/train-estimate.json" "$t0" "$t1" "$peak" <<'PY' || return 1
import json, sys
e = json.load(open(sys.argv[1]))["estimate"]; wall = float(sys.argv[3]) - float(sys.argv[2]); peak = int(sys.argv[4])
print(f"train: estimate {e['seconds']:.2f} s, run {wall:.2f} s wall, error {100 * (e['seconds'] - wall) / wall:+.0f}%; "
      f"GPU memory estimate {e['device_bytes'] / 2**20:.0f} MiB, nvidia-smi peak {peak} MiB"
      + (f" ({100 * (e['device_bytes'] / 2**20 - peak) / peak:+.0f}%)" if peak else " (not seen)"))
for p in e["phases"]:
    print(f"  {p['phase']}: {p['seconds']:.3f} s x {p['times']}")
PY
}
# train_summary: the train stage's bench JSON lines side by side.
# - First-step losses: the fused attention's must be within 1e-3 (relative) of the score-block path's, at the same
#   batch and omission (the stage fails otherwise).
# - SAT's rung step times (train-bf16-omit50 ... omit10, train-bf16 for omission 0) weighted by the default
#   ladder's shares: an arithmetic combination of measured step times, not a timed run.
train_summary() {
  python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def last_json(name):
    path = out / f"{name}.log"
    if not path.exists():
        return None
    for line in path.read_text().splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
ok = True
for plain, fused in (("train-bf16", "train-bf16-fused"), ("train-bf16-omit50", "train-bf16-omit50-fused")):
    a, b = (last_json(n) for n in (plain, fused))
    a, b = (j.get("first_loss") if j else None for j in (a, b))
    close = a is not None and b is not None and abs(a - b) <= 1e-3 * abs(a)
    print(f"{plain} first loss {a}, {fused} {b}: {'agree' if close else 'DIFFER'}")
    ok = ok and close
rungs = [("train-bf16-omit50", 0.6), ("train-bf16-omit40", 0.08), ("train-bf16-omit30", 0.08),
         ("train-bf16-omit20", 0.08), ("train-bf16-omit10", 0.08), ("train-bf16", 0.08)]
times = {name: (last_json(name) or {}).get("median_s") for name, _ in rungs}
for name, share in rungs:
    print(f"{name}: step {times[name]} s, share of the steps {share}")
if all(times.values()):
    dense = times["train-bf16"]
    run = sum(times[name] * share for name, share in rungs)
    print(f"the default ladder: {run:.4f} s per step on average against {dense:.4f} s dense: {dense / run:.3f}x "
          f"(issue 18's target 1.35x over the whole run)")
else:
    print("the default ladder: a rung has no step time")
sys.exit(0 if ok else 1)
PY
}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
for stage in "${stages[@]}"; do
  case "$stage" in
    check|all) run check-gpu "$cli" check-gpu ;;&
    forward|all)
      run forward-bf16 "$cli" bench forward --shape llama2-7b --device cuda --precision bf16 --seq-len 2048 --repeat 5
      run forward-bf16-batch4 "$cli" bench forward --shape llama2-7b --device cuda --precision bf16 --seq-len 2048 \
        --batch 4 --repeat 3 ;;&
    slicegpt|all)
      run slicegpt-7b "$cli" bench slicegpt --shape llama2-7b --device cuda --precision bf16 --samples 1024 \
        --seq-len 2048 --sparsity 0.25 ;;&
    train|all)
      run train-bf16 "$cli" bench train --shape smollm2-135m --device cuda --precision bf16 --seq-len 1024 \
        --batch 16 --repeat 5 --profile
      run train-fp32 "$cli" bench train --shape smollm2-135m --device cuda --precision fp32 --seq-len 512 \
        --batch 4 --repeat 3
      # SAT's gathered step at its first omission rate (half the MLP channels, 1 of 3 KV groups), against
      # train-bf16 above: the step-time ratio is SAT's speed-up while it omits (issue 18).
      run train-bf16-omit50 "$cli" bench train --shape smollm2-135m --device cuda --precision bf16 --seq-len 1024 \
        --batch 16 --repeat 5 --omit 0.5
      # The fused attention kernels (gpu/trainflashattention.cu; opt-in until check-gpu's "fused" checks have passed
      # on a GPU), the same two steps: the step time and memory against train-bf16 and train-bf16-omit50, and the
      # first step's loss, which must match theirs to bf16 rounding.
      run train-bf16-fused env LATHE_GPU_TRAIN_ATTENTION=fused "$cli" bench train --shape smollm2-135m --device cuda \
        --precision bf16 --seq-len 1024 --batch 16 --repeat 5 --profile
      run train-bf16-omit50-fused env LATHE_GPU_TRAIN_ATTENTION=fused "$cli" bench train --shape smollm2-135m \
        --device cuda --precision bf16 --seq-len 1024 --batch 16 --repeat 5 --omit 0.5
      # SAT's later rungs (omission 0.4 to 0.1), for the ladder's whole-run speed from step times: with the
      # defaults (0.5 for 60% of the steps, then 0.4, 0.3, 0.2, 0.1 and 0 for 8% each) a run's time is the mean
      # of the rungs' step times weighted by their shares; its speed-up is the dense step's time over that.
      for w in 0.4 0.3 0.2 0.1; do
        run "train-bf16-omit${w#0.}0" "$cli" bench train --shape smollm2-135m --device cuda --precision bf16 \
          --seq-len 1024 --batch 16 --repeat 5 --omit "$w"
      done
      run train-summary train_summary ;;&
    train-run|train|all) run train-run train_run ;;&
    resume|all) run layer-resume layer_resume ;;&
    estimate|all) run estimate estimate_error ;;&
    check|forward|slicegpt|train|train-run|resume|estimate|all) ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
exit $status
