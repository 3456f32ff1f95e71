#!/usr/bin/env bash
# Rebuilds the extension into a temporary folder and fails if the result
# differs from the committed notebook_predictor_labextension/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
committed="$here/notebook_predictor_labextension"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$here/build.sh" "$tmp/fresh"
if ! diff -r "$committed" "$tmp/fresh" >"$tmp/diff" 2>&1; then
  cat "$tmp/diff" >&2
  echo "check-bundle.sh: FAIL: $committed differs from a fresh build." >&2
  echo "check-bundle.sh: run labextension/build.sh and commit the result." >&2
  exit 1
fi
echo "check-bundle.sh: OK: committed bundle matches a fresh build" >&2
