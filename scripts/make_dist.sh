#!/usr/bin/env bash
# Build edgesiam's sdist and wheel into dist/ (or the folder given): the wheel is what a device
# installs, e.g. pip install 'edgesiam-0.1.0-py3-none-any.whl[audio]'. The build runs on a copy of
# the files git tracks, so data/, runs/, venvs and build leftovers never reach the packages and the
# checkout stays clean; the wheel is built from the sdist, which proves the sdist complete.
# Idempotent: earlier edgesiam packages in the output folder are replaced.
#   PYTHON=.venv/bin/python scripts/make_dist.sh [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/dist}"
if ! "$PYTHON" -c "import build" 2>/dev/null; then
  echo "the Python package 'build' is not installed in $PYTHON's environment (pip install build)" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$work")
"$PYTHON" -m build --no-isolation --outdir "$work/dist" "$work" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/edgesiam-*.whl "$OUT"/edgesiam-*.tar.gz
cp "$work"/dist/edgesiam-* "$OUT"/
ls -1 "$OUT"/edgesiam-*
