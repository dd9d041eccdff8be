#!/bin/bash
# The measurements behind issue #23's README and docs numbers (2-core CPU, quiet machine).
# Usage: bash scripts/measure_issue23.sh [solver|streaming]   (repository root, after setup)
set -euo pipefail
S=.venv/bin/streamdeq
if [ "${1:-}" != "streaming" ]; then
  $S bench solver --checkpoint multi_192_sur --height 192 --width 384 --threads 2 --repeats 50 \
      --onnxruntime --json bench/f_efficiency_multi_192_sur.json
  $S bench solver --config small --height 256 --width 512 --threads 2 --repeats 20 \
      --onnxruntime --json bench/f_efficiency_small.json
  .venv/bin/python scripts/ort_spinning_under_load.py --rounds 2 --frames 30
  [ "${1:-}" = "solver" ] && exit 0
  for b in torch onnxruntime; do
    $S bench node --checkpoint multi_192_sur --backend $b --sizes 640x480 --subscribe all \
        --frames 60 --threads 2 --out bench/node_multi_192_sur_backend_$b.json
  done
fi
if [ "${1:-}" = "streaming" ] || [ "${1:-}" = "" ]; then
  need_peer() {  # weights path, minutes here, train-peer arguments
    if [ ! -f "$1" ]; then
      echo "$1 is missing: train the peer first ($2 min here, both can run at once):" >&2
      echo "  $S train-peer $3" >&2
      return 1
    fi
  }
  ok=0
  need_peer runs/peers/lraspp/model.pt 46 \
      "--peer lraspp --steps 6500 --lr 1e-3 --val-every 500 --threads 1 --seed 0 --out runs/peers/lraspp" || ok=1
  need_peer runs/peers/fasterrcnn/model.pt 65 \
      "--peer fasterrcnn --steps 3000 --lr 1e-3 --val-every 250 --threads 1 --seed 0 --out runs/peers/fasterrcnn" || ok=1
  [ $ok = 0 ] || exit 1
  $S eval-streaming --model MT-192=multi_192_sur --model MT-96=multi_tiny_sur \
      --peer LR-ASPP=runs/peers/lraspp/model.pt --peer FRCNN=runs/peers/fasterrcnn/model.pt \
      --rates 10 15 30 --clips 8 --duration 3 \
      --repeats 2 --threads 2 --out docs/results/streaming --readme README.md
fi
