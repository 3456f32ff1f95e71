#!/usr/bin/env bash
# Installs Notebook Predictor on a Debian machine: build tools, libtorch 2.13.0, the release
# binary, the default model and the Jupyter kernelspec (with its JupyterLab extension).
# Safe to run again: finished steps are skipped.
#
#   ./install.sh              install for this user
#   ./install.sh --lab        install, then open JupyterLab with the kernel
#   ./install.sh --cuda       use the CUDA build of libtorch (default when an NVIDIA GPU is present)
#   ./install.sh --cpu        use the CPU-only build of libtorch even when a GPU is present
#   ./install.sh --test-tools also install what the test suite needs (Chromium, npm packages)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${NOTEBOOK_PREDICTOR_CACHE:-$HOME/.cache/notebook-predictor}"
BIN_DIR="${NOTEBOOK_PREDICTOR_BIN_DIR:-$HOME/.local/bin}"
DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/notebook-predictor"
TORCH_VERSION=2.13.0
LAB=0
TEST_TOOLS=0
CUDA=auto

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --lab) LAB=1 ;;
    --cuda) CUDA=1 ;;
    --cpu) CUDA=0 ;;
    --test-tools) TEST_TOOLS=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\ninstall.sh: error: %s\n' "$*" >&2; exit 1; }
trap 'fail "step failed at line $LINENO (see the output above)"' ERR

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# 1. System packages.
PKGS=(cmake pkg-config g++ python3-venv curl ca-certificates)
if [ "$TEST_TOOLS" = 1 ]; then PKGS+=(chromium chromium-driver nodejs npm); fi
MISSING=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || MISSING+=("$p")
done
# nodejs/npm may come from outside Debian; accept them when they already work.
if command -v node >/dev/null && command -v npm >/dev/null; then
  MISSING=("${MISSING[@]/nodejs}"); MISSING=("${MISSING[@]/npm}")
fi
MISSING=($(printf '%s\n' "${MISSING[@]}" | grep -v '^$' || true))
if [ "${#MISSING[@]}" -gt 0 ]; then
  step "installing system packages: ${MISSING[*]}"
  $SUDO apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" >/dev/null \
    || fail "apt-get install ${MISSING[*]} failed"
else
  step "system packages present"
fi
command -v cargo >/dev/null || fail "cargo not found: install Rust (https://rustup.rs) and run again"

# 2. libtorch, from PyPI's torch wheel (the CPU set needs only two small CUDA runtime wheels).
if [ "$CUDA" = auto ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then CUDA=1; else CUDA=0; fi
fi
if [ "$CUDA" = 1 ]; then FLAVOR=cu13; else FLAVOR=cpu; fi
TORCH_DIR="$CACHE/libtorch-$TORCH_VERSION-$FLAVOR"
if [ ! -f "$TORCH_DIR/torch/lib/libtorch_cpu.so" ]; then
  step "installing libtorch $TORCH_VERSION ($FLAVOR) into $TORCH_DIR"
  mkdir -p "$CACHE"
  rm -rf "$TORCH_DIR.tmp"
  if [ "$FLAVOR" = cpu ]; then
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$TORCH_DIR.tmp" \
      "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 \
      || fail "downloading torch==$TORCH_VERSION from PyPI failed"
  else
    python3 -m pip install -q --disable-pip-version-check --target "$TORCH_DIR.tmp" "torch==$TORCH_VERSION" \
      || fail "downloading torch==$TORCH_VERSION (CUDA) from PyPI failed"
  fi
  mv "$TORCH_DIR.tmp" "$TORCH_DIR"
else
  step "libtorch $TORCH_VERSION ($FLAVOR) present in $TORCH_DIR"
fi
ln -sfn "$TORCH_DIR/torch" "$ROOT/.libtorch"

# 3. The Python tools the tests and JupyterLab use, in a venv keyed by the requirements.
REQ="$ROOT/tests/requirements.txt"
VENV="$CACHE/venv-$(sha256sum "$REQ" | cut -c1-12)"
if [ ! -f "$VENV/.complete" ]; then
  step "creating the Python venv $VENV"
  # A venv records its own path, so it is built in place; .complete marks a finished one.
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" || fail "pip install -r $REQ failed"
  touch "$VENV/.complete"
else
  step "Python venv present in $VENV"
fi
ln -sfn "$VENV" "$ROOT/.venv"

# 4. The release binary.
step "building the release binary (a few minutes the first time)"
cd "$ROOT"
if [ "$CUDA" = 1 ]; then export NOTEBOOK_PREDICTOR_CUDA=1; fi
cargo build --release || fail "cargo build --release failed"
mkdir -p "$BIN_DIR"
install -m 755 "$ROOT/target/release/notebook-predictor" "$BIN_DIR/notebook-predictor.tmp"
mv "$BIN_DIR/notebook-predictor.tmp" "$BIN_DIR/notebook-predictor"
echo "installed $BIN_DIR/notebook-predictor"

# 5. The default model.
if [ -f "$ROOT/models/default/config.json" ]; then
  mkdir -p "$DATA_DIR/models"
  rm -rf "$DATA_DIR/models/default.tmp"
  cp -r "$ROOT/models/default" "$DATA_DIR/models/default.tmp"
  rm -rf "$DATA_DIR/models/default"
  mv "$DATA_DIR/models/default.tmp" "$DATA_DIR/models/default"
  echo "installed the default model in $DATA_DIR/models/default"
else
  fail "models/default is missing from $ROOT"
fi

# 6. The kernelspec, through jupyter's own installer, and the JupyterLab extension.
step "installing the Jupyter kernel"
SPEC_TMP="$(mktemp -d)"
"$BIN_DIR/notebook-predictor" install --prefix "$SPEC_TMP" --no-labextension >/dev/null
"$VENV/bin/jupyter" kernelspec install "$SPEC_TMP/share/jupyter/kernels/notebook-predictor" \
  --user --name notebook-predictor || fail "jupyter kernelspec install failed"
rm -rf "$SPEC_TMP"
"$BIN_DIR/notebook-predictor" install --user || fail "installing the JupyterLab extension failed"

# 7. Test tools: the browser tests' npm packages.
if [ "$TEST_TOOLS" = 1 ] && [ -f "$ROOT/tests/browser/package-lock.json" ]; then
  step "installing the browser tests' npm packages"
  (cd "$ROOT/tests/browser" && npm ci --silent --no-audit --no-fund --cache "$CACHE/npm") \
    || fail "npm ci in tests/browser failed"
fi

step "done"
case ":$PATH:" in
  *":$BIN_DIR:"*) ;;
  *) echo "note: $BIN_DIR is not on your PATH; add it, e.g. export PATH=\"$BIN_DIR:\$PATH\"" ;;
esac
echo "Choose \"Notebook Predictor\" in JupyterLab's launcher. JupyterLab is in $VENV/bin."

if [ "$LAB" = 1 ]; then
  step "starting JupyterLab (Ctrl-C to stop)"
  LAB_ARGS=()
  if [ "$(id -u)" = 0 ]; then LAB_ARGS+=(--allow-root); fi
  exec "$VENV/bin/jupyter" lab "${LAB_ARGS[@]}"
fi
