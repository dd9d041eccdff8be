#!/usr/bin/env bash
# The CUDA checks in one go, for the day a GPU is lent (issue #12). Without a GPU it says so
# and exits 0. Results go to ${OUT:-gpu_check}/ (JSON from each bench, logs).
#
#   bash scripts/gpu_check.sh            # after scripts/setup_env.sh
#
# 1. the tests that take a CUDA path when CUDA is there (sessions on the device, parameters);
# 2. latency against iters on the GPU (bench node: the node over DDS against in-process);
# 3. 1 / 4 / 8 cameras batched and one at a time (bench cameras), both bundled models;
# 4. the onnxruntime backend (its CUDA provider needs the onnxruntime-gpu wheel);
# 5. the reactive and predictive deadline rules under a CPU hog (bench deadline, 20 ms);
# 6. the fixed-M loop captured in a CUDA graph against eager, batch 1 and 8 (bench cudagraph;
#    written without a GPU to run it on: it checks its own states against eager);
# 7. issue #20's cost table on the GPU (scripts/cost_table.sh cuda: official small and xl
#    shapes at 256x512..1024x2048, the node with an imported-shape small, broyden and unroll).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${STREAMDEQ_VENV:-$ROOT/.venv}/bin/python"
OUT="${OUT:-$ROOT/gpu_check}"
mkdir -p "$OUT"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check"
  exit 0
fi
"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print("gpu_check:", p.name,
  "%.1f GiB" % (p.total_memory / 2**30), "torch", torch.__version__)' | tee "$OUT/device.txt"
status=0
cd "$ROOT"
"$PY" -m pytest -q test/test_stream.py test/test_stream_batch.py test/test_pipeline.py \
  test/test_node_batch.py test/test_cuts.py 2>&1 | tee "$OUT/tests.log" | tail -3 || status=1
for model in multi_tiny_sur multi_192_sur; do
  for iters in 1 2 4 8; do
    "$PY" -m streamdeq_ros.tools.cli bench node --checkpoint "$model" --iters "$iters" \
      --subscribe class --frames 60 --out "$OUT/node_${model}_M${iters}.json" 2>/dev/null \
      | tail -1 || status=1
  done
  "$PY" -m streamdeq_ros.tools.cli bench cameras --checkpoint "$model" --cameras 1,4,8 \
    --seconds 6 --rounds 2 --out "$OUT/cameras_${model}.json" 2>/dev/null | grep '^|' \
    || status=1
done
"$PY" -c 'import onnxruntime as o; print("gpu_check: onnxruntime providers", o.get_available_providers())'
"$PY" -m streamdeq_ros.tools.cli bench node --checkpoint multi_tiny_sur --backend onnxruntime \
  --subscribe class --frames 60 --out "$OUT/node_multi_tiny_sur_onnxruntime.json" 2>/dev/null \
  | tail -2 || status=1
"$PY" -m streamdeq_ros.tools.cli bench deadline --deadline-ms 20 --duration 45 \
  --out "$OUT/deadline.json" --plot "$OUT/deadline.png" 2>/dev/null | grep '^|' || status=1
for batch in 1 8; do
  "$PY" -m streamdeq_ros.tools.cli bench cudagraph --batch "$batch" \
    --out "$OUT/cudagraph_b${batch}.json" || status=1
done
OUT="$OUT" bash scripts/cost_table.sh cuda 2>&1 | tee "$OUT/cost_table.log" || status=1
echo "gpu_check: results in $OUT (exit $status)"
exit $status
