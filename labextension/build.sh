#!/usr/bin/env bash
# Builds the JupyterLab extension into notebook_predictor_labextension/ (or
# into the folder given as $1) from a clean `npm ci` of package-lock.json.
# node_modules (~450 MB), the npm download cache and the Python build tools
# live outside the repository, under $NOTEBOOK_PREDICTOR_CACHE
# (default ~/.cache/notebook-predictor), keyed by the lockfile hash.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:-$here/notebook_predictor_labextension}")"
cache="${NOTEBOOK_PREDICTOR_CACHE:-$HOME/.cache/notebook-predictor}"
# The project's venv (made by install.sh) has the build tools; a private one is made otherwise.
venv="$cache/devtools-venv"
if [ -x "$here/../.venv/bin/jupyter-builder" ]; then venv="$(realpath "$here/../.venv")"; fi
mkdir -p "$cache"

if [ ! -x "$venv/bin/jupyter-builder" ]; then
  echo "build.sh: creating build tools venv in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet jupyterlab==4.6.6 jupyter-builder==1.3.0
fi

# node_modules is keyed by the lockfile, so package.json must agree with it.
node -e '
  const pkg = require(process.argv[1]);
  const root = require(process.argv[2]).packages[""];
  for (const field of ["dependencies", "devDependencies"]) {
    if (JSON.stringify(pkg[field] ?? {}) !== JSON.stringify(root[field] ?? {})) {
      console.error(`build.sh: package.json ${field} differ from package-lock.json; run npm install --package-lock-only`);
      process.exit(1);
    }
  }' "$here/package.json" "$here/package-lock.json"
key="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
work="$cache/labextension-$key"
exec 9>"$work.lock"
flock 9

if [ ! -f "$work/node_modules/.npm-ci-done" ]; then
  echo "build.sh: npm ci into $work" >&2
  rm -rf "$work"
  mkdir -p "$work"
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --cache "$cache/npm-cache" --prefer-offline \
    --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$work/node_modules/.npm-ci-done"
fi

# Sources are copied fresh each time so stale outputs can never leak in.
rm -rf "$work/src" "$work/lib" "$work/notebook_predictor_labextension"
cp -r "$here/src" "$here/tsconfig.json" "$here/package.json" "$here/rspack.config.js" "$work/"
cd "$work"
node_modules/.bin/tsc
"$venv/bin/jupyter-builder" build \
  --core-package-file node_modules/@jupyterlab/core-meta/core.package.json . >/dev/null

rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$work/notebook_predictor_labextension" "$out"
echo "build.sh: built $out" >&2
