"""``streamdeq bench train``: training throughput with 1, 2, ... processes (torchrun + DDP).

For each process count in ``--nprocs`` the same training step as ``streamdeq train`` (SUR with a
fixed number of unrollings so every step costs the same, segmentation on generated street
frames, Adam, gradient clipping) runs ``--steps`` times after ``--warmup`` steps, with the
global batch ``--batch-size`` split over the processes. Reported per count: images per second
(global batch x steps / wall time), the speed-up over one process, and the peak memory of each
process (resident set on a CPU, allocated device memory on a GPU). Process counts are run in
turn, ``--repeats`` rounds interleaved; the median is reported. Writes JSON (``--out``).
"""
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import distributed


def _child(argv) -> int:
    from ...data.clips import StreetStills
    from ...data.street import CLASSES, PALETTE
    from ...model.mdeq import get_config
    from ...model.network import StreamDEQNet
    from ..objective import TrainStep
    from ..train import device_batch
    from ..training import head_specs
    cfg, h, w, batch, steps, warmup, unroll, threads, device, out = argv
    d = distributed.setup(device)
    try:
        if int(threads):
            torch.set_num_threads(int(threads))
        torch.manual_seed(0)
        net = StreamDEQNet(get_config(cfg), head_specs(['segmentation'], list(CLASSES),
                                                       PALETTE.tolist())).to(d.device).train()
        model = TrainStep(net, 'sur', 1, 1.0)
        if d.world > 1:
            model = DDP(model, device_ids=[d.local_rank] if d.device.type == 'cuda' else None)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        local = int(batch) // d.world
        data = StreetStills(local * 4, int(h), int(w), seed=d.rank)
        items = [data[i] for i in range(local)]

        def step():
            images, masks, _ = device_batch(items, net, d.device, False)
            loss = sum(model(images, masks, None, int(unroll), False).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()

        for _ in range(int(warmup)):
            step()
        distributed.barrier(d)
        if d.device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(int(steps)):
            step()
        if d.device.type == 'cuda':
            torch.cuda.synchronize()
        distributed.barrier(d)
        seconds = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if d.device.type == 'cuda'
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        stats = [None] * d.world
        mine = {'rank': d.rank, 'seconds': seconds, 'peak_mb': round(peak, 1)}
        if d.world > 1:
            dist.all_gather_object(stats, mine)
        else:
            stats = [mine]
        if d.main:
            with open(out, 'w') as fh:
                json.dump(stats, fh)
        return 0
    finally:
        distributed.teardown()


def add_arguments(p):
    """Add the benchmark's options."""
    p.add_argument('--nprocs', default='1,2', help='process counts, comma-separated')
    p.add_argument('--config', default='tiny', help='MDEQ config')
    p.add_argument('--height', type=int, default=96)
    p.add_argument('--width', type=int, default=192)
    p.add_argument('--batch-size', type=int, default=4, help='global batch')
    p.add_argument('--steps', type=int, default=10, help='timed steps')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--unroll', type=int, default=4, help='unrollings per step (fixed)')
    p.add_argument('--threads', type=int, default=1, help='torch threads per process')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    p.add_argument('--repeats', type=int, default=2, help='interleaved rounds (median)')
    p.add_argument('--out', default='bench/train.json', help='JSON results')


def run(args) -> int:
    """Run every process count, interleaved, and write the JSON."""
    counts = [int(n) for n in args.nprocs.split(',')]
    if min(counts) < 1 or any(args.batch_size % n for n in counts):
        print('streamdeq bench train: every process count must be >= 1 and divide '
              '--batch-size %d' % args.batch_size, file=sys.stderr)
        return 2
    runs = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in tqdm(range(args.repeats), desc='bench train', unit='round'):
            for n in counts:
                out = os.path.join(tmp, '%d-%d.json' % (n, r))
                child = [args.config, str(args.height), str(args.width), str(args.batch_size),
                         str(args.steps), str(args.warmup), str(args.unroll), str(args.threads),
                         args.device, out]
                code = distributed.launch(n, __spec__.name, ['--child'] + child)
                if code:
                    return code
                with open(out) as fh:
                    runs[n].append(json.load(fh))
    rows = {}
    for n, rounds in runs.items():
        seconds = statistics.median(max(s['seconds'] for s in st) for st in rounds)
        rows[str(n)] = {'images_per_s': round(args.batch_size * args.steps / seconds, 2),
                        'seconds_per_step': round(seconds / args.steps, 4),
                        'peak_mb_per_process': [max(st[k]['peak_mb'] for st in rounds)
                                                for k in range(n)]}
    base = rows[str(counts[0])]['images_per_s']
    for row in rows.values():
        row['speedup'] = round(row['images_per_s'] / base, 2)
    result = {'config': args.config, 'height': args.height, 'width': args.width,
              'batch_size': args.batch_size, 'steps': args.steps, 'unroll': args.unroll,
              'threads_per_process': args.threads, 'device': args.device,
              'cpu_count': os.cpu_count(), 'repeats': args.repeats, 'nprocs': rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(result, fh, indent=1)
    print('| processes | images/s | speed-up | peak memory per process (MB) |')
    print('|---|---|---|---|')
    for n, row in rows.items():
        peaks = ', '.join('%.0f' % m for m in row['peak_mb_per_process'])
        print('| %s | %.2f | %.2f | %s |' % (n, row['images_per_s'], row['speedup'], peaks))
    return 0


if __name__ == '__main__' and len(sys.argv) > 1 and sys.argv[1] == '--child':
    sys.exit(_child(sys.argv[2:]))
