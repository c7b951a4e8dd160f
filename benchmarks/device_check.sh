#!/usr/bin/env bash
# The GPU checks of the training fast path, as one script for a lent CUDA machine (the device tool's
# `run`, which starts in the repository root with $OUT for results). Uses the machine's own python3
# and torch (nothing is installed); deepdraw is imported from src/.
#   run: bash benchmarks/device_check.sh          (about 3 minutes on one H200)
set -uo pipefail
export PYTHONPATH=src
OUT=${OUT:-/tmp/deepdraw-device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" >> "$OUT/gpu.txt" 2>&1
# the CUDA test of the fast path (skipped on machines without CUDA)
python3 -m pytest -q -p no:cacheprovider tests/test_nn_fast.py -k "cuda or lowered" > "$OUT/tests.txt" 2>&1
tail -3 "$OUT/tests.txt"
# throughput: reference fp32 vs the fast path, the group of 5, on CUDA (last line JSON)
python3 benchmarks/train.py --device cuda --batch 256 > "$OUT/train_cuda.txt" 2>&1
tail -1 "$OUT/train_cuda.txt" > "$OUT/train_cuda.json"
# large batches: where the GPU stops being launch-bound
python3 benchmarks/train.py --device cuda --batch 2048 --no-group --models spatial_temporal spatiotemporal \
    > "$OUT/train_cuda_b2048.txt" 2>&1
tail -1 "$OUT/train_cuda_b2048.txt" > "$OUT/train_cuda_b2048.json"
cat "$OUT/train_cuda.json" "$OUT/train_cuda_b2048.json"
