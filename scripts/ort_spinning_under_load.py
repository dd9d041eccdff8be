"""Whole frames of the default model under onnxruntime, each way of waiting, beside busy processes.

For each load (0, 1, 2 outside ``while True: pass`` processes) and each ``spinning`` mode of
``runtime.ort_backend.ort_session`` ('off', the node's; 'on', onnxruntime's default; 'in-run',
spinning only within a run), runs one child process that streams frames of 640x480 through
FramePipeline (2 threads, iters 4, every head read) at 10 Hz and prints the median and p95 frame
time and the process CPU time per frame, the 100 ms between frames included (what spinning costs
the rest of the computer). Rounds are interleaved. docs/benchmarks.md "f's efficiency".
Usage: .venv/bin/python scripts/ort_spinning_under_load.py [--rounds 2] [--frames 30]
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import functools, json, sys, time
import numpy as np, torch
import streamdeq_ros.runtime.ort_backend as ort_backend
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.runtime.budget import IterationBudget
from streamdeq_ros.runtime.pipeline import FramePipeline
mode, frames = sys.argv[1], int(sys.argv[2])
ort_backend.ort_session = functools.partial(ort_backend.ort_session, spinning=mode)
torch.set_num_threads(2)
net, card = ort_backend.ort_net(bundled_checkpoint(), threads=2)
pipe = FramePipeline(net, card, None, 'unroll', IterationBudget(4))
session = pipe.new_session('a')
img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
heads = ['segmentation', 'detection', 'pose']
walls = []
with torch.inference_mode():
    for _ in range(5):
        pipe.process(session, img, heads=heads)
    c0, start = time.process_time(), time.perf_counter()
    for k in range(frames):
        t0 = time.perf_counter()
        pipe.process(session, img, heads=heads)
        t1 = time.perf_counter()
        walls.append((t1 - t0) * 1e3)
        time.sleep(max(0.0, start + (k + 1) * 0.1 - t1))
    cpu = (time.process_time() - c0) * 1e3 / frames
print(json.dumps([float(np.median(walls)), float(np.percentile(walls, 95)), cpu]))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--frames', type=int, default=30)
    args = p.parse_args()
    print('| busy processes | spinning | median ms | p95 ms | CPU ms per frame |')
    print('|---|---|---|---|---|')
    for load in (0, 1, 2):
        hogs = [subprocess.Popen([sys.executable, '-c', 'while True:\n    pass'])
                for _ in range(load)]
        try:
            rows = {}
            for _ in range(args.rounds):
                for mode in ('off', 'on', 'in-run'):
                    out = subprocess.run([sys.executable, '-c', CHILD, mode, str(args.frames)],
                                         check=True, capture_output=True, text=True).stdout
                    rows.setdefault(mode, []).append(json.loads(out.strip().splitlines()[-1]))
            for mode, got in rows.items():
                med = [sorted(col)[len(col) // 2] for col in zip(*got)]
                print('| %d | %s | %.1f | %.1f | %.1f |' % (load, mode, *med), flush=True)
        finally:
            for h in hogs:
                h.kill()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
