#!/usr/bin/env bash
# The GPU check: bench/gpu_suite.py and the gpu-marked tests under one timeout, numbers to a file.
#
#   scripts/gpu_check.sh [--tiny] [OUT]      # OUT defaults to gpu_check.txt (+ OUT's .json)
#
# Real sizes need a CUDA GPU; --tiny runs the suite's tiny configs on the CPU (where the gpu
# tests skip with their reason), to check the script itself. The whole check stops after
# GPU_CHECK_TIMEOUT seconds (default 690, under 12 minutes): the suite gets up to
# GPU_SUITE_TIMEOUT (default 480) of it, the tests the rest. OUT holds the suite's lines, the
# tests' summary and each part's exit status; it is written to a temporary name, then renamed.
set -u
TINY=()
if [ "${1:-}" = "--tiny" ]; then TINY=(--tiny); shift; fi
OUT=${1:-gpu_check.txt}
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
JSON="${OUT%.txt}.json"
TOTAL=${GPU_CHECK_TIMEOUT:-690}
SUITE_LIMIT=${GPU_SUITE_TIMEOUT:-480}
start=$(date +%s)
tmp="$OUT.partial"
{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) ${TINY[*]:-real sizes}"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  echo "## bench/gpu_suite.py"
  timeout -k 10 "$SUITE_LIMIT" "$PYTHON" bench/gpu_suite.py "${TINY[@]}" --json "$JSON" 2>&1 \
    | grep -v -e Warning -e warnings.warn
  echo "suite exit status: ${PIPESTATUS[0]}"
  left=$(( TOTAL - ($(date +%s) - start) ))
  if [ "$left" -lt 30 ]; then left=30; fi
  echo "## pytest -m gpu (${left} s left)"
  timeout -k 10 "$left" "$PYTHON" -m pytest -q -m gpu -rs -p no:cacheprovider tests/test_gpu.py \
    2>&1 | tail -n 15
  echo "tests exit status: ${PIPESTATUS[0]}"
  echo "wall seconds: $(( $(date +%s) - start ))"
} > "$tmp"
mv "$tmp" "$OUT"
cat "$OUT"
