#!/usr/bin/env bash
# Runs the training/generation speed benchmark and prints its table: ./benches/train_bench.sh
# The PyTorch column uses benches/bench-venv.sh (or NOTEBOOK_PREDICTOR_TORCH_PYTHON).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NOTEBOOK_PREDICTOR_TORCH_PYTHON="${NOTEBOOK_PREDICTOR_TORCH_PYTHON:-$(benches/bench-venv.sh)}"
exec cargo bench --bench train_speed
