"""A stand-in for Coral's ``edgetpu_compiler`` (which runs only on x86 Debian with its apt
repository): a script that records its arguments and writes what the real one writes, so the
compile step is tested anywhere."""

from __future__ import annotations

from pathlib import Path

FAKE_COMPILER = """#!/usr/bin/env bash
# A stand-in for Coral's edgetpu_compiler: records its arguments, copies the model.
echo "$@" >> "{calls}"
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--out_dir) out="$2"; shift 2 ;;
    -s|--show_operations) shift ;;
    *) model="$1"; shift ;;
  esac
done
name=$(basename "$model" .tflite)
cp "$model" "$out/${{name}}_edgetpu.tflite"
echo "compiler log" > "$out/${{name}}_edgetpu.log"
cat <<EOF
Edge TPU Compiler version 16.0.384591198
Input: $model
Output: $out/${{name}}_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        2          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
Number of operations that will run on Edge TPU: 11
Number of operations that will run on CPU: 0
EOF
"""


def fake_compiler(folder: Path, text: str = FAKE_COMPILER) -> Path:
    """The script ``text`` as an executable ``edgetpu_compiler`` in ``folder``, logging its calls
    to ``calls.txt`` there."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(text.format(calls=folder / "calls.txt"))
    script.chmod(0o755)
    return script
