"""``streamdeq eval``: the paper's streaming protocol for segmentation (Sec. IV-A, Fig. 11/12).

For a clip whose frame n is labelled and an offset t, the stream starts from z = 0 at frame
n - t, runs M iterations per frame up to frame n (each frame warm-starts from the previous
one) and is scored at frame n. This is done for every t in ``--offsets`` and M in ``--iters``,
through the same :class:`~streamdeq_ros.stream.StreamSession` the ROS node uses. The
single-frame baseline runs N iterations from zeros on frame n alone (N = 20 for UR/SUR, the
Broyden threshold for IL). Offset t = 0 is the single-frame result with M iterations.

Frames per second are measured in the same run, after the accuracy runs: one stream of batch
size 1 at M iterations per frame, everything included (injection, solver, head, arg-max),
interleaved over models and repeated ``--fps-repeats`` times; the median is reported.

Outputs in ``--out``: ``results.json``, ``curves.csv`` (model, M, offset, mIoU),
``per_class.csv``, ``table.md`` (model x M -> mIoU at the largest offset and frames/s, plus the
single-frame baseline), and ``miou_vs_offset.png`` (one panel per model, a curve per M,
baselines dashed).
"""
import csv
import json
import os
import re
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm import tqdm

from .data.clips import LabelledClip
from .stream import StreamSession

IGNORE_INDEX = 255


class SegmentationScore:
    """Confusion-matrix IoU over a stream of predictions (torchmetrics), ignore index 255."""

    def __init__(self, num_classes: int, class_names: Optional[Sequence[str]] = None):
        """Score ``num_classes`` classes."""
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.cm = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)

    def update(self, pred: torch.Tensor, target: torch.Tensor):
        """Add (N, H, W) predicted and true class ids."""
        self.cm.update(pred.detach().cpu().reshape(-1), target.detach().cpu().reshape(-1).long())

    def compute(self) -> Dict:
        """Return mIoU (mean over classes present in labels or predictions), per-class IoU."""
        cm = self.cm.compute().double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float('nan')))
        present = ~torch.isnan(iou)
        miou = float(iou[present].mean()) if present.any() else float('nan')
        return {'miou': miou,
                'iou': {n: (None if torch.isnan(v) else float(v))
                        for n, v in zip(self.class_names, iou)},
                'pixel_acc': float(tp.sum() / cm.sum().clamp(min=1))}


def predict(net, z: List[torch.Tensor], size) -> torch.Tensor:
    """Class ids (N, H, W) at ``size`` from a state: head logits, bilinear upsampling, arg-max."""
    logits = net.heads['segmentation'](z)
    logits = F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)
    return logits.argmax(1)


def _stack(clips: Sequence[LabelledClip], index_from_end: int, device) -> torch.Tensor:
    frames = [c.frames[c.labelled_index - index_from_end] for c in clips]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(device)


def stream_scores(net, clips: Sequence[LabelledClip], iters: Sequence[int],
                  offsets: Sequence[int], solver: str, class_names: Sequence[str],
                  baseline_iters: int, batch_size: int = 16, progress: bool = True) -> Dict:
    """Run the streaming protocol on ``clips``; return per-M curves and the baseline."""
    device = net.mean.device
    size = clips[0].frames[0].shape[:2]
    num_classes = net.heads['segmentation'].num_classes
    max_off = max(offsets)
    for c in clips:
        if c.labelled_index < max_off:
            raise ValueError('clip %s has its label at frame %d; offset %d needs %d earlier '
                             'frames' % (c.name, c.labelled_index, max_off, max_off))
    runs = [(m, t) for m in iters for t in offsets] + [('baseline', 0)]
    scores = {run: SegmentationScore(num_classes, class_names) for run in runs}
    residuals = {run: [] for run in runs}
    batches = [clips[i:i + batch_size] for i in range(0, len(clips), batch_size)]
    bar = tqdm(total=len(runs) * len(batches), desc='stream eval (%s)' % solver,
               disable=not progress, unit='run')
    readout = None
    session = StreamSession(net.backbone, readout=readout, solver=solver, name='eval')
    for batch in batches:
        target = torch.from_numpy(np.stack([c.mask for c in batch])).long()
        for run in runs:
            m, t = run
            n_iter = baseline_iters if m == 'baseline' else m
            session.reset()
            for back in range(t, -1, -1):
                x = net.normalize(_stack(batch, back, device))
                res = session.step(x, iters=n_iter)
            with torch.inference_mode():
                pred = predict(net, session.state, size)
            scores[run].update(pred, target)
            residuals[run].append(res.final_residual)
            bar.update(1)
    bar.close()
    out = {'curves': {}, 'per_class': {}, 'residual': {}}
    for (m, t), sc in scores.items():
        r = sc.compute()
        key = str(m)
        out['curves'].setdefault(key, {})[t] = r['miou']
        out['per_class'].setdefault(key, {})[t] = r['iou']
        out['residual'].setdefault(key, {})[t] = float(np.mean(residuals[(m, t)]))
    out['baseline'] = {'iters': baseline_iters, 'miou': out['curves']['baseline'][0],
                       'per_class': out['per_class']['baseline'][0],
                       'residual': out['residual']['baseline'][0]}
    for k in ('curves', 'per_class', 'residual'):
        out[k].pop('baseline')
    return out


def measure_fps(net, clip: LabelledClip, iters: int, solver: str, frames: int = 20) -> float:
    """Frames per second of one stream (batch 1) at ``iters`` per frame, head included."""
    device = net.mean.device
    session = StreamSession(net.backbone, solver=solver, name='fps')
    size = clip.frames[0].shape[:2]
    seq = [torch.from_numpy(clip.frames[i % len(clip.frames)]).permute(2, 0, 1)[None]
           for i in range(frames + 1)]

    def one(img):
        session.step(net.normalize(img.to(device)), iters=iters)
        with torch.inference_mode():
            predict(net, session.state, size)

    one(seq[0])                                      # warm-up, not timed
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for img in seq[1:]:
        one(img)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

def write_reports(results: Dict, out_dir: str) -> Dict[str, str]:
    """Write results.json, curves.csv, per_class.csv, table.md and the plot; return paths."""
    results = json.loads(json.dumps(results))          # one form: string keys
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in (
        ('json', 'results.json'), ('curves', 'curves.csv'), ('per_class', 'per_class.csv'),
        ('table', 'table.md'), ('plot', 'miou_vs_offset.png'))}
    with open(paths['json'], 'w') as fh:
        json.dump(results, fh, indent=1, sort_keys=True)
    with open(paths['curves'], 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['model', 'solver', 'iters', 'offset', 'miou', 'final_residual'])
        for name, r in results['models'].items():
            for m, curve in r['curves'].items():
                for t, v in sorted(curve.items(), key=lambda kv: int(kv[0])):
                    w.writerow([name, r['solver'], m, t, '%.4f' % v,
                                '%.4g' % r['residual'][m][t]])
            b = r['baseline']
            w.writerow([name, r['solver'], 'single-frame N=%d' % b['iters'], 0,
                        '%.4f' % b['miou'], '%.4g' % b['residual']])
    with open(paths['per_class'], 'w', newline='') as fh:
        w = csv.writer(fh)
        names = results['classes']
        w.writerow(['model', 'iters', 'offset'] + names)
        for name, r in results['models'].items():
            last = str(max(results['offsets']))
            for m, per in r['per_class'].items():
                w.writerow([name, m, last] + ['' if per[last][c] is None else
                                              '%.4f' % per[last][c] for c in names])
            w.writerow([name, 'single-frame N=%d' % r['baseline']['iters'], 0]
                       + ['' if r['baseline']['per_class'][c] is None else
                          '%.4f' % r['baseline']['per_class'][c] for c in names])
    with open(paths['table'], 'w') as fh:
        fh.write(table_markdown(results))
    plot_curves(results, paths['plot'])
    return paths


def table_markdown(results: Dict) -> str:
    """Table-I-style markdown: model x M -> mIoU (streamed, largest offset) and frames/s."""
    results = json.loads(json.dumps(results))
    models = results['models']
    iters = results['iters']
    off = str(max(results['offsets']))
    head = '| model | solver | ' + ' | '.join('M=%d mIoU / fps' % m for m in iters) + \
        ' | single-frame N mIoU / fps |\n'
    head += '|---|---|' + '---|' * (len(iters) + 1) + '\n'
    rows = []
    for name, r in models.items():
        cells = []
        for m in iters:
            v = r['curves'][str(m)][off]
            cells.append('%.1f / %.1f' % (100 * v, r['fps'][str(m)]))
        b = r['baseline']
        cells.append('%.1f / %.1f (N=%d)' % (100 * b['miou'], r['fps']['baseline'], b['iters']))
        rows.append('| %s | %s | %s |' % (name, r['solver'], ' | '.join(cells)))
    note = ('\nmIoU (%%) at offset %d (streamed from zeros %d frames before the labelled frame) '
            'over %d held-out clips of %dx%d; frames/s of one stream, batch 1, %s, median of %d '
            'interleaved timing rounds.\n'
            % (int(off), int(off), results['clips'], results['width'], results['height'],
               results['device'], results.get('fps_repeats', 1)))
    return head + '\n'.join(rows) + '\n' + note


def plot_curves(results: Dict, path: str):
    """Plot mIoU against offset: one panel per model, a curve per M, single-frame N dashed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    models = json.loads(json.dumps(results))['models']
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False,
                             sharey=True)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (name, r) in zip(axes[0], models.items()):
        for i, (m, curve) in enumerate(r['curves'].items()):
            ts = sorted(int(t) for t in curve)
            ax.plot(ts, [100 * curve[str(t)] for t in ts],
                    marker='o', ms=3, color=colors[i % len(colors)], label='M=%s' % m)
        b = r['baseline']
        ax.axhline(100 * b['miou'], ls='--', color='k',
                   label='single-frame N=%d' % b['iters'])
        ax.set_title('%s (%s)' % (name, r['solver']))
        ax.set_xlabel('offset t (frames streamed before the labelled one)')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='lower right')
    axes[0][0].set_ylabel('mIoU (%)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_START = '<!-- streamdeq-eval:start -->'
README_END = '<!-- streamdeq-eval:end -->'


def update_readme(readme: str, table: str, plot_rel: str, command: str):
    """Replace the text between the eval markers of ``readme`` with the table and plot."""
    with open(readme) as fh:
        text = fh.read()
    if README_START not in text or README_END not in text:
        raise ValueError('%s has no %s ... %s markers' % (readme, README_START, README_END))
    body = '%s\nRegenerate with:\n\n```\n%s\n```\n\n%s\n![mIoU against offset](%s)\n%s' % (
        README_START, command, table, plot_rel, README_END)
    pattern = re.escape(README_START) + '.*?' + re.escape(README_END)
    text = re.sub(pattern, lambda _: body, text, flags=re.S)
    with open(readme, 'w') as fh:
        fh.write(text)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_model_spec(spec: str):
    """``NAME=PATH[:SOLVER[:N]]`` -> (name, path, solver or None, N or None)."""
    if '=' not in spec:
        raise ValueError('--model needs NAME=PATH[:SOLVER[:N]], got %r' % spec)
    name, rest = spec.split('=', 1)
    parts = rest.split(':')
    path = parts[0]
    solver = parts[1] if len(parts) > 1 and parts[1] else None
    n = int(parts[2]) if len(parts) > 2 and parts[2] else None
    if solver is not None and solver not in ('unroll', 'broyden'):
        raise ValueError('solver in --model %r must be unroll or broyden' % spec)
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
    from .data.clips import street_clips
    if data == 'street':
        from .data import street
        return street_clips(count, height, width, seed=seed, split='val'), list(street.CLASSES)
    if data.startswith('cityscapes:'):
        from .data.cityscapes import cityscapes_clips, TRAIN_CLASSES
        clips = cityscapes_clips(data.split(':', 1)[1], 'val', (height, width), limit=count)
        return clips, list(TRAIN_CLASSES)
    raise ValueError("--data must be 'street' or 'cityscapes:ROOT', got %r" % data)


def add_arguments(p):
    """Add the ``eval`` options to ``p``."""
    p.add_argument('--model', action='append', required=True, metavar='NAME=PATH[:SOLVER[:N]]',
                   help='a checkpoint to evaluate, repeatable; SOLVER (unroll|broyden) and the '
                        'single-frame N default to the model card (IL from UR weights: '
                        'IL=ur.pt:broyden:26)')
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


def run(args) -> int:
    """Entry point of ``streamdeq eval``."""
    import shlex
    from .model.checkpoint import CheckpointError, load_net
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
            net, card = load_net(path, args.device)
        except CheckpointError as exc:
            raise SystemExit('streamdeq eval: %s' % exc)
        if 'segmentation' not in net.heads:
            raise SystemExit('streamdeq eval: %s has no segmentation head' % path)
        inf = card.get('inference', {})
        nets[name] = (net, card, solver or inf.get('solver', 'unroll'),
                      n or int(inf.get('single_frame_iters', 20)), path)
    first_card = next(iter(nets.values()))[1]
    h = args.height or first_card.get('input', {}).get('height', 96)
    w = args.width or first_card.get('input', {}).get('width', 192)
    clips, classes = load_clips(args.data, args.clips, h, w, args.seed)
    results = {'data': args.data, 'clips': len(clips), 'height': h, 'width': w,
               'iters': list(args.iters), 'offsets': offsets, 'classes': classes,
               'device': '%s, %d torch threads' % (args.device, torch.get_num_threads()),
               'command': 'streamdeq eval ' + ' '.join(shlex.quote(a) for a in args.argv),
               'models': {}}
    for name, (net, card, solver, n, path) in nets.items():
        r = stream_scores(net, clips, args.iters, offsets, solver, classes, n,
                          batch_size=args.batch_size)
        r.update({'solver': solver, 'checkpoint': path, 'variant': card.get('variant')})
        results['models'][name] = r
        print('%s (%s): single-frame N=%d mIoU %.3f; streamed at offset %d: %s' % (
            name, solver, n, r['baseline']['miou'], max(offsets), ', '.join(
                'M=%d %.3f' % (m, r['curves'][str(m)][max(offsets)]) for m in args.iters)))
    # Timing last, interleaved over models and repeated: a slow spell of a shared machine
    # then hits every model alike, and the median of the repeats is reported.
    runs = [(name, str(m), m) for name in nets for m in args.iters]
    runs += [(name, 'baseline', nets[name][3]) for name in nets]
    times = {(name, key): [] for name, key, _ in runs}
    for _ in tqdm(range(args.fps_repeats), desc='frames/s', unit='round'):
        for name, key, m in runs:
            times[(name, key)].append(measure_fps(nets[name][0], clips[0], m, nets[name][2],
                                                  args.fps_frames))
    for name, key, _ in runs:
        results['models'][name].setdefault('fps', {})[key] = float(
            np.median(times[(name, key)]))
    results['fps_repeats'] = args.fps_repeats
    paths = write_reports(results, args.out)
    if args.readme:
        update_readme(args.readme, table_markdown(results),
                      os.path.relpath(paths['plot'], os.path.dirname(os.path.abspath(
                          args.readme))), results['command'])
    print('wrote %s' % ', '.join(sorted(paths.values())))
    return 0
