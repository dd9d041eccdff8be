#!/usr/bin/env bash
# Keep a long training run resumable across sessions: copy its last.pt and train_log.csv from
# runs/ (ignored by git) into docs/training/ (tracked). Resume in a later session with
#   mkdir -p runs/w192/NAME && cp docs/training/w192/NAME/last.pt runs/w192/NAME/ &&
#   streamdeq train <the same options> --out runs/w192/NAME --resume
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for run in "$ROOT"/runs/w192/*/; do
  name=$(basename "$run"); dst="$ROOT/docs/training/w192/$name"
  mkdir -p "$dst"
  for f in last.pt train_log.csv; do [[ -f "$run/$f" ]] && cp "$run/$f" "$dst/"; done
done
echo "snapshot: $(ls "$ROOT"/docs/training/w192)"
