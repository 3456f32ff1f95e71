#!/usr/bin/env bash
# Runs every test of Notebook Predictor, doing its own set-up first (./install.sh --test-tools):
# formatting and lints, the Rust tests, the Python tests through real Jupyter clients, the
# JupyterLab browser tests, and the check that the committed JupyterLab bundle matches a build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${NOTEBOOK_PREDICTOR_CACHE:-$HOME/.cache/notebook-predictor}"
export NOTEBOOK_PREDICTOR_CACHE="$CACHE"

section() { printf '\n######## %s\n' "$*"; }
started=$(date +%s)

section "set-up (./install.sh --test-tools)"
./install.sh --test-tools

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings

section "fixture model"
FIXTURE="$ROOT/target/fixture-model"
rm -rf "$FIXTURE"
tests/fixtures/train-fixture-model.sh "$FIXTURE"
export NOTEBOOK_PREDICTOR_FIXTURE_MODEL="$FIXTURE"
export NOTEBOOK_PREDICTOR_PYTHON="$ROOT/.venv/bin/python"

section "Rust tests (cargo test --release)"
cargo test --release

section "Python tests through jupyter_client, jupyter_kernel_test, nbconvert, papermill"
.venv/bin/python -m pytest tests/python -q

section "JupyterLab extension bundle matches a fresh build"
labextension/check-bundle.sh

section "JupyterLab in Chromium"
tests/browser/run.sh

section "all tests passed in $(( $(date +%s) - started )) s"
