#!/usr/bin/env bash
# GPU check of the learner (issue 5): build against the GPU machine's CUDA LibTorch, compare a few
# training steps on its CPU and on CUDA, time a Toys epoch on CUDA.
#
# The GPU machine (the `device` tool) reaches no registry and gets only the working tree, not
# ../shared, so two steps:
#   here:    scripts/train_gpu_check.sh prepare
#            fills .gpu/ (git-ignored): CLI11's headers and CMake config (gsau's command line needs
#            them; that machine has no libcli11-dev) and a copy of the Toys dataset (research use:
#            it stays out of git). Prints the device call.
#   there:   device run, carry [".gpu"], command: scripts/train_gpu_check.sh "$OUT"
#            1. configures the learner-only tree against python3's torch (its CMake prefix;
#               tests off, system malloc: neither GoogleTest nor jemalloc is there) and builds
#               gsau; on failure prints the log's tail and stops;
#            2. trains 20 steps on Toys on the CPU and on CUDA with dropout off (batches, the
#               derangements and the initial weights come from CPU generators, so both runs see the
#               same), and compares the epoch's mean losses: they must agree to 1e-3 relative
#               (float32 sums in different orders; LibTorch uses no TF32 unless asked); also
#               prints both validation passes;
#            3. builds bench_train and times one whole Toys epoch on CUDA and one validation pass
#               (bench_train --full); a failure here leaves the comparison standing.
#          OUT gets 8 files, within what the device tool brings back: gpu_check.txt (the machine,
#          every step's outcome, the comparison, bench_train's output ending in `BENCH train ...`),
#          cmake.log, build.log, train-cpu.log, train-cuda.log, bench.log, metrics-cpu.csv and
#          metrics-cuda.csv (checkpoints stay in /tmp: 40 MB each). Exit status 0 only when every
#          step ran and the losses agree. About 5 minutes on an H200 machine after its start
#          (build ~2 min on 16 cores); each step has its own time limit, so a stuck one still
#          leaves the logs.
#          GPU_CHECK_DEVICE=cpu runs the second leg on the CPU too: a dry run of the whole script
#          on a machine without a GPU (with TORCH_DIR naming a LibTorch's CMake prefix), at no
#          device time.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == prepare ]]; then
  cli11_cmake=$(dirname "$(find /usr/share/cmake /usr/lib/cmake /usr/lib/x86_64-linux-gnu/cmake \
    -name CLI11Config.cmake 2>/dev/null | head -1)")
  [[ -d /usr/include/CLI && -f "$cli11_cmake/CLI11Config.cmake" ]] || {
    echo "prepare: CLI11 not found here (run scripts/setup.sh first)" >&2; exit 1; }
  rm -rf .gpu
  mkdir -p .gpu/cli11/include .gpu/cli11/share/cmake .gpu/data
  cp -r /usr/include/CLI .gpu/cli11/include/
  cp -r "$cli11_cmake" .gpu/cli11/share/cmake/
  cp "${DATA:-../shared/datasets/amazon-toys/Toys_and_Games.txt}" .gpu/data/Toys_and_Games.txt
  du -sh .gpu
  echo 'device call: run(command: scripts/train_gpu_check.sh "$OUT", carry: [".gpu"], timeout_s: 420)'
  exit 0
fi

OUT=${1:-${OUT:-/tmp/gsau-gpu-check}}
WORK=${WORK:-/tmp/gsau-gpu-work}  # checkpoints and reports: too big to come back
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu_check.txt"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
[[ -d .gpu/cli11 && -f .gpu/data/Toys_and_Games.txt ]] || {
  say ".gpu/ is missing: run 'scripts/train_gpu_check.sh prepare' here first and carry .gpu"; exit 1; }
DATA=${DATA:-.gpu/data/Toys_and_Games.txt}
[[ -d /usr/local/cuda/bin ]] && export PATH="$PATH:/usr/local/cuda/bin"

{
  date -u +%FT%TZ
  nvidia-smi -L 2>&1 || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 || true
  for c in c++ nvcc cmake ninja; do echo "$c: $(command -v "$c" || echo missing) $("$c" --version 2>/dev/null | grep -m1 -i 'version\|release\|[0-9]\.[0-9]' || true)"; done
  ls -d /usr/local/cuda* 2>/dev/null || echo "no /usr/local/cuda*"
  echo "cores: $(nproc)"
} 2>&1 | tee -a "$LOG"
GPU=${GPU_CHECK_DEVICE:-cuda}
[[ $GPU != cuda ]] || python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || {
  say "FAILED: python3's torch sees no CUDA device; nothing built"; exit 1; }

TORCH_DIR=${TORCH_DIR:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
# Only the link needs CUDA here (no .cu sources): name the chip so that Torch's CMake does not probe.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
try() {  # try NAME LIMIT_S LOGFILE CMD...: runs CMD into LOGFILE; on failure shows its tail, returns 1
  local name=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" > "$log" 2>&1 || rc=$?
  if (( rc != 0 )); then
    say "FAILED: $name (rc $rc$( ((rc == 124)) && echo ", over its ${limit} s")), last lines of $(basename "$log"):"
    tail -40 "$log" | tee -a "$LOG"
    return 1
  fi
  say "$name: ok ($((SECONDS - t0)) s)"
}
step() { try "$@" || exit 1; }
step configure 120 "$OUT/cmake.log" cmake -S . -B build-gpu -G Ninja -DGSAU_LEARNER_ONLY=ON \
  -DCMAKE_BUILD_TYPE=Release -DGSAU_BUILD_TESTS=OFF -DGSAU_ALLOCATOR=system "-DCMAKE_PREFIX_PATH=$TORCH_DIR;$PWD/.gpu/cli11"
# find_package(Torch) is QUIET (the full build runs without LibTorch): a prefix without
# TorchConfig configures fine and builds no learner.
grep -q 'gsau: LibTorch .* found' "$OUT/cmake.log" || {
  say "FAILED: CMake found no LibTorch under $TORCH_DIR; last lines of cmake.log:"; tail -40 "$OUT/cmake.log" | tee -a "$LOG"; exit 1; }
grep 'gsau: LibTorch' "$OUT/cmake.log" | tee -a "$LOG"
step "build gsau" 300 "$OUT/build.log" cmake --build build-gpu --target gsau -j"$(nproc)"

common=(train --data "$DATA" --model gsau-rec --epochs 1 --max-steps-per-epoch 20 --dropout 0
        --attn-dropout 0 --no-progress --seed 2020)
for leg in cpu cuda; do
  dev=cpu
  [[ $leg == cpu ]] || dev=$GPU
  # --overwrite: a rerun on a warm machine finds the last run's files (gsau train refuses them).
  step "20 steps on $dev" 180 "$OUT/train-$leg.log" ./build-gpu/gsau "${common[@]}" --device "$dev" --overwrite \
    --out "$WORK/$leg"
  cp "$WORK/$leg/metrics.csv" "$OUT/metrics-$leg.csv"
done
status=0
python3 - "$OUT" > "$WORK/compare.txt" 2>&1 <<'PY' || status=1
import csv, sys
out = sys.argv[1]
row = lambda d: next(csv.DictReader(open(f"{out}/metrics-{d}.csv")))
cpu, gpu = row("cpu"), row("cuda")
ok = True
for k in ("loss", "graph_align", "graph_unif", "seq_align", "seq_unif"):
    a, b = float(cpu[k]), float(gpu[k])
    rel = abs(a - b) / max(abs(a), 1e-9)
    ok &= rel < 1e-3
    print(f"{k}: cpu {a:.6f} cuda {b:.6f} rel diff {rel:.2e}")
for k in ("valid_recall@20", "valid_ndcg@20"):
    print(f"{k} after 20 steps: cpu {float(cpu[k]):.5f} cuda {float(gpu[k]):.5f}")
print(f"train seconds for 20 steps: cpu {float(cpu['train_seconds']):.2f} cuda {float(gpu['train_seconds']):.2f}")
print("losses agree (1e-3 relative):", ok)
sys.exit(0 if ok else 1)
PY
tee -a "$LOG" < "$WORK/compare.txt"

# The benchmark last and on its own: a failure here leaves the comparison above standing.
if try "build bench_train" 120 "$WORK/build-bench.log" cmake --build build-gpu --target bench_train -j"$(nproc)" &&
   try "bench_train --full on $GPU" 180 "$OUT/bench.log" ./build-gpu/bench/learner/bench_train --data "$DATA" \
     --full --device "$GPU"; then
  tee -a "$LOG" < "$OUT/bench.log"
else
  status=1
fi
exit "$status"
