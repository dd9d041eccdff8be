"""``streamdeq eval``: the paper's streaming protocol (Sec. IV, Fig. 11-14, Table I).

For a clip whose frame n is labelled and an offset t, the stream starts from z = 0 at frame
n - t, runs M iterations per frame up to frame n (each frame warm-starts from the previous
one) and is scored at frame n. This is done for every t in ``--offsets`` and M in ``--iters``,
through the same :class:`~streamdeq_ros.runtime.stream.StreamSession` the ROS node uses. The
single-frame baseline runs N iterations from zeros on frame n alone (N = 20 for UR/SUR, the
Broyden threshold for IL). Offset t = 0 is the single-frame result with M iterations.

Every head of a model is scored on the same state: segmentation by mIoU (torchmetrics'
confusion matrix), detection by mAP@50 (torchmetrics' MeanAveragePrecision, pycocotools),
pose by PCKh@0.5 in the ground-truth person boxes (``pckh``, MPII's protocol) and in the
detector's person boxes (``pckh_det``). Detection and pose need clips with boxes and joints
(the generator's); every model needs a segmentation head (the main table reads it).

Frames per second are measured in the same run, after the accuracy runs: one stream of batch
size 1 at M iterations per frame, everything included (injection, solver, heads, arg-max),
interleaved over models and repeated ``--fps-repeats`` times; the median is reported. A
model with more heads is timed reading all of them and reading its segmentation head only.

Outputs in ``--out``: ``results.json``, ``curves.csv`` (model, M, offset, mIoU),
``per_class.csv``, ``table.md`` (model x M -> mIoU at the largest offset and frames/s, plus the
single-frame baseline), and ``miou_vs_offset.png`` (one panel per model, a curve per M,
baselines dashed). With detection or pose heads also ``metrics.csv`` (model, metric, M,
offset, value), ``tasks_table.md`` (model x M -> every metric, frames/s with all heads and
with segmentation only) and ``<metric>_vs_offset.png``; ``--readme FILE`` then also rewrites the
tasks block of FILE (this project keeps both blocks in ``docs/evaluation.md``).
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from . import distributed
from .metrics import (DetectionScore, METRIC_NAMES, POSE_DET_IOU, POSE_DET_SCORE, PoseScore,
                      seconds_per_frame, SegmentationScore)
from .reports import README_TASKS, table_markdown, update_readme, write_reports
from ..data.clips import frame_targets, LabelledClip
from ..model.card import card_solver
from ..model.heads.segmentation import class_ids
from ..model.network import HEADS
from ..model.solvers import SOLVERS
from ..runtime.stream import StreamSession


def _stack(clips: Sequence[LabelledClip], index_from_end: int, device) -> torch.Tensor:
    frames = [c.frames[c.labelled_index - index_from_end] for c in clips]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(device)


def scored_tasks(net, clips: Sequence[LabelledClip]) -> List[str]:
    """Return the heads of ``net`` that ``clips`` have labels for (boxes, joints: generated)."""
    labelled = all('labels' in c.meta for c in clips)
    return [t for t in HEADS if t in net.heads and (t == 'segmentation' or labelled)]


def new_scorers(net, tasks, class_names) -> Dict:
    """Return fresh accumulators (metric name -> score) for the scored ``tasks`` of ``net``."""
    out = {}
    if 'segmentation' in tasks:
        out['miou'] = SegmentationScore(net.heads['segmentation'].num_classes, class_names)
    if 'detection' in tasks:
        out['map50'] = DetectionScore(net.det_classes)
    if 'pose' in tasks:
        out['pckh'] = PoseScore(net.joint_names)
        if 'detection' in tasks:
            out['pckh_det'] = PoseScore(net.joint_names)
    return out


def match_persons(boxes: torch.Tensor, keypoints: torch.Tensor, truth_boxes: torch.Tensor,
                  joints: int) -> torch.Tensor:
    """Keypoints (P, J, 3) for the P true persons of one image, from detected persons.

    ``boxes`` (D, 4) are detected person boxes sorted by score and ``keypoints`` (D, J, 3)
    their joints; they are matched greedily, by score, to the true boxes they overlap with
    IoU >= :data:`POSE_DET_IOU`. A true person without a match gets NaN joints (all counted
    as wrong).
    """
    pred = torch.full((len(truth_boxes), joints, 3), float('nan'))
    if len(truth_boxes) and len(boxes):
        iou = box_iou(boxes.cpu().float(), truth_boxes.cpu().float())
        for i in range(len(boxes)):
            j = int(iou[i].argmax())
            if iou[i, j] >= POSE_DET_IOU:
                pred[j] = keypoints[i].cpu()
                iou[:, j] = -1.0
    return pred


def _match_persons(net, z, detections, truth_boxes, joints: int) -> List[torch.Tensor]:
    """Keypoints (P, J, 3) per image for the true persons, read in the detector's boxes.

    Person detections (score >= :data:`POSE_DET_SCORE`) are matched to the true persons by
    :func:`match_persons`.
    """
    found = [d['boxes'][net.persons(d, POSE_DET_SCORE)] for d in detections]
    kps = net.perceive(z, heads=['pose'], person_boxes=found).keypoints
    return [match_persons(boxes, kp, truth, joints)
            for boxes, kp, truth in zip(found, kps, truth_boxes)]


def score_state(net, z: List[torch.Tensor], batch: Sequence[LabelledClip], scorers: Dict):
    """Run the scored heads on the state of the labelled frames of ``batch`` and score them.

    ``pckh`` reads pose inside the ground-truth person boxes (the MPII protocol, which gives
    each person's position); ``pckh_det`` inside the detector's person boxes, end to end as the
    node runs; detection is scored on its own boxes.
    """
    targets = [frame_targets(c.meta['labels'][c.labelled_index]) for c in batch] \
        if set(scorers) - {'miou'} else None
    boxes = [t['person_boxes'].to(z[0].device) for t in targets] if 'pckh' in scorers else None
    heads = [t for t, k in zip(HEADS, ('miou', 'map50', 'pckh')) if k in scorers]
    with torch.inference_mode():
        p = net.perceive(z, heads=heads, person_boxes=boxes)
        if 'pckh_det' in scorers:
            det_kps = _match_persons(net, z, p.detections, [t['person_boxes'] for t in targets],
                                     len(net.joint_names))
    if 'miou' in scorers:
        size = batch[0].frames[0].shape[:2]
        scorers['miou'].update(class_ids(p.seg_logits, size),
                               torch.from_numpy(np.stack([c.mask for c in batch])))
    if 'map50' in scorers:
        scorers['map50'].update(p.detections, targets)
    truth = [torch.cat([t[k] for t in targets]) for k in ('keypoints', 'head_sizes')] \
        if 'pckh' in scorers else None
    if 'pckh' in scorers:
        scorers['pckh'].update(torch.cat(p.keypoints), *truth)
    if 'pckh_det' in scorers:
        scorers['pckh_det'].update(torch.cat(det_kps), *truth)


def stream_scores(net, clips: Sequence[LabelledClip], iters: Sequence[int],
                  offsets: Sequence[int], solver: str, class_names: Sequence[str],
                  baseline_iters: int, batch_size: int = 16, progress: bool = True) -> Dict:
    """Run the streaming protocol on ``clips``; return per-M curves and the baseline.

    Every head of ``net`` with labels in the clips is scored on the same state. ``metrics``
    holds, per metric (``miou``, ``map50``, ``pckh``), ``curves`` {M: {offset: value}} and
    ``per_class``; with a segmentation head ``curves`` and ``per_class`` are also at the top
    (mIoU). ``baseline`` holds the single-frame N result of every metric.
    """
    device = net.mean.device
    tasks = scored_tasks(net, clips)
    if not tasks:
        raise ValueError('nothing to score: the network has no head these clips have labels for')
    max_off = max(offsets)
    for c in clips:
        if c.labelled_index < max_off:
            raise ValueError('clip %s has its label at frame %d; offset %d needs %d earlier '
                             'frames' % (c.name, c.labelled_index, max_off, max_off))
    runs = [(m, t) for m in iters for t in offsets] + [('baseline', 0)]
    scores = {run: new_scorers(net, tasks, class_names) for run in runs}
    residuals = {run: [] for run in runs}
    batches = [clips[i:i + batch_size] for i in range(0, len(clips), batch_size)]
    bar = tqdm(total=len(runs) * len(batches), desc='stream eval (%s)' % solver,
               disable=not progress, unit='run')
    session = StreamSession(net.backbone, readout=None, solver=solver, name='eval')
    for batch in batches:
        for run in runs:
            m, t = run
            n_iter = baseline_iters if m == 'baseline' else m
            session.reset()
            for back in range(t, -1, -1):
                x = net.normalize(_stack(batch, back, device))
                res = session.step(x, iters=n_iter)
            score_state(net, session.state, batch, scores[run])
            residuals[run].append(res.final_residual)
            bar.update(1)
    bar.close()
    out = {'tasks': tasks, 'metrics': {}, 'residual': {}}
    for (m, t), per_metric in scores.items():
        for metric, sc in per_metric.items():
            r = sc.compute()
            key = 'pckh' if metric == 'pckh_det' else metric
            entry = out['metrics'].setdefault(metric, {'curves': {}, 'per_class': {}})
            entry['curves'].setdefault(str(m), {})[t] = r[key]
            entry['per_class'].setdefault(str(m), {})[t] = r.get('per_class', r.get('iou'))
        out['residual'].setdefault(str(m), {})[t] = float(np.mean(residuals[(m, t)]))
    out['baseline'] = {'iters': baseline_iters, 'residual': out['residual'].pop('baseline')[0]}
    for metric, entry in out['metrics'].items():
        out['baseline'][metric] = entry['curves'].pop('baseline')[0]
        out['baseline'].setdefault('per_class_' + metric, entry['per_class'].pop('baseline')[0])
    if 'miou' in out['metrics']:
        out['curves'] = out['metrics']['miou']['curves']
        out['per_class'] = out['metrics']['miou']['per_class']
        out['baseline']['per_class'] = out['baseline']['per_class_miou']
    return out


def measure_fps(net, clip: LabelledClip, iters: int, solver: str, frames: int = 20,
                heads: Optional[Sequence[str]] = None) -> float:
    """Frames per second of one stream (batch 1) at ``iters`` per frame, heads included.

    ``heads`` (default: all of the network's) run on every frame's state; segmentation
    includes the up-sampling and arg-max to the frame size, pose reads the detector's boxes.
    """
    device = net.mean.device
    heads = list(net.heads.keys() if heads is None else heads)
    session = StreamSession(net.backbone, solver=solver, name='fps')
    size = clip.frames[0].shape[:2]

    def one(img):
        session.step(net.normalize(img.to(device)), iters=iters)
        with torch.inference_mode():
            p = net.perceive(session.state, heads=heads)
            if p.seg_logits is not None:
                class_ids(p.seg_logits, size)

    return 1.0 / seconds_per_frame(one, clip, frames, device)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_model_spec(spec: str):
    """``NAME=PATH[:SOLVER[:N]]`` -> (name, path, solver or None, N or None)."""
    if '=' not in spec:
        raise ValueError('--model needs NAME=PATH[:SOLVER[:N]], got %r' % spec)
    name, rest = spec.split('=', 1)
    parts = rest.split(':')
    # official:FILE[:CONFIG] is one checkpoint name: it runs up to the solver
    cut = next((i for i in range(2, len(parts)) if parts[i] in tuple(SOLVERS) + ('',)),
               len(parts)) if parts[0] == 'official' else 1
    path, parts = ':'.join(parts[:cut]), [None] + parts[cut:]
    solver = parts[1] if len(parts) > 1 and parts[1] else None
    try:
        n = int(parts[2]) if len(parts) > 2 and parts[2] else None
    except ValueError:
        raise ValueError('N in --model %r must be an integer, got %r' % (spec, parts[2])) from None
    if solver is not None and solver not in SOLVERS:
        raise ValueError('solver in --model %r must be %s' % (spec, ' or '.join(SOLVERS)))
    if not name or not path:
        raise ValueError('--model needs NAME=PATH[:SOLVER[:N]], got %r' % spec)
    return name, path, solver, n


def _offsets(text: str) -> List[int]:
    out = []
    for part in text.split(','):
        if '-' in part:
            a, b = part.split('-')
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    if not out or min(out) < 0:
        raise ValueError('offsets must be non-negative, e.g. 0-19 or 0,5,10')
    return sorted(set(out))


def load_clips(data: str, count: int, height: int, width: int, seed: int):
    """Load evaluation clips: ``street`` (held-out generated clips) or ``cityscapes:ROOT``."""
    from ..data.clips import street_clips
    if data == 'street':
        from ..data import street
        return street_clips(count, height, width, seed=seed, split='val'), list(street.CLASSES)
    if data.startswith('cityscapes:'):
        from ..data.cityscapes import cityscapes_clips, TRAIN_CLASSES
        clips = cityscapes_clips(data.split(':', 1)[1], 'val', (height, width), limit=count)
        return clips, list(TRAIN_CLASSES)
    raise ValueError("--data must be 'street' or 'cityscapes:ROOT', got %r" % data)


def add_arguments(p):
    """Add the ``eval`` options to ``p``."""
    p.add_argument('--model', action='append', required=True, metavar='NAME=PATH[:SOLVER[:N]]',
                   help='a checkpoint to evaluate, repeatable; SOLVER (unroll|broyden) and the '
                        'single-frame N default to the model card (IL from UR weights: '
                        'IL=ur.pt:broyden:26)')
    p.add_argument('--peer', action='append', default=[], metavar='NAME=PATH',
                   help='a peer of `streamdeq train-peer` (single-frame), repeatable: scored '
                        'on the same clips and metric code, timed in the same rounds')
    p.add_argument('--data', default='street', help="'street' or 'cityscapes:ROOT'")
    p.add_argument('--clips', type=int, default=32, help='number of held-out clips')
    p.add_argument('--height', type=int, default=0, help='frame height (0: the model card)')
    p.add_argument('--width', type=int, default=0, help='frame width (0: the model card)')
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4, 8], help='M values')
    p.add_argument('--offsets', default='0-19', help='offsets t, e.g. 0-19 or 0,5,19')
    p.add_argument('--batch-size', type=int, default=16, help='clips per solve')
    p.add_argument('--fps-frames', type=int, default=30, help='frames timed per M')
    p.add_argument('--fps-repeats', type=int, default=3,
                   help='timing rounds (interleaved over models; the median is reported)')
    p.add_argument('--seed', type=int, default=0, help='data seed (held-out split)')
    p.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--readme', default=None,
                   help='also write the table and plot between the eval markers of this file')
    p.add_argument('--nproc', type=int, default=1,
                   help='processes: the clips are sharded over them (torchrun + gloo on CPU, '
                        'NCCL with --device cuda) and the scores summed; frames/s and the '
                        'reports come from the first process')


def run(args) -> int:
    """Entry point of ``streamdeq eval`` (and of each process of a torchrun)."""
    code = distributed.relaunch(args, __spec__.name, 'streamdeq eval')
    if code is not None:
        return code
    return distributed.run_in_group('streamdeq eval', 'cpu' if args.device == 'cpu' else 'cuda',
                                    _run, args)


def _run(args, d: distributed.Dist) -> int:
    import shlex
    from ..model.checkpoint import CheckpointError, load_net
    from ..models import resolve_checkpoint
    if d.world > 1:
        args.device = str(d.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        specs = [parse_model_spec(s) for s in args.model]
        offsets = _offsets(args.offsets)
    except ValueError as exc:
        raise SystemExit('streamdeq eval: %s' % exc)
    if any(m < 1 for m in args.iters):
        raise SystemExit('streamdeq eval: --iters must be >= 1')
    nets = {}
    for name, path, solver, n in specs:
        try:
            net, card = load_net(resolve_checkpoint(path), args.device)
        except CheckpointError as exc:
            raise SystemExit('streamdeq eval: %s' % exc)
        if 'segmentation' not in net.heads:
            raise SystemExit('streamdeq eval: %s has no segmentation head' % path)
        inf = card.get('inference', {})
        nets[name] = (net, card, solver or card_solver(card),
                      n or int(inf.get('single_frame_iters', 20)), path)
    from .peers import load_peer, peer_frame_ms, peer_scores
    peers, peer_paths = {}, {}
    for spec in args.peer:
        name, _, path = spec.partition('=')
        if not name or not path:
            raise SystemExit('streamdeq eval: --peer needs NAME=PATH, got %r' % spec)
        try:
            peers[name] = load_peer(path, name, args.device)
            peer_paths[name] = path
        except CheckpointError as exc:
            raise SystemExit('streamdeq eval: %s' % exc)
    first_card = next(iter(nets.values()))[1]
    h = args.height or first_card.get('input', {}).get('height', 96)
    w = args.width or first_card.get('input', {}).get('width', 192)
    clips, classes = load_clips(args.data, args.clips, h, w, args.seed)
    if d.world > len(clips):
        raise SystemExit('streamdeq eval: %d processes need at least as many clips, got %d'
                         % (d.world, len(clips)))
    results = {'data': args.data, 'clips': len(clips), 'height': h, 'width': w,
               'iters': list(args.iters), 'offsets': offsets, 'classes': classes,
               'device': '%s, %d torch threads' % (args.device, torch.get_num_threads()),
               'command': 'streamdeq eval ' + ' '.join(shlex.quote(a) for a in args.argv),
               'models': {}}
    for name, (net, card, solver, n, path) in nets.items():
        r = stream_scores(net, clips[d.rank::d.world], args.iters, offsets, solver, classes,
                          n, batch_size=args.batch_size, progress=d.main)
        r.update({'solver': solver, 'checkpoint': path, 'variant': card.get('variant')})
        results['models'][name] = r
        for metric, entry in (r['metrics'] if d.main else {}).items():
            print('%s (%s): single-frame N=%d %s %.3f; streamed at offset %d: %s' % (
                name, solver, n, METRIC_NAMES[metric], r['baseline'][metric], max(offsets),
                ', '.join('M=%d %.3f' % (m, entry['curves'][str(m)][max(offsets)])
                          for m in args.iters)))
    if not d.main:                  # the scores are complete on every process; one reports
        distributed.barrier(d)
        return 0
    if peers:
        results['peers'] = {}
        for name, peer in peers.items():
            if (peer.card['input']['height'], peer.card['input']['width']) != (h, w):
                print('note: peer %s was trained at %dx%d; scored at %dx%d' % (
                    name, peer.card['input']['width'], peer.card['input']['height'], w, h))
            r = peer_scores(peer, clips, classes, args.batch_size)
            r.update({'task': peer.task, 'peer': peer.card['peer'],
                      'checkpoint': peer_paths[name],
                      'train_steps': peer.card.get('training', {}).get('steps')})
            results['peers'][name] = r
            key = 'miou' if 'miou' in r else 'map50'
            print('peer %s (%s): %s %.3f' % (name, peer.card['peer'], METRIC_NAMES[key], r[key]))
    # Timing last, interleaved over models and repeated: a slow spell of a shared machine
    # then hits every model alike, and the median of the repeats is reported.
    # A model with more heads is timed reading all of them ('fps') and reading only its
    # segmentation head ('fps_seg_only'): the cost of the extra heads on the same fixed point.
    keys = [(str(m), m) for m in args.iters]
    # With peers, each StreamDEQ model is also timed reading only the head a peer is compared
    # on ('fps_det_only' for detection; segmentation has 'fps_seg_only').
    peer_tasks = {p.task for p in peers.values()}
    runs = [(name, key, m, field, heads) for name in nets
            for key, m in keys + [('baseline', nets[name][3])]
            for field, heads in [('fps', None)] + ([('fps_seg_only', ['segmentation'])]
                                                   if len(nets[name][0].heads) > 1 else [])
            + ([('fps_det_only', ['detection'])] if 'detection' in peer_tasks
               and 'detection' in nets[name][0].heads else [])]
    runs += [(name, 'peer', None, 'ms', None) for name in peers]
    times = {(name, key, field): [] for name, key, _, field, _ in runs}
    for _ in tqdm(range(args.fps_repeats), desc='frames/s', unit='round'):
        for name, key, m, field, heads in runs:
            if key == 'peer':
                times[(name, key, field)].append(peer_frame_ms(peers[name], clips[0],
                                                               args.fps_frames))
                continue
            times[(name, key, field)].append(measure_fps(
                nets[name][0], clips[0], m, nets[name][2], args.fps_frames, heads))
    for (name, key, field), values in times.items():
        if key == 'peer':
            results['peers'][name]['ms'] = float(np.median(values))
            continue
        results['models'][name].setdefault(field, {})[key] = float(np.median(values))
    results['fps_repeats'] = args.fps_repeats
    paths = write_reports(results, args.out)
    if args.readme:
        def rel(p):
            return os.path.relpath(p, os.path.dirname(os.path.abspath(args.readme)))
        update_readme(args.readme, table_markdown(results), [rel(paths['plot'])],
                      results['command'])
        if 'tasks_table' in paths:
            with open(paths['tasks_table']) as fh:
                update_readme(args.readme, fh.read(), [rel(paths[k]) for k in sorted(paths)
                                                       if k.startswith('plot_')],
                              results['command'], README_TASKS)
    print('wrote %s' % ', '.join(sorted(paths.values())))
    distributed.barrier(d)
    return 0


def main(argv=None) -> int:
    """``python -m streamdeq_ros.tools.evaluate`` (what torchrun starts in each process)."""
    return distributed.module_main('streamdeq eval', __doc__, add_arguments, run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
