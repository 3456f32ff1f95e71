#!/usr/bin/env bash
# Runs the browser tests against the real kernel: ghost.test.mjs, then lab.test.mjs.
#   tests/browser/run.sh
# Needs what `./install.sh --test-tools` sets up: /usr/bin/chromium, the venv (.venv) and
# target/release/notebook-predictor. npm packages are installed here when missing (npm cache
# under ~/.cache/notebook-predictor/npm). The fixture model is $NOTEBOOK_PREDICTOR_FIXTURE_MODEL,
# else trained once into ~/.cache/notebook-predictor/fixture-model-<hash of the fixtures>.
# Screenshots and logs go to $ARTIFACTS_DIR (default tests/browser/artifacts/<timestamp>).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${NOTEBOOK_PREDICTOR_CACHE:-$HOME/.cache/notebook-predictor}"
BIN="${NP_BINARY:-$ROOT/target/release/notebook-predictor}"
export NP_BINARY="$BIN"
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$HERE/artifacts/$(date -u +%Y-%m-%dT%H-%M-%SZ)}"
mkdir -p "$ARTIFACTS_DIR"

[ -x "$BIN" ] || { echo "run.sh: $BIN is missing: run ./install.sh --test-tools (or cargo build --release)" >&2; exit 2; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "run.sh: chromium is missing: run ./install.sh --test-tools" >&2; exit 2; }
if [ -z "${JUPYTER_VENV:-}" ] && [ ! -x "$ROOT/.venv/bin/jupyter-lab" ]; then
  echo "run.sh: $ROOT/.venv has no jupyter-lab: run ./install.sh --test-tools" >&2; exit 2
fi

if [ ! -f "$HERE/node_modules/playwright-core/package.json" ]; then
  echo "==> npm ci (tests/browser)"
  (cd "$HERE" && npm ci --silent --no-audit --no-fund --cache "$CACHE/npm")
fi

if [ -z "${NOTEBOOK_PREDICTOR_FIXTURE_MODEL:-}" ]; then
  KEY="$(cd "$ROOT/tests/fixtures" && { cat train-fixture-model.sh; find notebooks -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-12)"
  MODEL="$CACHE/fixture-model-$KEY"
  if [ ! -f "$MODEL/config.json" ]; then
    echo "==> training the fixture model into $MODEL"
    rm -rf "$MODEL.tmp"
    mkdir -p "$CACHE"
    "$ROOT/tests/fixtures/train-fixture-model.sh" "$MODEL.tmp" "$BIN"
    rm -rf "$MODEL"
    mv "$MODEL.tmp" "$MODEL"
  fi
  export NOTEBOOK_PREDICTOR_FIXTURE_MODEL="$MODEL"
fi
echo "==> fixture model: $NOTEBOOK_PREDICTOR_FIXTURE_MODEL"

status=0
cd "$HERE"
for t in ghost.test.mjs lab.test.mjs; do
  echo "==> node --test $t"
  node --test --test-concurrency=1 "$t" || status=1
done
echo "artifacts: $ARTIFACTS_DIR"
if [ "$status" = 0 ]; then echo "browser tests: PASS"; else echo "browser tests: FAIL" >&2; fi
exit "$status"
