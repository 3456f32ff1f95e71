#!/usr/bin/env bash
# Runs the cell-latency benchmark: benches/latency_bench.sh [MODEL_DIR]
# It derives a copy of the model (default: models/default) whose output head cannot end an
# output, so every predicted output is exactly 64 tokens, and prints the table of
# benches/cell_latency.rs. Needs the test venv (install.sh --test-tools) for numpy/safetensors.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:-models/default}
py=${NOTEBOOK_PREDICTOR_TEST_PYTHON:-.venv/bin/python}
export NOTEBOOK_PREDICTOR_TORCH_PYTHON="${NOTEBOOK_PREDICTOR_TORCH_PYTHON:-$(benches/bench-venv.sh)}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" tests/fixtures/make_babbler_model.py "$model" "$tmp/babbler" >/dev/null
NOTEBOOK_PREDICTOR_BENCH_MODEL="$tmp/babbler" cargo bench --bench cell_latency
