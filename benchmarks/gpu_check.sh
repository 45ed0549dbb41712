#!/usr/bin/env bash
# The round-speed table on a CUDA GPU, in under 5 minutes: vectorised pool (the default there), sequential pool and
# the plain per-agent loop, for the paper's CNN and an MLP at N = 5, 20, 100, with peak GPU memory.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, in an environment with a CUDA build of torch
#
# It installs the package (without touching torch) if it is not importable, prints the GPU, then the table.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
if ! python -c "import lightning_cgs" 2>/dev/null; then
  pip install -q lightning torchmetrics wandb scikit-learn "jsonargparse[signatures]"
  pip install -q --no-deps -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
date -u +"measured %Y-%m-%d %H:%M UTC"
timeout 290 python benchmarks/round_speed.py --device cuda --rounds 4 --samples 128
