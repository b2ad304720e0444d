#!/usr/bin/env bash
# GPU check of the learner (issue 5), for a machine with an NVIDIA GPU and a CUDA LibTorch.
# NOT RUN YET: no GPU machine was lent to the session that wrote it (see docs/results/README.md).
#
#  1. builds the learner-only tree against a CUDA LibTorch (TORCH_DIR, or the one inside a pip
#     `torch` wheel: python3 -c 'import torch; print(torch.utils.cmake_prefix_path)');
#  2. trains 20 steps on Toys on the CPU and on CUDA with dropout off (so both draw the same
#     batches, derangements and initial weights) and compares the mean step losses: they must
#     agree to 1e-3 relative (float32 sums in different orders);
#  3. times one whole Toys epoch on CUDA (bench_train --full).
# Usage: scripts/train_gpu_check.sh [OUT_DIR]    (writes OUT_DIR/gpu_check.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/gsau-gpu-check}}
mkdir -p "$OUT"
TORCH_DIR=${TORCH_DIR:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)}
cmake -S . -B build-gpu -G Ninja -DGSAU_LEARNER_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
  ${TORCH_DIR:+-DCMAKE_PREFIX_PATH=$TORCH_DIR} > "$OUT/cmake.log"
cmake --build build-gpu --target gsau bench_train -j"$(nproc)" > "$OUT/build.log"
DATA=${DATA:-../shared/datasets/amazon-toys/Toys_and_Games.txt}
common=(train --data "$DATA" --model gsau-rec --epochs 1 --max-steps-per-epoch 20 --dropout 0
        --attn-dropout 0 --no-progress --seed 2020)
./build-gpu/gsau "${common[@]}" --device cpu --out "$OUT/cpu" > "$OUT/cpu.json"
./build-gpu/gsau "${common[@]}" --device cuda --out "$OUT/cuda" > "$OUT/cuda.json"
python3 - "$OUT" <<'PY' | tee "$OUT/gpu_check.txt"
import csv, sys
out = sys.argv[1]
row = lambda d: next(csv.DictReader(open(f"{out}/{d}/metrics.csv")))
cpu, gpu = row("cpu"), row("cuda")
ok = True
for k in ("loss", "graph_align", "graph_unif", "seq_align", "seq_unif"):
    a, b = float(cpu[k]), float(gpu[k])
    rel = abs(a - b) / max(abs(a), 1e-9)
    ok &= rel < 1e-3
    print(f"{k}: cpu {a:.6f} cuda {b:.6f} rel diff {rel:.2e}")
print("losses agree (1e-3 relative):", ok)
PY
./build-gpu/bench/learner/bench_train --data "$DATA" --full --device cuda | tee -a "$OUT/gpu_check.txt"
