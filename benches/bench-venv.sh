#!/usr/bin/env bash
# Makes the Python with PyTorch that the benchmarks measure against, once:
# ~/.cache/notebook-predictor/bench-venv (full torch 2.13.0 from PyPI, about 2.7 GB to download).
# Prints the venv's python. Kept apart from the test venv, which has no torch.
set -euo pipefail
CACHE="${NOTEBOOK_PREDICTOR_CACHE:-$HOME/.cache/notebook-predictor}"
VENV="$CACHE/bench-venv"
if [ ! -f "$VENV/.complete" ]; then
  echo "creating $VENV (torch==2.13.0)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0 numpy >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
