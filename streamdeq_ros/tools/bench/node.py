"""``streamdeq bench node``: what the node costs over the same model called in-process.

``streamdeq_node`` runs as its own process (one camera, reliable input, the given model and
``iters``). For each frame size, the bench sends held-out street frames resized to that size
one at a time over DDS and, in between, runs the same frame through its own
:class:`~streamdeq_ros.runtime.pipeline.FramePipeline` session in this process (interleaved, so
both see the same machine). Per frame it records:

- ``node_ms``: the node's own latency (``~/status``: from taking the frame to the last output
  published), with its stages (``wait``, ``convert``, ``prepare``, ``solve``, ``partials``,
  ``heads``, ``messages``, ``publish``);
- ``end_to_end_ms``: from publishing the frame here to receiving its refined class mask here
  (DDS both ways included; both ends use the Fast DDS profile for large frames, as
  ``perception.launch.py`` does, unless ``FASTDDS_DEFAULT_PROFILES_FILE`` is already set);
- ``node_threads_mean`` beside ``in_process_threads``: the mean solver threads the node's
  adaptive policy chose (``~/status``) and this process's torch threads (``--threads``);
- ``in_process_ms``: ``FramePipeline.process`` on the same frame with the same partial
  iterations the node ran and the same work (resize, the cut detector the node runs by
  default, solve, the heads the node read for the subscribed topics), on the device the node
  picks (CUDA when available; then also the peak device memory).

Subscriptions (``--subscribe``): ``class`` (the refined class mask only) or ``all`` (every
output topic, partial ones and the overlay included). Medians go to ``--out`` (JSON) and a
table is printed; ``overhead`` = node_ms / in_process_ms - 1.
"""
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm

from ..harness import exit_reason, private_domain_env, profile_path, start_node, stop_node
from ...models import resolve_checkpoint
from ...runtime.backends import BACKENDS

TOPIC = '/streamdeq_bench_node/image'
STAGES = ('wait', 'convert', 'prepare', 'solve', 'partials', 'heads', 'queue', 'mask',
          'messages', 'publish')


def bench_frames(width: int, height: int, n: int, seed: int = 0) -> list:
    """Return ``n`` consecutive held-out street frames resized to ``width`` x ``height``."""
    from ...data.clips import street_clips
    frames = []
    k = 0
    while len(frames) < n:
        clip = street_clips(1, 96, 192, seed=seed + k, split='test')[0]
        frames += [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
                   for f in clip.frames]
        k += 1
    return frames[:n]


def _run_size(width, height, args, checkpoint):
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String
    from vision_msgs.msg import Detection2DArray

    import torch

    from ...runtime.backends import open_net
    from ...runtime.cuts import CutDetector
    from ...runtime.pipeline import FramePipeline
    from ...ros.image_conv import fill_image
    from ...runtime.tracking import IoUTracker

    device = 'cuda' if torch.cuda.is_available() else 'cpu'     # what the node's 'auto' picks
    size = tuple(args.input_size) if args.input_size else None
    net, card, device, runtime = open_net(checkpoint, args.backend, device, size)
    if not runtime.startswith('torch'):
        device = runtime
    pipeline = FramePipeline(net, card, input_size=size, solver=args.solver or None)
    session, tracker, cuts = pipeline.new_session('in-process'), IoUTracker(), CutDetector()
    # the heads the node reads for the subscribed topics (class mask only: segmentation)
    heads = ['segmentation'] if args.subscribe == 'class' else None
    frames = bench_frames(width, height, args.frames + args.warmup)
    params = {'checkpoint': checkpoint, 'iters': args.iters, 'backend': args.backend,
              'input_qos': 'reliable', 'publish_partial': 'true'}
    if args.solver:
        params['solver'] = args.solver
    if size:
        params['input_size'] = '[%d, %d]' % size
    log = os.path.join(tempfile.mkdtemp(prefix='streamdeq_bench_node_'), 'node.log')
    proc = start_node([TOPIC], params, log=log)
    rclpy.init()
    node = Node('bench_node_client')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    status, masks = {}, {}
    node.create_subscription(String, '/streamdeq/status', lambda m: status.__setitem__(
        tuple(json.loads(m.data)['stamp']), json.loads(m.data)), 50)
    node.create_subscription(Image, '/streamdeq/segmentation/class_mask', lambda m: masks.
                             __setitem__((m.header.stamp.sec, m.header.stamp.nanosec),
                                         time.perf_counter()), reliable)
    if args.subscribe == 'all':
        for stage in ('', 'partial/'):
            for kind, topic in ((Image, 'segmentation/color_mask'),
                                (Detection2DArray, 'detections'),
                                (Detection2DArray, 'keypoints/persons'),
                                (PointCloud2, 'keypoints')):
                node.create_subscription(kind, '/streamdeq/' + stage + topic,
                                         lambda m: None, reliable)
        node.create_subscription(Image, '/streamdeq/partial/segmentation/class_mask',
                                 lambda m: None, reliable)
        node.create_subscription(Image, '/streamdeq/overlay', lambda m: None, reliable)
    pub = node.create_publisher(Image, TOPIC, reliable)
    rows = []
    try:
        deadline = time.monotonic() + 120
        while pub.get_subscription_count() < 1 or node.count_publishers(
                '/streamdeq/segmentation/class_mask') < 1:
            reason = exit_reason(proc, log)
            if reason:
                raise RuntimeError(reason)
            if time.monotonic() > deadline:
                raise RuntimeError('the node did not come up within 120 s (its log: %s)' % log)
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(1.0)                  # let every match settle on both sides
        for t, rgb in enumerate(tqdm(frames, desc='%dx%d %s' % (width, height, args.subscribe),
                                     leave=False)):
            msg = fill_image(Image(), rgb, 'rgb8')
            key = (t + 1, 0)
            msg.header.stamp.sec = key[0]
            sent = time.perf_counter()
            pub.publish(msg)
            end = time.monotonic() + 30
            while (key not in status or key not in masks) and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)
            if key not in status or key not in masks:
                raise RuntimeError(exit_reason(proc, log) or 'the node did not answer frame %d '
                                   '(its log: %s)' % (t, log))
            st = status[key]
            partial_at = [st['partials'][0]] if st['partials'] else []
            t0 = time.perf_counter()
            pipeline.process(session, rgb, iters=args.iters, partial_at=partial_at,
                             on_partial=lambda out: None, tracker=tracker, cut_detector=cuts,
                             heads=heads)
            in_process = (time.perf_counter() - t0) * 1e3
            if t >= args.warmup:
                rows.append({'node_ms': st['latency_ms'],
                             'end_to_end_ms': (masks[key] - sent) * 1e3,
                             'in_process_ms': in_process,
                             'stages_ms': st['stages_ms'], 'published': st['published'],
                             'threads': st.get('threads')})
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop_node(proc)
    med = {k: float(np.median([r[k] for r in rows]))
           for k in ('node_ms', 'end_to_end_ms', 'in_process_ms')}
    med['stages_ms'] = {s: round(float(np.median([r['stages_ms'].get(s, 0.0) for r in rows])), 3)
                        for s in STAGES}
    med['overhead'] = round(med['node_ms'] / med['in_process_ms'] - 1, 4)
    med['end_to_end_overhead'] = round(med['end_to_end_ms'] / med['in_process_ms'] - 1, 4)
    threads = [r['threads'] for r in rows if r['threads'] is not None]
    med['node_threads_mean'] = round(float(np.mean(threads)), 2) if threads else None
    med['in_process_threads'] = torch.get_num_threads()
    med.update(width=width, height=height, subscribe=args.subscribe, frames=len(rows),
               solver=pipeline.solver, input_size=list(pipeline.input_size),
               published=rows[-1]['published'], device=device)
    if device == 'cuda':       # torch on the GPU
        med['in_process_peak_device_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return med


def add_arguments(p):
    """Add the benchmark's options."""
    add_checkpoint_option(p)
    p.add_argument('--sizes', default='640x480,1280x720', help='camera WxH list')
    p.add_argument('--subscribe', default='class,all',
                   help="comma list of 'class' (refined class mask only) and 'all'")
    p.add_argument('--iters', type=int, default=2, help='iterations per frame')
    p.add_argument('--solver', default='', help="the node's solver ('' = the model card's)")
    p.add_argument('--input-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help="the network's input size, in the node and in-process (default the "
                        "card's)")
    p.add_argument('--backend', default='auto', choices=BACKENDS,
                   help='the network runtime, in the node and in-process')
    p.add_argument('--frames', type=int, default=60, help='measured frames per run')
    p.add_argument('--warmup', type=int, default=10, help='frames before measuring')
    p.add_argument('--threads', type=int, default=0,
                   help="torch threads here (0: torch's default; the node uses its default)")
    p.add_argument('--out', default='bench/node.json', help='JSON results')


def add_checkpoint_option(p):
    """Add ``--checkpoint`` as the node benches read it (see :func:`resolve_checkpoint`)."""
    p.add_argument('--checkpoint', default='',
                   help="model ('' = the bundled default; a bundled name or a path)")


def run(args) -> int:
    """Run every size x subscription set and write the JSON."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from .solver import size_list
    from ...model.checkpoint import CheckpointError
    from ...model.solvers import SOLVERS
    prog = 'streamdeq bench node'
    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print('%s: %s' % (prog, exc), file=sys.stderr)
        return 1
    subscribe = args.subscribe.split(',')
    problems = ["--subscribe takes 'class' and 'all', got %r" % s
                for s in subscribe if s not in ('class', 'all')]
    sizes = size_list(args.sizes)
    if not sizes:
        problems.append('--sizes takes camera WxH[,WxH...] in pixels, got %r' % args.sizes)
    if args.solver and args.solver not in SOLVERS:
        problems.append("--solver takes %s or '' (the card's), got %r"
                        % (', '.join(SOLVERS), args.solver))
    if args.input_size and (min(args.input_size) < 32 or args.input_size[0] % 32
                            or args.input_size[1] % 32):
        problems.append('--input-size takes H W in positive multiples of 32, got %d %d'
                        % tuple(args.input_size))
    if problems:
        print('%s: %s' % (prog, '; '.join(problems)), file=sys.stderr)
        return 2
    os.environ.update(private_domain_env())
    # both ends with the Fast DDS profile for large frames, as perception.launch.py sets it
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile_path())
    runs = []
    for w, h in sizes:
        for sub in subscribe:
            args.subscribe = sub
            try:
                runs.append(_run_size(w, h, args, checkpoint))
            except RuntimeError as exc:
                print('%s: %s' % (prog, exc), file=sys.stderr)
                return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        rel = os.path.relpath(checkpoint)
        json.dump({'checkpoint': rel if not rel.startswith('..') else os.path.abspath(checkpoint),
                   'iters': args.iters,
                   'solver': runs[0]['solver'] if runs else args.solver,
                   'backend': args.backend,
                   'runs': runs}, fh, indent=1)
    print('| camera | subscribed | in-process ms | node ms | overhead | end-to-end ms | '
          + ' | '.join(STAGES) + ' |')
    print('|---|---|---|---|---|---|' + '---|' * len(STAGES))
    for r in runs:
        print('| %dx%d | %s | %.1f | %.1f | %+.0f %% | %.1f | %s |' % (
            r['width'], r['height'], r['subscribe'], r['in_process_ms'], r['node_ms'],
            100 * r['overhead'], r['end_to_end_ms'],
            ' | '.join('%.2f' % r['stages_ms'][s] for s in STAGES)))
    return 0
