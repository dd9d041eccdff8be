"""``streamdeq bench cudagraph``: the fixed-M loop replayed from a CUDA graph against eager (CUDA).

A camera stream has static shapes, so the M applications of f of a frame can be captured once
in a CUDA graph (``torch.cuda.graph``) and replayed for every later frame: the state and the
injection are copied into the graph's static inputs, and one replay launches every kernel of
the M iterations without Python in between. The injection (``inject``), the tolerance,
partial results and the deadline are not in the graph; a graphed frame runs exactly M.

For each M in ``--iters`` the bench streams ``--frames`` frames of a held-out street clip at the
model's input size, batch ``--batch``, eagerly and from the graph, interleaved, and reports
per-frame milliseconds (median) and the largest difference between the two states after the
last frame. It exits 1 when that difference is above ``--atol`` (the graph would be wrong), and
2 without a CUDA device.
"""
import json
import os
import time

import numpy as np

from .node import add_checkpoint_option
from ...models import resolve_checkpoint

PREFIX = 'streamdeq bench cudagraph'


class GraphedLoop:
    """M applications of ``backbone.f`` captured for one injection shape."""

    def __init__(self, backbone, u_shape, iters: int, device):
        """Capture the loop for injections of ``u_shape`` (batch included)."""
        import torch
        from torch.nn.utils import parametrize
        self.iters = iters
        self.u0 = torch.zeros(u_shape, device=device)
        self.u = [self.u0] + [None] * (backbone.cfg.num_branches - 1)
        self.z = backbone.zeros(self.u)

        def loop():
            z = self.z
            for _ in range(iters):
                z = backbone.f(z, self.u)
            return z

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), parametrize.cached(), torch.cuda.stream(side):
            for _ in range(3):                      # warm-up off the capture, as torch asks
                loop()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), parametrize.cached(), torch.cuda.graph(self.graph):
            self.out = loop()

    def __call__(self, z, u0):
        """Return f^M(z; u) for a state ``z`` and injection ``u0`` of the captured shapes."""
        self.u0.copy_(u0)
        for static, t in zip(self.z, z):
            static.copy_(t)
        self.graph.replay()
        return [t.clone() for t in self.out]


def run(args) -> int:
    """Time eager against graphed frames for each M; check they agree."""
    import torch
    from torch.nn.utils import parametrize

    from ...data.clips import street_clips
    from ...model.checkpoint import load_net
    if not torch.cuda.is_available():
        print('%s: CUDA graphs need a CUDA device; torch.cuda.is_available() is False here'
              % PREFIX)
        return 2
    net, card = load_net(resolve_checkpoint(args.checkpoint), 'cuda')
    backbone = net.backbone
    h, w = card['input']['height'], card['input']['width']
    clip = street_clips(1, h, w, seed=args.seed, split='test')[0]
    frames = [net.normalize(torch.from_numpy(f).permute(2, 0, 1)[None].cuda())
              .expand(args.batch, -1, -1, -1).contiguous() for f in clip.frames[:args.frames]]
    rows = []
    for m in args.iters:
        with torch.no_grad():
            u_shape = backbone.inject(frames[0])[0].shape
        graphed = GraphedLoop(backbone, u_shape, m, 'cuda')
        times = {'eager': [], 'graph': []}
        states = {}
        for mode in ('eager', 'graph', 'eager', 'graph'):
            with torch.no_grad(), parametrize.cached():
                z = None
                for x in frames:
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    u = backbone.inject(x)
                    z = backbone.zeros(u) if z is None else z
                    if mode == 'eager':
                        for _ in range(m):
                            z = backbone.f(z, u)
                    else:
                        z = graphed(z, u[0])
                    torch.cuda.synchronize()
                    times[mode].append((time.perf_counter() - t0) * 1e3)
            states[mode] = z
        diff = max(float((a - b).abs().max()) for a, b in zip(states['eager'], states['graph']))
        rows.append({'iters': m, 'eager_ms': round(float(np.median(times['eager'])), 3),
                     'graph_ms': round(float(np.median(times['graph'])), 3),
                     'max_abs_diff': diff})
        print('M=%d: eager %.2f ms, graph %.2f ms per frame (batch %d), max |diff| %.2e'
              % (m, rows[-1]['eager_ms'], rows[-1]['graph_ms'], args.batch, diff))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump({'checkpoint': args.checkpoint or 'default', 'batch': args.batch,
                   'device': torch.cuda.get_device_name(0), 'rows': rows}, fh, indent=1)
    bad = [r for r in rows if not r['max_abs_diff'] <= args.atol]
    if bad:
        print('%s: the graphed state differs from eager by %.2e at M=%d (more than --atol %g)'
              % (PREFIX, bad[0]['max_abs_diff'], bad[0]['iters'], args.atol))
        return 1
    return 0


def add_arguments(p):
    """Add the benchmark's options."""
    add_checkpoint_option(p)
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4, 8], help='M values')
    p.add_argument('--frames', type=int, default=30, help='frames streamed per mode')
    p.add_argument('--batch', type=int, default=1, help='cameras in the batch')
    p.add_argument('--atol', type=float, default=1e-4, help='largest allowed state difference')
    p.add_argument('--seed', type=int, default=0, help='clip seed')
    p.add_argument('--out', default='bench/cudagraph.json', help='JSON results')
