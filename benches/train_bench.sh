#!/usr/bin/env bash
# Runs the training/generation speed benchmark and prints its table: ./benches/train_bench.sh
# Set NOTEBOOK_PREDICTOR_TORCH_PYTHON to a Python with torch to fill the PyTorch column.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo bench --bench train_speed
