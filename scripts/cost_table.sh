#!/usr/bin/env bash
# Issue #20's cost table: what an official MDEQ model costs per camera, on this machine.
#
#   bash scripts/cost_table.sh [cpu|cuda]        # after scripts/setup_env.sh
#
# 1. `streamdeq bench solver --cost` for small and xl at 256x512, 512x1024, 1024x2048: ms per f
#    and per Broyden iteration, peak memory, state bytes per camera (random weights of the
#    released shapes; the cost does not depend on the weights);
# 2. the node with an imported-shape small (`streamdeq import-official --random-weights`) at
#    input_size 256x512, a 640x480 camera: latency at iters 1, 2, 4 with broyden and unroll.
# Results go to ${OUT:-bench}/cost_*.json and node_official_small_*.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${STREAMDEQ_VENV:-$ROOT/.venv}/bin/python"
DEVICE="${1:-cpu}"
OUT="${OUT:-$ROOT/bench}"
SUFFIX=$([ "$DEVICE" = cpu ] && echo "" || echo "_$DEVICE")
mkdir -p "$OUT"
cd "$ROOT"
for config in small xl; do
  "$PY" -m streamdeq_ros.tools.cli bench solver --cost --config "$config" --device "$DEVICE" \
    --sizes 256x512,512x1024,1024x2048 --repeats 3 --json "$OUT/cost_${config}${SUFFIX}.json" \
    2>/dev/null | grep '^|'
done
MODEL="${TMPDIR:-/tmp}/streamdeq_random_official_small"
"$PY" -m streamdeq_ros.tools.cli import-official --random-weights --config small --out "$MODEL" \
  >/dev/null
for solver in broyden unroll; do
  for iters in 1 2 4; do
    "$PY" -m streamdeq_ros.tools.cli bench node --checkpoint "$MODEL" --input-size 256 512 \
      --solver "$solver" --iters "$iters" --sizes 640x480 --subscribe class --frames 30 \
      --warmup 5 --out "$OUT/node_official_small_${solver}_M${iters}${SUFFIX}.json" \
      2>/dev/null | tail -1 | sed "s/^/$solver M=$iters /"
  done
done
