#!/usr/bin/env bash
# One-command check of the device-resident evaluation engine on CUDA (issue 13). On a machine
# with a GPU and the venv built (scripts/bootstrap), or with the kit of scripts/device_kit.py
# unpacked and its env.sh sourced (a machine with its own PyTorch and no network), it
#   1. runs the GPU tests: evaluators on CUDA vs onnxruntime, degradation/resize and PSNR/SSIM
#      on CUDA vs the NumPy oracles, the torch pipeline on CUDA vs the CPU, task scoring on CUDA
#      tensors, and a run on CUDA vs the CPU on ~500 real LFW faces (tests/engine/test_run_cuda.py);
#   2. runs benchmarks/bench_pipeline.py --device cuda on the full lfw-10fold (bicubic x8, SFace
#      on torch, cache off) beside the serial NumPy/onnxruntime path, printing per-stage images/s
#      and wall time, and writing gpu-check-pipeline.json in the current folder;
#   3. runs benchmarks/bench_identification.py --device cuda (BLUFR's 10 trials and leave-one-out
#      kNN/CMC with their score blocks on the GPU, against the NumPy references), writing
#      gpu-check-identification.json.
# Without CUDA it prints "skipped: no CUDA" and exits 0. Exit status 1 when a test fails.
# Environment: PYTHON (default: the venv scripts/bootstrap builds), FHBENCH_GPU_CHECK_LIMIT
# (bench_pipeline --limit: a subset of lfw-10fold instead of the full one, for a quick look).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=$("$repo/scripts/venv-python")
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check: skipped: no CUDA (torch.cuda.is_available() is False on this machine)"
  exit 0
fi
out=$(pwd)
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
"$py" -c 'import torch; print(f"gpu-check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")'
# The CPU oracles (PSNR/SSIM) need numba: say at once if this Python's does not import (a build
# for another NumPy), rather than in every test that compares against them.
"$py" -c 'import numba, numpy; print(f"gpu-check: numba {numba.__version__}, NumPy {numpy.__version__}")' 2>/dev/null \
  || echo "gpu-check: numba does not import in $py: the CPU PSNR/SSIM will fail; install a numba built for its NumPy"
status=0
"$py" -m pytest -q -p no:cacheprovider -rs \
  tests/evaluators/test_evaluator_backends.py \
  tests/metrics/test_torch_image_ops.py tests/metrics/test_torch_scoring.py tests/metrics/test_score_device.py \
  tests/engine/test_torch_pipeline.py tests/engine/test_run_cuda.py || status=1
limit=()
if [ -n "${FHBENCH_GPU_CHECK_LIMIT:-}" ]; then limit=(--limit "$FHBENCH_GPU_CHECK_LIMIT"); fi
"$py" benchmarks/bench_pipeline.py --device cuda --backend torch "${limit[@]}" \
  --json "$out/gpu-check-pipeline.json" || status=1
"$py" benchmarks/bench_identification.py --device cuda --reference-trials 1 \
  --json "$out/gpu-check-identification.json" || status=1
echo "gpu-check: total $(( $(date +%s) - start )) s; figures in $out/gpu-check-pipeline.json and gpu-check-identification.json"
if [ "$status" -ne 0 ]; then
  echo "gpu-check: FAILED (see above)"
  exit 1
fi
echo "gpu-check: all checks passed"
