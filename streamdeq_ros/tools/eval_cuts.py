"""``streamdeq eval-cuts``: what a hard cut does to a warm-started stream, and what a reset buys.

Held-out generated clips with a hard cut to a new scene at frame ``--cut`` (``cut_at``) are
streamed from frame 0 at M iterations per frame. Every head is scored (the same scorers as
``streamdeq eval``) on each of the ``--after`` frames from the cut on, for three rules:

- ``warm``: the state runs across the cut (the node without ``reset_on_cut``);
- ``oracle``: the stream restarts from zeros exactly at the cut;
- ``detector``: the stream restarts when :class:`~streamdeq_ros.runtime.cuts.CutDetector` (at
  ``--threshold``) fires, as the node does with ``reset_on_cut``.

The single-frame result (N iterations from zeros on each frame) is the reference. The
detector's rates come from the same run: a hit is a firing at the cut frame, any other firing
on the cut clips or on as many clips without a cut (every frame) is a false positive; a sweep
over ``--sweep`` thresholds gives the trade-off. Outputs in ``--out``: ``cuts.json``,
``cuts.csv`` (rule, M, frames since the cut, metric, value), ``detector.csv`` and
``<metric>_after_cut.png``. ``--footage`` adds, for real videos without labels, the frames at
which the detector fires (false positives on a video without cuts; by eye on one with them).
"""
import argparse
import csv
import json
import os
import shlex
from typing import Dict, List

import numpy as np
import torch
from tqdm import tqdm

from .evaluate import new_scorers, score_state, scored_tasks
from .metrics import METRIC_NAMES
from ..data.clips import LabelledClip, street_clips
from ..model.card import card_solver
from ..model.checkpoint import CheckpointError, load_net
from ..models import resolve_checkpoint
from ..runtime.cuts import CutDetector
from ..runtime.stream import StreamSession

RULES = ('warm', 'oracle', 'detector')


def _at(clip: LabelledClip, t: int) -> LabelledClip:
    """Return the clip seen as labelled at frame ``t``."""
    return LabelledClip(clip.name, clip.frames, t, clip.meta['labels'][t].mask, clip.meta)


def _tensor(frame: np.ndarray, net) -> torch.Tensor:
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].to(net.mean.device)
    return net.normalize(x)


def stream_after_cut(net, clip: LabelledClip, cut: int, after: int, iters: int, rule: str,
                     threshold: float, solver: str) -> List[List[torch.Tensor]]:
    """Stream ``clip`` to frame cut + after - 1; return the states of the frames from the cut."""
    session = StreamSession(net.backbone, solver=solver, name=clip.name)
    detector = CutDetector(threshold)
    states = []
    for t in range(cut + after):
        fired = detector.update(clip.frames[t])
        if (rule == 'oracle' and t == cut) or (rule == 'detector' and fired):
            session.reset()
        session.step(_tensor(clip.frames[t], net), iters=iters)
        if t >= cut:
            states.append(session.state)
    return states


def detector_rates(cut_clips, clean_clips, cut: int, thresholds) -> List[Dict]:
    """Hit rate at the cut and false positives per frame, for each threshold."""
    rows = []
    for th in thresholds:
        hits = false = frames = 0
        for clips, has_cut in ((cut_clips, True), (clean_clips, False)):
            for clip in clips:
                det = CutDetector(th)
                for t, frame in enumerate(clip.frames):
                    fired = det.update(frame)
                    if t == 0:
                        continue
                    if has_cut and t == cut:
                        hits += fired
                    else:
                        false += fired
                        frames += 1
        rows.append({'threshold': th, 'hit_rate': hits / len(cut_clips),
                     'false_positive_rate': false / max(frames, 1), 'false_positives': false,
                     'frames': frames})
    return rows


def run(args) -> int:
    """Entry point of ``streamdeq eval-cuts``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        net, card = load_net(resolve_checkpoint(args.checkpoint), 'cpu')
    except CheckpointError as exc:
        raise SystemExit('streamdeq eval-cuts: %s' % exc)
    h = args.height or card['input']['height']
    w = args.width or card['input']['width']
    length = args.cut + args.after
    if args.cut < 1 or args.after < 1 or length > 30:
        raise SystemExit('streamdeq eval-cuts: need --cut >= 1, --after >= 1 and cut + after '
                         '<= 30 (the generated clip length), got %d + %d' % (args.cut, args.after))
    cut_clips = street_clips(args.clips, h, w, seed=args.seed, split='val', cut_at=args.cut)
    clean = street_clips(args.clips, h, w, seed=args.seed + 1, split='val')
    classes = list(card['heads']['segmentation']['classes'])
    solver = card_solver(card)
    n = int(card.get('inference', {}).get('single_frame_iters', 20))
    tasks = scored_tasks(net, cut_clips)
    runs = [(rule, m) for m in args.iters for rule in RULES] + [('single-frame', n)]
    scores = {(r, m, k): new_scorers(net, tasks, classes)
              for r, m in runs for k in range(args.after)}
    bar = tqdm(total=len(runs) * len(cut_clips), desc='cuts', unit='stream')
    for clip in cut_clips:
        for rule, m in runs:
            if rule == 'single-frame':
                states = []
                for t in range(args.cut, args.cut + args.after):
                    s = StreamSession(net.backbone, solver=solver)
                    s.step(_tensor(clip.frames[t], net), iters=m)
                    states.append(s.state)
            else:
                states = stream_after_cut(net, clip, args.cut, args.after, m, rule,
                                          args.threshold, solver)
            for k, z in enumerate(states):
                score_state(net, z, [_at(clip, args.cut + k)], scores[(rule, m, k)])
            bar.update(1)
    bar.close()
    curves: Dict = {}
    for (rule, m, k), per in scores.items():
        for metric, sc in per.items():
            key = 'pckh' if metric == 'pckh_det' else metric
            curves.setdefault(metric, {}).setdefault('%s M=%d' % (rule, m), {})[k] = \
                float(sc.compute()[key])
    sweep = sorted(set(args.sweep) | {args.threshold})
    rates = detector_rates(cut_clips, clean, args.cut, sweep)
    footage = {os.path.basename(path): footage_firings(path, sweep) for path in args.footage}
    os.makedirs(args.out, exist_ok=True)
    result = {'command': 'streamdeq eval-cuts ' + ' '.join(shlex.quote(a) for a in args.argv),
              'checkpoint': resolve_checkpoint(args.checkpoint), 'height': h, 'width': w,
              'clips': args.clips, 'cut': args.cut, 'after': args.after,
              'threshold': args.threshold, 'curves': curves, 'detector': rates,
              'footage': footage}
    with open(os.path.join(args.out, 'cuts.json'), 'w') as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(args.out, 'cuts.csv'), 'w', newline='') as fh:
        wr = csv.writer(fh)
        wr.writerow(['rule', 'metric', 'frames_since_cut', 'value'])
        for metric, per in curves.items():
            for label, curve in per.items():
                for k, v in sorted(curve.items()):
                    wr.writerow([label, metric, k, '%.4f' % v])
    with open(os.path.join(args.out, 'detector.csv'), 'w', newline='') as fh:
        wr = csv.DictWriter(fh, list(rates[0]))
        wr.writeheader()
        wr.writerows(rates)
    for metric, per in curves.items():
        plot_after_cut(per, metric, os.path.join(args.out, '%s_after_cut.png' % metric))
    for metric, per in curves.items():
        print('%s, mean over the %d frames after the cut: %s' % (
            METRIC_NAMES[metric], args.after, ', '.join(
                '%s %.3f' % (label, np.mean(list(c.values()))) for label, c in per.items())))
    for r in rates:
        print('threshold %.1f: hit rate %.3f, false positives %d of %d frames (%.4f)' % (
            r['threshold'], r['hit_rate'], r['false_positives'], r['frames'],
            r['false_positive_rate']))
    for name, per in footage.items():
        print('%s (%d frames): firings per threshold: %s' % (name, per['frames'], ', '.join(
            '%s: %d %s' % (th, len(f), f[:8]) for th, f in per['firings'].items())))
    print('wrote %s' % args.out)
    return 0


def footage_firings(path: str, thresholds) -> Dict:
    """Frames at which the detector fires on a video file, for each threshold (no labels)."""
    import cv2
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit('streamdeq eval-cuts: cannot read video %r' % path)
    detectors = {th: CutDetector(th) for th in thresholds}
    firings = {th: [] for th in thresholds}
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for th, det in detectors.items():
            if det.update(frame):
                firings[th].append(n)
        n += 1
    cap.release()
    return {'frames': n, 'firings': {str(th): f for th, f in firings.items()}}


def plot_after_cut(curves: Dict, metric: str, path: str):
    """Plot a metric against frames since the cut: a line per rule and M, single-frame dashed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {'warm': '-', 'oracle': '--', 'detector': ':'}
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    ms = sorted({label.split('M=')[1] for label in curves if not label.startswith('single')})
    for label, curve in curves.items():
        rule, m = label.split(' M=')
        ks = sorted(curve)
        if rule == 'single-frame':
            ax.plot(ks, [100 * curve[k] for k in ks], color='k', ls='-.', lw=1,
                    label='single frame N=%s' % m)
            continue
        ax.plot(ks, [100 * curve[k] for k in ks], ls=styles[rule], marker='o', ms=3,
                color=colors[ms.index(m) % len(colors)], label='%s, M=%s' % (rule, m))
    ax.set_xlabel('frames since the cut')
    ax.set_ylabel('%s (%%)' % METRIC_NAMES[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser):
    """Add the options of ``streamdeq eval-cuts``."""
    p.add_argument('--checkpoint', default='', help='model (default: the bundled default)')
    p.add_argument('--height', type=int, default=0, help='frame height (0: the model card)')
    p.add_argument('--width', type=int, default=0, help='frame width (0: the model card)')
    p.add_argument('--clips', type=int, default=32, help='clips with a cut (and as many without)')
    p.add_argument('--cut', type=int, default=15, help='frame index of the cut')
    p.add_argument('--after', type=int, default=10, help='frames scored from the cut on')
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2], help='M values')
    p.add_argument('--threshold', type=float, default=4.0, help="the detector rule's threshold")
    p.add_argument('--sweep', type=float, nargs='*', default=[2.0, 3.0, 4.0, 6.0, 8.0],
                   help="thresholds for the detector's hit and false-positive rates")
    p.add_argument('--footage', nargs='*', default=[], metavar='VIDEO',
                   help='real videos (no labels): where the detector fires, per threshold')
    p.add_argument('--seed', type=int, default=0, help='data seed (held-out split)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--out', required=True, help='output directory')
