"""``streamdeq bench solver``: warm vs cold iterations to tolerance and the cost of one f.

Measured on a randomly initialised MDEQ backbone fed a slowly panning synthetic image, or with
``--checkpoint`` on a trained backbone fed a held-out generated street clip:

- ``cold_iters_to_tol`` / ``warm_iters_to_tol``: per frame, solver iterations until the relative
  residual falls below ``--tol``, starting from zeros vs from the previous frame's solution
  (frames 1..n-1; the mean over the frames that reached it, counted in ``*_frames_reached``;
  per-frame lists hold null where it was not reached within ``--max-iters``).
- ``ms_per_f_eval``: median wall time of one f(z; u) evaluation.
- ``gflops_per_f_eval``: FLOPs of one f evaluation counted by ``torch.utils.flop_counter``
  (convolutions; norms and activations are not counted).
- ``achieved_gflops_per_s`` next to ``conv3x3_gflops_per_s``: the second is a plain 3x3
  convolution of the size of f's largest layer (branch 0: C0 -> expansion * C0 channels at
  branch-0 resolution) timed in the same run, the practical ceiling of this machine;
  ``of_conv3x3`` is their ratio (f's efficiency).
- with ``--onnxruntime``, the same for f's exported ONNX graph under onnxruntime, same
  threads, same state (``ort_ms_per_f_eval``, ``ort_achieved_gflops_per_s``, ``ort_of_conv3x3``)
  and ``ort_max_abs_diff`` / ``ort_max_rel_diff``, its largest difference to torch's f. The
  plain conv is timed once more after it, and the faster of its two timings is the reference.
"""
import json
import multiprocessing
import os
import re
import resource
import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from ...data import panning_frames, street
from ...data.clips import derive_seed
from ...model import get_config, MDEQBackbone
from ...model.checkpoint import load_net
from ...model.solvers import SOLVERS
from ...runtime.budget import IterationBudget
from ...runtime.stream import StreamSession


def median_ms(fn, repeats: int) -> float:
    """Return the median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up."""
    fn()                                             # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _mean(values):
    got = [v for v in values if v is not None]
    return statistics.mean(got) if got else None


@torch.inference_mode()
def bench_solver(config='tiny', height=128, width=256, frames=6, tol=1e-3, max_iters=60,
                 solver='unroll', speed=0.25, repeats=10, seed=0, threads=None,
                 progress=True, checkpoint=None, onnxruntime=False) -> dict:
    """Run the solver benchmark and return its results as a dict.

    With ``checkpoint`` the trained backbone runs on a held-out generated street clip (its
    normalisation from the card); without, a randomly initialised ``config`` runs on a panning
    synthetic image. ``onnxruntime``: also time f's exported graph under onnxruntime with the
    same threads on the same state (see :func:`ort_f_timing`).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if checkpoint:
        from ...models import resolve_checkpoint
        net, card = load_net(resolve_checkpoint(checkpoint))
        model, cfg, config = net.backbone, net.cfg, net.cfg.name
        clip = street.StreetClip(derive_seed(seed, 'val', 0), height, width)
        seq = [net.normalize(torch.from_numpy(clip[t][0]).permute(2, 0, 1)[None])
               for t in range(frames)]
        weights = checkpoint
    else:
        cfg = get_config(config)
        model = MDEQBackbone(cfg).eval()
        seq = panning_frames(frames, height, width, speed=speed, seed=seed)
        weights = 'random (seed %d)' % seed
    budget = IterationBudget(iters=max_iters, tol=tol)
    warm_session = StreamSession(model, solver=solver, name='warm')
    cold_session = StreamSession(model, solver=solver, name='cold')
    cold, warm, cold_res, warm_res = [], [], [], []
    for t, x in enumerate(tqdm(seq, desc='frames', disable=not progress)):
        w = warm_session.step(x, budget)
        if t == 0:
            continue                                 # frame 0 only seeds the warm state
        cold_session.reset()
        c = cold_session.step(x, budget)
        for r, iters, res in ((c, cold, cold_res), (w, warm, warm_res)):
            iters.append(r.f_evals if r.final_residual < tol else None)
            res.append(r.final_residual)
    with parametrize.cached():
        x = seq[0]
        u = model.inject(x)
        z = model.zeros(u)
        z = model.f(z, u)
        ms_f = median_ms(lambda: model.f(z, u), repeats)
        with FlopCounterMode(display=False) as counter:
            model.f(z, u)
        gflops = counter.get_total_flops() / 1e9
    c0, e = cfg.num_channels[0], cfg.expansion
    h0, w0 = u[0].shape[-2:]
    xin = torch.randn(1, c0, h0, w0)
    weight = torch.randn(e * c0, c0, 3, 3)
    ms_conv = median_ms(lambda: F.conv2d(xin, weight, padding=1), repeats)
    conv_gflops = 2.0 * c0 * e * c0 * 9 * h0 * w0 / 1e9
    ort = ort_f_timing(model, z, u, repeats, gflops, threads) if onnxruntime else {}
    if ort:                                   # the plain conv again, after the ORT timing
        ms_conv = min(ms_conv, median_ms(lambda: F.conv2d(xin, weight, padding=1), repeats))
    conv_rate = conv_gflops / (ms_conv / 1e3)
    for key in [k for k in ort if k.endswith('achieved_gflops_per_s')]:
        ort[key.replace('achieved_gflops_per_s', 'of_conv3x3')] = ort[key] / conv_rate
    return dict(ort, **{
        'config': config, 'solver': solver, 'input': [height, width], 'tol': tol,
        'max_iters': max_iters, 'frames': frames,
        'sequence': ('generated street clip' if checkpoint else
                     'panning image, %g px/frame' % speed),
        'threads': torch.get_num_threads(), 'device': 'cpu', 'weights': weights,
        'cold_iters_to_tol': _mean(cold), 'warm_iters_to_tol': _mean(warm),
        'cold_frames_reached': sum(v is not None for v in cold),
        'warm_frames_reached': sum(v is not None for v in warm),
        'cold_iters_per_frame': cold, 'warm_iters_per_frame': warm,
        'cold_final_residual_per_frame': cold_res, 'warm_final_residual_per_frame': warm_res,
        'ms_per_f_eval': ms_f, 'gflops_per_f_eval': gflops,
        'achieved_gflops_per_s': gflops / (ms_f / 1e3),
        'conv3x3_shape': [c0, e * c0, int(h0), int(w0)],
        'conv3x3_ms': ms_conv, 'conv3x3_gflops_per_s': conv_rate,
        'of_conv3x3': gflops / (ms_f / 1e3) / conv_rate,
    })


def ort_f_timing(model, z, u, repeats: int, gflops: float, threads: Optional[int]) -> dict:
    """Time one f under onnxruntime (its graph exported from ``model``) on the same z, u.

    Returns ``ort_ms_per_f_eval``, ``ort_achieved_gflops_per_s`` (the FLOPs counted for the
    torch f; the node's session: idle threads do not spin), the same with spinning threads
    (``ort_spinning_*``: onnxruntime's own default, which the node does not use) and with
    threads that spin only within a run (``ort_spin_in_run_*``),
    ``ort_max_abs_diff`` (largest difference to torch's f on the same input) and
    ``ort_max_rel_diff`` (the same over each branch's largest magnitude, the worst branch).
    """
    import tempfile
    from ...runtime.onnx_export import export_graph, f_graph_plan
    from ...runtime.ort_backend import ort_session
    with tempfile.TemporaryDirectory(prefix='streamdeq-bench-f-') as tmp:
        path = os.path.join(tmp, 'f.onnx')
        module, args, inputs, outputs, axes = f_graph_plan(model, z, u[0])
        export_graph(module, args, path, inputs, outputs, axes)
        session = ort_session(path, threads or 0)
        spinning = ort_session(path, threads or 0, spinning='on')
        in_run = ort_session(path, threads or 0, spinning='in-run')
    feeds = dict(zip(inputs, [t.contiguous().numpy() for t in args]))
    ms = median_ms(lambda: session.run(None, feeds), repeats)
    ms_spin = median_ms(lambda: spinning.run(None, feeds), repeats)
    ms_in_run = median_ms(lambda: in_run.run(None, feeds), repeats)
    with parametrize.cached():
        ref = model.f(z, u)
    got = [torch.from_numpy(a) for a in session.run(None, feeds)]
    diff = max(float((a - r).abs().max()) for a, r in zip(got, ref))
    rel = max(float((a - r).abs().max() / r.abs().max().clamp(min=1e-30))
              for a, r in zip(got, ref))
    return {'ort_ms_per_f_eval': ms, 'ort_achieved_gflops_per_s': gflops / (ms / 1e3),
            'ort_max_abs_diff': diff, 'ort_max_rel_diff': rel, 'ort_threads': threads or 0,
            'ort_spinning_ms_per_f_eval': ms_spin,
            'ort_spinning_achieved_gflops_per_s': gflops / (ms_spin / 1e3),
            'ort_spin_in_run_ms_per_f_eval': ms_in_run,
            'ort_spin_in_run_achieved_gflops_per_s': gflops / (ms_in_run / 1e3)}


def _rss_bytes() -> int:
    """Return this process's resident memory now (Linux /proc)."""
    with open('/proc/self/statm') as fh:
        return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rss_bytes() -> int:
    """Return this process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_bytes(device: str, peak: bool) -> int:
    """Return the memory in use now or at its peak: allocated on CUDA, resident on the CPU."""
    if device.startswith('cuda'):
        return (torch.cuda.max_memory_allocated if peak else torch.cuda.memory_allocated)(device)
    return _peak_rss_bytes() if peak else _rss_bytes()


def _timed_ms(fn, repeats: int, device: str) -> float:
    def run():
        fn()
        if device.startswith('cuda'):
            torch.cuda.synchronize(device)
    return median_ms(run, repeats)


def _broyden_iter_ms(f, z0, iters: int, repeats: int, device: str) -> list:
    """Wall times of Broyden iterations 2..``iters`` (f + the low-rank update), ``repeats`` solves.

    Timed between the solver's per-iteration callbacks (each reads the residual, which waits
    for the device), so the first iteration's set-up and the closing copy are not in them.
    """
    times = []
    for _ in range(repeats):
        marks = []
        SOLVERS['broyden'](f, z0, iters, callback=lambda k, z, r: marks.append(
            time.perf_counter()) and False)
        times += [(b - a) * 1e3 for a, b in zip(marks, marks[1:])]
    return times


@torch.inference_mode()
def _cost_at(config: str, height: int, width: int, iters: int, repeats: int, seed: int,
             device: str, threads: Optional[int]) -> dict:
    """One size of :func:`bench_cost`, in a process of its own (so its peak memory is its own)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = get_config(config)
    model = MDEQBackbone(cfg).eval().to(device)
    x = torch.rand(1, 3, height, width, device=device)
    with parametrize.cached():
        u = model.inject(x)
        z0 = model.zeros(u)
        f = lambda z: model.f(z, u)                  # noqa: E731  (the session's f)
        state = sum(t.numel() * t.element_size() for t in z0)
        n = sum(t.numel() for t in z0)
        if device.startswith('cuda'):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        base = _memory_bytes(device, peak=False)
        ms_f = _timed_ms(lambda: f(z0), repeats, device)
        peak_f = _memory_bytes(device, peak=True) - base
        iter_ms = _broyden_iter_ms(f, z0, iters, repeats, device)
        peak_b = _memory_bytes(device, peak=True) - base
    return {
        'input': [height, width], 'state_shapes': [list(t.shape[1:]) for t in z0],
        'state_bytes_per_camera': state,
        'ms_per_f_eval': ms_f, 'ms_per_broyden_iter': statistics.median(iter_ms),
        'broyden_iter_ms': iter_ms,
        'peak_mb_f_eval': max(peak_f, 0) / 2 ** 20,
        'peak_mb_broyden_%d' % iters: max(peak_b, 0) / 2 ** 20,
        'broyden_history_mb': {str(m): 2 * n * m * 4 / 2 ** 20
                               for m in sorted({1, 2, 4, 8, iters, cfg.f_thres})},
    }


def bench_cost(config='small', sizes=((256, 512), (512, 1024), (1024, 2048)), iters=4,
               repeats=3, seed=0, device='cpu', threads=None, progress=True) -> dict:
    """Measure one camera's cost per size: ms per f and per Broyden iteration, memory, state.

    Random weights of ``config``'s shapes on a random image (the cost does not depend on the
    weights). Each size runs in a fresh process, so ``peak_mb_*`` (peak resident memory above
    the process's level after building the model, the input, its injection and the zero
    state; on CUDA the peak allocated device memory above the allocated level) is that size's
    own: the f working set (weights' cache, activations), then a Broyden solve of ``iters``.
    ``ms_per_broyden_iter``: the median of Broyden iterations 2..``iters`` (f plus the low-rank
    update), timed between the solver's callbacks. ``broyden_history_mb``: the two n x m
    matrices a solve of m iterations holds (computed; n = the state's size), dropped after
    the frame.
    """
    ctx = multiprocessing.get_context('spawn')
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for h, w in tqdm(sizes, desc='sizes', disable=not progress):
            rows.append(pool.apply(_cost_at, (config, h, w, iters, repeats, seed, device,
                                              threads)))
    return {'config': config, 'device': device, 'iters': iters, 'repeats': repeats,
            'threads': threads or torch.get_num_threads(), 'weights': 'random (seed %d)' % seed,
            'f_thres': get_config(config).f_thres, 'sizes': rows}


def add_arguments(parser):
    """Arguments of ``streamdeq bench solver``."""
    parser.add_argument('--config', default='tiny', help='MDEQ config: tiny, small, large or xl')
    parser.add_argument('--height', type=int, default=128, help='input height in pixels')
    parser.add_argument('--width', type=int, default=256, help='input width in pixels')
    parser.add_argument('--frames', type=int, default=6, help='frames in the panning sequence')
    parser.add_argument('--tol', type=float, default=1e-3, help='relative residual tolerance')
    parser.add_argument('--max-iters', type=int, default=60, help='iteration cap per solve')
    parser.add_argument('--solver', choices=sorted(SOLVERS), default='unroll')
    parser.add_argument('--speed', type=float, default=0.25, help='pan speed, pixels/frame')
    parser.add_argument('--repeats', type=int, default=10, help='timing repeats (median)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='also write the results to this file')
    parser.add_argument('--cost', action='store_true',
                        help='the cost table instead: per --sizes, ms per f and per Broyden '
                             'iteration, peak memory, state bytes per camera')
    parser.add_argument('--sizes', default='256x512,512x1024,1024x2048',
                        help='--cost: input sizes HxW, comma-separated')
    parser.add_argument('--cost-iters', type=int, default=4,
                        help='--cost: Broyden iterations of the timed solve')
    parser.add_argument('--device', default='cpu', help='--cost: cpu or cuda')
    parser.add_argument('--onnxruntime', action='store_true',
                        help="also time f's exported graph under onnxruntime (same threads, "
                             'same state; outputs compared to torch)')
    parser.add_argument('--checkpoint', default=None,
                        help='a trained checkpoint: its backbone runs on a generated street clip '
                             '(--config and --speed are then ignored)')


def size_list(text: str) -> list:
    """Return ``AxB[,AxB...]`` as pairs of positive integers; [] when it is not that."""
    try:
        sizes = [tuple(int(v) for v in item.split('x')) for item in text.split(',')]
    except ValueError:
        return []
    return sizes if all(len(s) == 2 and min(s) > 0 for s in sizes) else []


def _parse_sizes(text: str):
    sizes = size_list(text)
    if not sizes or any(min(s) < 32 or s[0] % 32 or s[1] % 32 for s in sizes):
        raise SystemExit('streamdeq bench solver: --sizes takes HxW[,HxW...] in positive '
                         'multiples of 32, got %r' % text)
    return sizes


def _check_args(args):
    """Refuse, in one sentence each, what would otherwise fail deep inside a run."""
    prog = 'streamdeq bench solver'
    if not args.checkpoint:
        try:
            get_config(args.config)
        except ValueError as exc:
            raise SystemExit('%s: --config: %s' % (prog, exc))
    if args.repeats < 1:
        raise SystemExit('%s: --repeats must be at least 1, got %d' % (prog, args.repeats))
    if not re.fullmatch(r'cpu|cuda(:\d+)?', args.device):
        raise SystemExit('%s: --device takes cpu, cuda or cuda:N, got %r' % (prog, args.device))
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('%s: --device %s, but torch sees no CUDA device' % (prog, args.device))
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise SystemExit('%s: --json %r: its folder does not exist' % (prog, args.json))


def run_cost(args) -> int:
    """``streamdeq bench solver --cost``: print and write the cost table."""
    if args.cost_iters < 2:
        raise SystemExit('streamdeq bench solver: --cost-iters must be at least 2 (iterations '
                         '2.. are timed)')
    out = bench_cost(args.config, _parse_sizes(args.sizes), args.cost_iters, args.repeats,
                     args.seed, args.device, args.threads)
    k = args.cost_iters
    print('| %s input | ms per f | ms per Broyden iteration | peak MB, f | peak MB, Broyden %d '
          '| state per camera | Broyden history, %d / %d iterations |'
          % (args.config, k, k, out['f_thres']))
    print('|---|---|---|---|---|---|---|')
    for r in out['sizes']:
        hist = r['broyden_history_mb']
        print('| %dx%d | %.1f | %.1f | %.0f | %.0f | %.2f MB | %.0f / %.0f MB |' % (
            r['input'][0], r['input'][1], r['ms_per_f_eval'], r['ms_per_broyden_iter'],
            r['peak_mb_f_eval'], r['peak_mb_broyden_%d' % k],
            r['state_bytes_per_camera'] / 2 ** 20, hist[str(k)], hist[str(out['f_thres'])]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print('wrote', args.json)
    return 0


def run(args) -> int:
    """Entry point for the parsed arguments."""
    _check_args(args)
    if args.cost:
        return run_cost(args)
    out = bench_solver(config=args.config, height=args.height, width=args.width,
                       frames=args.frames, tol=args.tol, max_iters=args.max_iters,
                       solver=args.solver, speed=args.speed, repeats=args.repeats,
                       seed=args.seed, threads=args.threads, checkpoint=args.checkpoint,
                       onnxruntime=args.onnxruntime)
    keys = ('cold_iters_to_tol', 'warm_iters_to_tol', 'cold_frames_reached',
            'warm_frames_reached', 'ms_per_f_eval', 'gflops_per_f_eval',
            'achieved_gflops_per_s', 'conv3x3_gflops_per_s', 'of_conv3x3')
    keys += tuple(k for k in out if k.startswith('ort_'))
    for k in keys:
        v = out[k]
        text = 'not reached (see per-frame residuals)' if v is None else '%.4g' % v
        print('%-24s %s' % (k, text))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print('wrote', args.json)
    return 0
