#!/usr/bin/env bash
# The peers venv for `edgesiam bench` (edgesiam/tools/bench/peers.py): .venv-peers holds the peer tools,
# each from PyPI with the weights its wheel ships, never installed into .venv:
#   resemblyzer       (speaker embeddings; pulls torch, pinned to torch==2.13.0, the local CPU wheel)
#   pyopen-wakeword   (openWakeWord's mel-spectrogram + embedding TFLite models)
#   EfficientWord-Net (ResNet-50 ONNX word embeddings)
# Each peer is installed on its own pip command line, so one that fails leaves the others; its
# outcome (ok, or the tail of pip's error) goes to .venv-peers/peers-install.json, which
# measure_peers reads to report "not installable" with the reason. Idempotent: a stamp keyed on this
# script and the Python skips the work when the venv is up to date.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/make_peers_venv.sh"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-$ROOT/.venv-peers}"
TORCH="torch==2.13.0"  # always on the same command line: an unpinned torch pulls several GB
PIP_FLAGS=(-q --disable-pip-version-check)

key="$( { cat "$SCRIPT"; echo "$ROOT $VENV $PYTHON"; } | sha1sum | cut -c1-12)"
stamp="$VENV/.peers-venv-$key"
if [ -f "$stamp" ]; then
  echo "$(basename "$VENV"): up to date"
  exit 0
fi
echo "$(basename "$VENV"): creating ..."
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || exit 1
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" numpy soundfile || exit 1

results="$VENV/peers-install.jsonl"
: > "$results"
install_peer() {  # NAME PIP-ARGS... ; FALLBACK="NOTE|PIP-ARGS..." retries without a dependency
  local name="$1"
  shift
  local log="$VENV/pip-$name.log"
  echo "  $name: pip install $* ..."
  if "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "$@" > "$log" 2>&1; then
    "$VENV/bin/python" -c 'import json,sys; print(json.dumps({"peer": sys.argv[1], "status": "ok"}))' \
      "$name" >> "$results"
  elif [ -n "${FALLBACK:-}" ] && read -r -a args <<< "${FALLBACK#*|}" \
    && echo "  $name: failed; pip install ${args[*]} ..." \
    && "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "${args[@]}" >> "$log" 2>&1; then
    "$VENV/bin/python" - "$name" "$log" "${FALLBACK%%|*}" >> "$results" <<'PY'
import json, sys
lines = [ln.strip() for ln in open(sys.argv[2], errors="replace") if ln.strip()]
errors = [ln for ln in lines if ln.startswith("ERROR") or "fatal error" in ln]
note = sys.argv[3] + " (full install failed: " + " | ".join(errors[:3])[-400:] + ")"
print(json.dumps({"peer": sys.argv[1], "status": "ok", "note": note}))
PY
  else
    echo "  $name: FAILED (see $log)"
    "$VENV/bin/python" - "$name" "$log" >> "$results" <<'PY'
import json, sys
lines = [ln.strip() for ln in open(sys.argv[2], errors="replace") if ln.strip()]
errors = [ln for ln in lines if "error" in ln.lower()] or lines
reason = "pip install failed: " + " | ".join(errors[-3:])[-600:]
print(json.dumps({"peer": sys.argv[1], "status": "not installable", "reason": reason}))
PY
  fi
}

# webrtcvad (a resemblyzer dependency) imports pkg_resources, gone from setuptools 81 on.
install_peer resemblyzer resemblyzer "$TORCH" "setuptools<81"
install_peer openwakeword pyopen-wakeword
# EfficientWord-Net requires pyaudio (microphone capture only), which builds from source against
# portaudio.h; without it, the package and the dependencies of its embedding path are enough.
FALLBACK="installed without pyaudio (microphone capture only); the embedding path needs no pyaudio|EfficientWord-Net --no-deps numpy onnxruntime soundfile requests" \
  install_peer efficientword_net EfficientWord-Net

"$VENV/bin/python" - "$results" "$VENV/peers-install.json" <<'PY'
import json, sys
rows = [json.loads(ln) for ln in open(sys.argv[1]) if ln.strip()]
json.dump({r.pop("peer"): r for r in rows}, open(sys.argv[2], "w"), indent=2)
PY
rm -f "$results"
if "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null \
  || ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  touch "$stamp"
  echo "$(basename "$VENV"): ready; see $VENV/peers-install.json"
else
  echo "$(basename "$VENV"): torch is not 2.13.0; not stamping" >&2
  exit 1
fi
