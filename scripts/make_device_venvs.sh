#!/usr/bin/env bash
# Two small device-only virtual environments for the device tests (tests/export):
#   .venv-litert  ai-edge-litert with numpy 2
#   .venv-tflite  tflite-runtime 2.14 with numpy < 2
# Each holds edgesiam (editable, --no-deps) and only the device dependencies: numpy, pydantic,
# pyyaml, soundfile, soxr, tqdm and one interpreter. No torch, tensorflow or librosa: the check at
# the end fails the script if one slipped in. Idempotent: a stamp file keyed on this script, the
# requirements, pyproject.toml and the repository's path skips a venv that is up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/make_device_venvs.sh"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PIP_FLAGS=(-q --disable-pip-version-check)
DEVICE_DEPS=(pydantic pyyaml soundfile soxr tqdm paho-mqtt)

make_venv() {
  local dir="$1"
  shift
  local key
  key="$( { cat "$SCRIPT" "$ROOT/pyproject.toml"; echo "$ROOT $PYTHON $*"; } | sha1sum | cut -c1-12)"
  local stamp="$dir/.device-venv-$key"
  if [ -f "$stamp" ]; then
    echo "$(basename "$dir"): up to date"
    return 0
  fi
  echo "$(basename "$dir"): creating with $* ..."
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install "${PIP_FLAGS[@]}" "$@" "${DEVICE_DEPS[@]}"
  "$dir/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps -e "$ROOT"
  "$dir/bin/python" - <<'PY'
import importlib.util
import sys

heavy = [m for m in ("torch", "tensorflow", "librosa") if importlib.util.find_spec(m) is not None]
if heavy:
    sys.exit(f"device venv must not hold {', '.join(heavy)}")
import edgesiam.model.interpreters as it

backend = it.find_backend()
import numpy

print(f"  edgesiam device install ok: {backend.name} {backend.version}, numpy {numpy.__version__}")
PY
  touch "$stamp"
}

make_venv "$ROOT/.venv-litert" "ai-edge-litert==2.3.*" "numpy>=2"
make_venv "$ROOT/.venv-tflite" "tflite-runtime==2.14.0" "numpy<2"
