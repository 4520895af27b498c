#!/usr/bin/env bash
# The organism's table over five pretraining seeds (docs/organism.md, "Five pretraining seeds"):
# two processes, one core each, sharing one output folder; each step resumes when rerun.
#   scripts/organism_seeds.sh [OUT [OPTIONS...]]   (default OUT: runs/organism-seeds)
# OPTIONS go to every `vsfa organism seeds` call, e.g. --corpus-version 1 for the shipped base's
# corpus (the default is corpus version 3). Logs: OUT/log-a.txt, OUT/log-b.txt; the table:
# OUT/seeds.md and OUT/seeds.json.
set -euo pipefail
out="${1:-runs/organism-seeds}"
shift || true
mkdir -p "$out"
export OMP_NUM_THREADS=1
# the world data and VSFA sets once, before the two processes share them
python -c "from pathlib import Path; from interp.organism.seeds import world_sets; world_sets(Path('$out'))"
vsfa organism seeds -o "$out" --seeds 1,0,4 "$@" >"$out/log-a.txt" 2>&1 &
vsfa organism seeds -o "$out" --seeds 2,3 "$@" >"$out/log-b.txt" 2>&1 &
wait
vsfa organism seeds -o "$out" --table-only "$@"
