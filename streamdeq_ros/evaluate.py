"""``streamdeq eval``: the paper's streaming protocol (Sec. IV, Fig. 11-14, Table I).

For a clip whose frame n is labelled and an offset t, the stream starts from z = 0 at frame
n - t, runs M iterations per frame up to frame n (each frame warm-starts from the previous
one) and is scored at frame n. This is done for every t in ``--offsets`` and M in ``--iters``,
through the same :class:`~streamdeq_ros.stream.StreamSession` the ROS node uses. The
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
with segmentation only) and ``<metric>_vs_offset.png``; ``--readme`` then also rewrites the
README's tasks block.
"""
import csv
import json
import os
import re
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou
from tqdm import tqdm

from .data.clips import frame_targets, LabelledClip
from .model.heads.segmentation import class_ids
from .model.network import HEADS
from .stream import StreamSession

IGNORE_INDEX = 255
#: the printed name of each metric
METRIC_NAMES = {'miou': 'mIoU', 'map50': 'mAP@50', 'pckh': 'PCKh@0.5',
                'pckh_det': 'PCKh@0.5 (detected persons)'}
#: a person box found by the detector (score >= this) stands for the person it overlaps
POSE_DET_SCORE, POSE_DET_IOU = 0.5, 0.5


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


class DetectionScore:
    """mAP at IoU 0.5 over a stream of detections (torchmetrics, COCO-style, pycocotools)."""

    def __init__(self, class_names: Sequence[str]):
        """Score detections whose label i >= 1 is ``class_names[i - 1]``."""
        self.class_names = list(class_names)
        self.metric = MeanAveragePrecision(box_format='xyxy', iou_thresholds=[0.5],
                                           class_metrics=True)

    def update(self, detections, targets):
        """Add per-image predictions ``{'boxes','scores','labels'}`` and targets."""
        self.metric.update(
            [{k: d[k].detach().cpu() for k in ('boxes', 'scores', 'labels')} for d in detections],
            [{'boxes': t['boxes'].cpu(), 'labels': t['labels'].cpu()} for t in targets])

    def compute(self) -> Dict:
        """Return ``map50`` and the per-class AP@50 (None for a class absent from both)."""
        r = self.metric.compute()
        per = {}
        classes = r['classes'].reshape(-1).tolist()
        for c, v in zip(classes, r['map_per_class'].reshape(-1).tolist()):
            if 1 <= c <= len(self.class_names):
                per[self.class_names[c - 1]] = None if v < 0 else float(v)
        m = float(r['map_50'])
        return {'map50': float('nan') if m < 0 else m, 'per_class': per}


class PoseScore:
    """PCKh@``alpha``: a joint is correct within alpha x the person's head-segment length."""

    def __init__(self, joint_names: Sequence[str], alpha: float = 0.5):
        """Score joints named ``joint_names``."""
        self.joint_names = list(joint_names)
        self.alpha = alpha
        self.correct = np.zeros(len(joint_names))
        self.total = np.zeros(len(joint_names))

    def update(self, pred: torch.Tensor, truth: torch.Tensor, head_sizes: torch.Tensor):
        """Add predictions (P, J, >=2) for ground-truth joints (P, J, 3) with visibility."""
        if len(truth) == 0:
            return
        dist = (pred[..., :2].cpu() - truth[..., :2].cpu()).norm(dim=-1)
        counted = truth[..., 2].cpu() > 0
        ok = (dist <= self.alpha * head_sizes.cpu()[:, None]) & counted
        self.correct += ok.sum(0).numpy()
        self.total += counted.sum(0).numpy()

    def compute(self) -> Dict:
        """Return ``pckh`` over all counted joints and per joint (None where none counted).

        Under torchrun the counts of every process are summed first (as torchmetrics does for
        the other scores), so each process returns the score of all shards.
        """
        correct, totals = self.correct, self.total
        if dist.is_available() and dist.is_initialized():
            both = torch.tensor(np.stack([correct, totals]), dtype=torch.float64)
            dist.all_reduce(both)
            correct, totals = both.numpy()
        total = totals.sum()
        return {'pckh': float(correct.sum() / total) if total else float('nan'),
                'per_class': {n: (float(c / t) if t else None) for n, c, t in
                              zip(self.joint_names, correct, totals)}}


def _stack(clips: Sequence[LabelledClip], index_from_end: int, device) -> torch.Tensor:
    frames = [c.frames[c.labelled_index - index_from_end] for c in clips]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(device)


def _tasks(net, clips: Sequence[LabelledClip]) -> List[str]:
    """Return the heads of ``net`` that ``clips`` have labels for (boxes, joints: generated)."""
    labelled = all('labels' in c.meta for c in clips)
    return [t for t in HEADS if t in net.heads and (t == 'segmentation' or labelled)]


def _scorers(net, tasks, class_names) -> Dict:
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


def _match_persons(net, z, detections, truth_boxes, joints: int) -> List[torch.Tensor]:
    """Keypoints (P, J, 3) per image for the true persons, read in the detector's boxes.

    Person detections (score >= :data:`POSE_DET_SCORE`) are matched greedily by score to the
    true boxes they overlap with IoU >= :data:`POSE_DET_IOU`; a true person without a match
    gets NaN joints (all counted as wrong).
    """
    found = [d['boxes'][net.persons(d, POSE_DET_SCORE)] for d in detections]
    kps = net.perceive(z, heads=['pose'], person_boxes=found).keypoints
    out = []
    for boxes, kp, truth in zip(found, kps, truth_boxes):
        pred = torch.full((len(truth), joints, 3), float('nan'))
        if len(truth) and len(boxes):
            iou = box_iou(boxes.cpu(), truth)
            for i in range(len(boxes)):                    # boxes come sorted by score
                j = int(iou[i].argmax())
                if iou[i, j] >= POSE_DET_IOU:
                    pred[j] = kp[i].cpu()
                    iou[:, j] = -1.0
        out.append(pred)
    return out


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
    tasks = _tasks(net, clips)
    if not tasks:
        raise ValueError('nothing to score: the network has no head these clips have labels for')
    max_off = max(offsets)
    for c in clips:
        if c.labelled_index < max_off:
            raise ValueError('clip %s has its label at frame %d; offset %d needs %d earlier '
                             'frames' % (c.name, c.labelled_index, max_off, max_off))
    runs = [(m, t) for m in iters for t in offsets] + [('baseline', 0)]
    scores = {run: _scorers(net, tasks, class_names) for run in runs}
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
    seq = [torch.from_numpy(clip.frames[i % len(clip.frames)]).permute(2, 0, 1)[None]
           for i in range(frames + 1)]

    def one(img):
        session.step(net.normalize(img.to(device)), iters=iters)
        with torch.inference_mode():
            p = net.perceive(session.state, heads=heads)
            if p.seg_logits is not None:
                class_ids(p.seg_logits, size)

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
    extra = sorted({k for r in results['models'].values() for k in r['metrics']} - {'miou'})
    if extra:
        paths['metrics'] = os.path.join(out_dir, 'metrics.csv')
        paths['tasks_table'] = os.path.join(out_dir, 'tasks_table.md')
        with open(paths['metrics'], 'w', newline='') as fh:
            w = csv.writer(fh)
            w.writerow(['model', 'solver', 'metric', 'iters', 'offset', 'value'])
            for name, r in results['models'].items():
                for metric, entry in r['metrics'].items():
                    for m, curve in entry['curves'].items():
                        for t, v in sorted(curve.items(), key=lambda kv: int(kv[0])):
                            w.writerow([name, r['solver'], metric, m, t, '%.4f' % v])
                    w.writerow([name, r['solver'], metric,
                                'single-frame N=%d' % r['baseline']['iters'], 0,
                                '%.4f' % r['baseline'][metric]])
        with open(paths['tasks_table'], 'w') as fh:
            fh.write(tasks_table_markdown(results))
        for metric in extra:
            paths['plot_' + metric] = os.path.join(out_dir, '%s_vs_offset.png' % metric)
            plot_curves(results, paths['plot_' + metric], metric)
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


def tasks_table_markdown(results: Dict) -> str:
    """Table-I analogue over tasks: model x M -> mIoU, mAP@50, PCKh (largest offset), frames/s.

    For a model with more heads than segmentation, the frames/s of the same model reading only
    its segmentation head are given too, and their ratio (the cost of the extra heads).
    """
    results = json.loads(json.dumps(results))
    off = str(max(results['offsets']))
    metrics = [k for k in METRIC_NAMES
               if any(k in r['metrics'] for r in results['models'].values())]
    head = ('| model | M | ' + ' | '.join(METRIC_NAMES[k] for k in metrics)
            + ' | frames/s (all heads) | frames/s (segmentation only) | cost ratio |\n')
    head += '|---|---|' + '---|' * (len(metrics) + 3) + '\n'
    rows = []
    for name, r in results['models'].items():
        keys = [(str(m), 'M=%d' % m) for m in results['iters']]
        keys.append(('baseline', 'single-frame N=%d' % r['baseline']['iters']))
        for key, label in keys:
            cells = []
            for k in metrics:
                if k not in r['metrics']:
                    cells.append('—')
                    continue
                v = r['baseline'][k] if key == 'baseline' else r['metrics'][k]['curves'][key][off]
                cells.append('%.1f' % (100 * v))
            fps = r['fps'][key]
            seg = r.get('fps_seg_only', {}).get(key)
            cells += ['%.1f' % fps, '%.1f' % seg if seg else '—',
                      '%.2f' % (seg / fps) if seg else '—']
            rows.append('| %s | %s | %s |' % (name, label, ' | '.join(cells)))
    note = ('\nMetrics (%%) at offset %s (streamed from zeros %s frames before the labelled '
            'frame; the single-frame rows solve the labelled frame alone) over %d held-out clips '
            'of %dx%d. Detection: mAP at IoU 0.5. PCKh@0.5 reads the joints inside the '
            'ground-truth person boxes (MPII protocol); "detected persons" reads them inside the '
            "detector's person boxes (score >= %g, matched at IoU >= %g; a missed person's "
            'joints count as wrong). Frames/s: one stream, batch 1, %s, median '
            'of %d interleaved rounds; cost ratio = segmentation-only frames/s over all-heads '
            'frames/s.\n' % (off, off, results['clips'], results['width'], results['height'],
                             POSE_DET_SCORE, POSE_DET_IOU, results['device'],
                             results.get('fps_repeats', 1)))
    return head + '\n'.join(rows) + '\n' + note


def plot_curves(results: Dict, path: str, metric: str = 'miou'):
    """Plot a metric against offset: one panel per model, a curve per M, single-frame N dashed.

    Models without the metric are left out.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    models = {name: r for name, r in json.loads(json.dumps(results))['models'].items()
              if metric in r['metrics']}
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False,
                             sharey=True)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (name, r) in zip(axes[0], models.items()):
        for i, (m, curve) in enumerate(r['metrics'][metric]['curves'].items()):
            ts = sorted(int(t) for t in curve)
            ax.plot(ts, [100 * curve[str(t)] for t in ts],
                    marker='o', ms=3, color=colors[i % len(colors)], label='M=%s' % m)
        b = r['baseline']
        ax.axhline(100 * b[metric], ls='--', color='k',
                   label='single-frame N=%d' % b['iters'])
        ax.set_title('%s (%s)' % (name, r['solver']))
        ax.set_xlabel('offset t (frames streamed before the labelled one)')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='lower right')
    axes[0][0].set_ylabel('%s (%%)' % METRIC_NAMES[metric])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


README_START = '<!-- streamdeq-eval:start -->'
README_END = '<!-- streamdeq-eval:end -->'
README_TASKS = ('<!-- streamdeq-eval-tasks:start -->', '<!-- streamdeq-eval-tasks:end -->')


def update_readme(readme: str, table: str, plots: Sequence[str], command: str,
                  markers: Sequence[str] = (README_START, README_END)):
    """Replace the text between ``markers`` of ``readme`` with the table and plots."""
    start, end = markers
    with open(readme) as fh:
        text = fh.read()
    if start not in text or end not in text:
        raise ValueError('%s has no %s ... %s markers' % (readme, start, end))
    images = ''.join('![%s](%s)\n' % (os.path.basename(p)[:-4].replace('_', ' '), p)
                     for p in plots)
    body = '%s\nRegenerate with:\n\n```\n%s\n```\n\n%s\n%s%s' % (
        start, command, table, images, end)
    pattern = re.escape(start) + '.*?' + re.escape(end)
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
        for metric, entry in r['metrics'].items():
            print('%s (%s): single-frame N=%d %s %.3f; streamed at offset %d: %s' % (
                name, solver, n, METRIC_NAMES[metric], r['baseline'][metric], max(offsets),
                ', '.join('M=%d %.3f' % (m, entry['curves'][str(m)][max(offsets)])
                          for m in args.iters)))
    # Timing last, interleaved over models and repeated: a slow spell of a shared machine
    # then hits every model alike, and the median of the repeats is reported.
    # A model with more heads is timed reading all of them ('fps') and reading only its
    # segmentation head ('fps_seg_only'): the cost of the extra heads on the same fixed point.
    keys = [(str(m), m) for m in args.iters]
    runs = [(name, key, m, field, heads) for name in nets
            for key, m in keys + [('baseline', nets[name][3])]
            for field, heads in [('fps', None)] + ([('fps_seg_only', ['segmentation'])]
                                                   if len(nets[name][0].heads) > 1 else [])]
    times = {(name, key, field): [] for name, key, _, field, _ in runs}
    for _ in tqdm(range(args.fps_repeats), desc='frames/s', unit='round'):
        for name, key, m, field, heads in runs:
            times[(name, key, field)].append(measure_fps(
                nets[name][0], clips[0], m, nets[name][2], args.fps_frames, heads))
    for (name, key, field), values in times.items():
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
    return 0
