"""Scale-out for training and evaluation: torchrun + DistributedDataParallel, nothing home-made.

``torchrun --nproc_per_node N -m streamdeq_ros.tools.train ...`` (or ``streamdeq train --nproc N``,
which starts the same through torch's elastic launcher) runs one process per device. This module
holds the plumbing both use:

- :func:`setup` reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``),
  initialises the process group (NCCL on GPUs, gloo on CPU) and picks the process's device;
- :class:`ShardSampler` is torch's ``DistributedSampler`` (one permutation per epoch, rank r
  takes positions r, r + world, ...) that can start mid-epoch, so a run resumes at the exact
  global batch whatever the world size: global batch t of an epoch is positions
  ``[t * B, (t + 1) * B)`` of the permutation for any number of processes;
- :func:`launch` starts ``python -m MODULE ARGS`` N times through ``torch.distributed.run``.
"""
import argparse
from dataclasses import dataclass
import os
import sys
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class Dist:
    """This process's place in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: Optional[str]

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that writes logs, checkpoints and progress)."""
        return self.rank == 0


def setup(device: str = 'auto') -> Dist:
    """Join the process group torchrun describes (if any) and choose the device.

    ``device``: 'auto' (this process's GPU when CUDA is available, else the CPU), 'cpu' or
    'cuda'. A single process without torchrun's environment starts no process group.
    """
    if device not in ('auto', 'cpu', 'cuda'):
        raise ValueError("device must be 'auto', 'cpu' or 'cuda', got %r" % (device,))
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device cuda was asked for, but CUDA is not available')
    cuda = device != 'cpu' and torch.cuda.is_available()
    world = int(os.environ.get('WORLD_SIZE', '1'))
    local = int(os.environ.get('LOCAL_RANK', '0'))
    backend = None
    if world > 1:
        backend = 'nccl' if cuda else 'gloo'
        if cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank, world, local, torch.device('cuda', local) if cuda else
                torch.device('cpu'), backend)


def teardown():
    """Leave the process group (if one was started)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def run_in_group(prog: str, device: str, body: Callable, args) -> int:
    """Return ``body(args, dist)`` run inside the process group (left again afterwards)."""
    try:
        d = setup(device)
    except ValueError as exc:
        raise SystemExit('%s: %s' % (prog, exc))
    try:
        return body(args, d)
    finally:
        teardown()


def barrier(d: Dist):
    """Wait for every process (no-op for one)."""
    if d.world > 1:
        dist.barrier()


def mean_over_ranks(value: float, d: Dist) -> float:
    """Return the mean of a number over all processes."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64,
                     device=d.device if d.backend == 'nccl' else 'cpu')
    dist.all_reduce(t)
    return float(t.item()) / d.world


class ShardSampler(DistributedSampler):
    """``DistributedSampler`` over whole global batches, able to start at any batch of an epoch.

    Each epoch is a fresh permutation (``set_position(epoch, start_batch)`` plays the role of
    ``set_epoch``); only the first ``len(dataset) // global_batch`` global batches are used, so
    every process sees the same number of local batches.
    """

    def __init__(self, dataset: Dataset, d: Dist, global_batch: int, seed: int):
        """Shard ``dataset`` for process ``d`` in global batches of ``global_batch``."""
        if global_batch % d.world:
            raise ValueError('the batch size %d does not split over %d processes; give a '
                             'multiple of %d' % (global_batch, d.world, d.world))
        super().__init__(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                         drop_last=False)
        self.local_batch = global_batch // d.world
        self.batches = len(dataset) // global_batch
        if self.batches < 1:
            raise ValueError('the training set has %d items, fewer than one batch of %d'
                             % (len(dataset), global_batch))
        self.start = 0

    def set_position(self, epoch: int, start_batch: int = 0):
        """Serve epoch ``epoch`` from its global batch ``start_batch`` on."""
        self.set_epoch(epoch)
        self.start = start_batch

    def __iter__(self):
        """Yield this process's indices of the remaining global batches of the epoch."""
        mine = list(super().__iter__())[:self.batches * self.local_batch]
        return iter(mine[self.start * self.local_batch:])

    def __len__(self) -> int:
        """Return the number of indices still to come this epoch."""
        return (self.batches - self.start) * self.local_batch


def without_option(argv: Sequence[str], name: str) -> List[str]:
    """Return ``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + '='):
            out.append(a)
    return out


def launch(nproc: int, module: str, argv: Sequence[str]) -> int:
    """Run ``python -m module argv`` in ``nproc`` processes through torch's elastic launcher."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    config = parse_args(['--standalone', '--nproc-per-node', str(nproc), '-m', module] +
                        list(argv))
    try:
        run(config)
    except ChildFailedError as exc:
        print('%s: a process failed: %s' % (module, exc.get_first_failure()[1].message),
              file=sys.stderr)
        return 1
    return 0


def relaunch(args, module: str, prog: str) -> Optional[int]:
    """Start ``--nproc`` copies of ``module`` when asked and not already under torchrun.

    Returns their exit code, or None when this process should do the work itself.
    """
    if args.nproc < 1:
        raise SystemExit('%s: --nproc must be >= 1, got %d' % (prog, args.nproc))
    if args.nproc > 1 and 'LOCAL_RANK' not in os.environ:
        return launch(args.nproc, module, without_option(args.argv, '--nproc'))
    return None


def module_main(prog: str, doc: str, add_arguments: Callable, run: Callable,
                argv: Optional[Sequence[str]] = None) -> int:
    """``python -m`` entry of a tool: parse its options (as ``prog``) and run it."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)
