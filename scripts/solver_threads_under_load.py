"""In-process frame time of the default model at 1 and 2 threads beside 0-2 busy processes.

For each load (0, 1, 2 outside ``while True: pass`` processes) and each OMP_WAIT_POLICY
(unset, PASSIVE), runs one child process per thread count that streams 30 frames of 640x480
through FramePipeline (iters 2, segmentation read) and prints the median and p95 frame time and
the median process CPU time per frame. Rounds are interleaved. docs/benchmarks.md "A busy
computer".
Usage: .venv/bin/python scripts/solver_threads_under_load.py [--rounds 2] [--frames 30]
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, torch
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.runtime.budget import IterationBudget
threads, frames = int(sys.argv[1]), int(sys.argv[2])
net, card = load_net(bundled_checkpoint())
pipe = FramePipeline(net, card, None, 'unroll', IterationBudget(2))
session = pipe.new_session('a')
img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
torch.set_num_threads(threads)
walls, cpus = [], []
with torch.inference_mode():
    for k in range(frames + 5):
        c0, t0 = time.process_time(), time.perf_counter()
        pipe.process(session, img, heads=['segmentation'])
        if k >= 5:
            walls.append((time.perf_counter() - t0) * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
print(json.dumps([float(np.median(walls)), float(np.percentile(walls, 95)),
                  float(np.median(cpus))]))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--frames', type=int, default=30)
    args = p.parse_args()
    print('| busy processes | OMP_WAIT_POLICY | threads | median ms | p95 ms | CPU ms |')
    print('|---|---|---|---|---|---|')
    for load in (0, 1, 2):
        hogs = [subprocess.Popen([sys.executable, '-c', 'while True:\n    pass'])
                for _ in range(load)]
        try:
            rows = {}
            for _ in range(args.rounds):
                for policy in ('', 'PASSIVE'):
                    for threads in (1, 2):
                        env = dict(os.environ)
                        env.pop('OMP_WAIT_POLICY', None)
                        if policy:
                            env['OMP_WAIT_POLICY'] = policy
                        out = subprocess.run([sys.executable, '-c', CHILD, str(threads),
                                              str(args.frames)], env=env, check=True,
                                             capture_output=True, text=True).stdout
                        rows.setdefault((policy, threads), []).append(json.loads(out))
            for (policy, threads), got in rows.items():
                med = [sorted(col)[len(col) // 2] for col in zip(*got)]
                print('| %d | %s | %d | %.1f | %.1f | %.1f |' % (load, policy or 'unset',
                                                                 threads, *med))
        finally:
            for h in hogs:
                h.kill()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
