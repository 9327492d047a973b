#!/usr/bin/env bash
# Run every atheris harness for FUZZ_SECONDS each (default 60), one after the other, and print
# libFuzzer's closing figures (executions, coverage, corpus) for each. A crash stops the run with
# the harness's exit code; the input that caused it is saved as $FUZZ_DIR/crash-<harness>-*.
#   FUZZ_SECONDS=60 FUZZ_DIR=/tmp/edgesiam-fuzz PYTHON=.venv/bin/python fuzz/run.sh [harness…]
set -euo pipefail
PYTHON=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[[ "$PYTHON" = /* ]] || PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=${FUZZ_DIR:-/tmp/edgesiam-fuzz}
HARNESSES=("$@")
[[ ${#HARNESSES[@]} -gt 0 ]] || HARNESSES=(readers sensor_payloads commands)
if ! "$PYTHON" -c "import atheris" 2>/dev/null; then
  echo "atheris is not installed in $PYTHON's environment (pip install atheris; wheels exist for" \
       "CPython 3.11 on x86_64 Linux)" >&2
  exit 2
fi
mkdir -p "$OUT"
for name in "${HARNESSES[@]}"; do
  corpus="$OUT/corpus-$name"
  PYTHONPATH="$PWD/..:$PWD" "$PYTHON" -c "from common import write_seeds; from pathlib import Path; write_seeds('$name', Path('$corpus'))"
  echo "== fuzz_$name: ${SECONDS_EACH}s, corpus $corpus"
  log="$OUT/$name.log"
  set +e
  PYTHONPATH="$PWD/..:$PWD" "$PYTHON" "fuzz_$name.py" "$corpus" \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=30 \
    -artifact_prefix="$OUT/crash-$name-" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|Done [0-9]+ runs" "$log" || tail -5 "$log"
  if [[ $rc -ne 0 ]]; then
    echo "fuzz_$name FAILED (exit $rc); the log: $log" >&2
    grep -E "Uncaught Python exception|Error|==[0-9]+==" -A12 "$log" | head -40 >&2
    exit "$rc"
  fi
done
