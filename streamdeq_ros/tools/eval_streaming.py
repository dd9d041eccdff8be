"""``streamdeq eval-streaming``: accuracy with real latency (streaming perception).

The protocol of Li, Wang and Ramanan ("Towards Streaming Perception", ECCV 2020), here for
segmentation, detection and pose. A camera delivers frame k at time k / rate. One process
handles one camera the way the node does: when it is free it takes the newest frame that has
arrived and drops the older ones waiting (the node keeps one frame per camera); when nothing is
waiting it waits for the next frame. Each frame's processing time is measured on this machine
as the frames are processed in order (``time.perf_counter``, everything the node's pipeline
does: resize, normalise, solve, heads, arg-max), divided by ``--speed`` (an emulated faster
computer: labelled so in every report). An output is *published* when it is complete: the
refined output at its frame's end and, with partial outputs, the partial one as soon as it has
been read (it stands until the refined one replaces it).

Scores. At each frame k's arrival the newest output published by then (at or before k / rate)
is scored against the labels of frame k, as it is: masks, boxes and keypoints of an older frame
are not moved; that they no longer fit the scene is what the protocol measures. Streaming mIoU,
mAP@50 and PCKh@0.5 (joints read in the model's own detected persons, matched to the frame's
true persons by box IoU >= 0.5; a true person without a match counts all its joints wrong) are
accumulated over every frame of every clip after the warm-up: frames before ``--warmup`` seconds
or before the clip's first output are not scored (their number is reported). The instantaneous
scores of the same run score each processed frame's refined output against its own frame.

World and camera. The generator's world moves at ``WORLD_RATE`` frames per second of world
time; a camera of rate r (at most 30 Hz) sees world frame floor(k x 30 / r), the one at or
before its instant k / r, so a 10 Hz camera sees three times the motion per frame of a 30 Hz
one (as a real one does). Every model sees the same world clips
(the held-out split) at its own input size.

Models: StreamDEQ checkpoints at M iterations per frame (warm-started; ``--partial-iters`` adds
the partial output after that many iterations; the predictive deadline is the frame period,
``--deadline``; counted from when the process takes the frame, as the node's), the same
checkpoint single-frame (N iterations from zeros every frame, no deadline), and
single-frame torchvision peers of ``streamdeq train-peer``. Runs are interleaved (repeat ->
rate -> model) so a slow spell of a shared machine hits every model alike; ``--repeats`` gives
the spread over runs.

Outputs in ``--out``: ``results.json``, ``table.md``, ``streaming_<metric>_vs_rate.png`` (one
line per model, streaming solid, instantaneous dotted); ``--readme FILE`` rewrites the
streaming block of FILE.
"""
from dataclasses import dataclass, field
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .evaluate import match_persons
from .metrics import (DetectionScore, METRIC_NAMES, POSE_DET_SCORE, PoseScore,
                      SegmentationScore)
from ..data import street
from ..data.clips import derive_seed, DET_CLASSES, frame_targets
from ..model.heads.segmentation import class_ids
from ..runtime.backends import BACKENDS
from ..runtime.budget import IterationBudget
from ..runtime.frame_output import FrameOutput
from ..runtime.pipeline import FramePipeline

#: world frames per second of world time of the generated clips
WORLD_RATE = 30.0
README_STREAMING = ('<!-- streamdeq-streaming:start -->', '<!-- streamdeq-streaming:end -->')
#: the scores, in report order
STREAM_METRICS = ('miou', 'map50', 'pckh')


@dataclass
class Answer:
    """One published output, in the pixels of the frame it was computed on (None: not read)."""

    mask: Optional[np.ndarray] = None                       # (H, W) class ids
    detections: Optional[Dict[str, torch.Tensor]] = None    # boxes (K, 4), scores, labels
    persons: Optional[torch.Tensor] = None                  # (P, 4) person boxes, by score
    keypoints: Optional[torch.Tensor] = None                # (P, J, 3)


def answer_of(out: FrameOutput, person_label: int) -> Answer:
    """Return the :class:`Answer` of a pipeline output (persons scoring >= 0.5 carry joints)."""
    dets = persons = kps = None
    if out.detections is not None:
        d = out.detections
        dets = {'boxes': torch.from_numpy(d.boxes).float(),
                'scores': torch.from_numpy(d.scores).float(),
                'labels': torch.from_numpy(d.labels.astype(np.int64))}
    if out.keypoints is not None and out.persons is not None:
        keep = out.persons.scores >= POSE_DET_SCORE
        persons = torch.from_numpy(out.persons.boxes[keep]).float()
        kps = torch.from_numpy(out.keypoints[keep]).float()
    return Answer(out.mask, dets, persons, kps)


@dataclass
class CameraFrame:
    """Frame k of a camera: RGB uint8 (H, W, 3) and the world's labels of that instant."""

    rgb: np.ndarray
    labels: street.FrameLabels


#: ``on_partial(answer, at_ms=None)``: a partial output is out (``at_ms``: its time, if the
#: runner reports times itself; else the protocol reads the clock)
OnPartial = Callable[..., None]


class StreamDEQRunner:
    """A StreamDEQ checkpoint through the node's pipeline: warm-started or single-frame."""

    def __init__(self, pipeline: FramePipeline, iters: int, partial_iters: int = 0,
                 deadline_ms: float = 0.0, single_frame: bool = False):
        """Run ``iters`` per frame; ``partial_iters`` > 0 publishes that partial output."""
        if partial_iters and partial_iters >= iters:
            raise ValueError('partial_iters (%d) must be below iters (%d): there is no '
                             'partial output otherwise' % (partial_iters, iters))
        self.pipeline = pipeline
        self.budget = IterationBudget(iters, deadline_ms=deadline_ms)
        self.partial_at = [partial_iters] if partial_iters else []
        self.single_frame = single_frame
        self.tasks = list(pipeline.tasks)
        self.session = None
        self.iterations: List[int] = []

    def reset(self):
        """Start a new clip (the state starts from zeros)."""
        self.session = self.pipeline.new_session('eval-streaming')

    def set_deadline(self, deadline_ms: float):
        """Use a frame budget of ``deadline_ms`` (0: none), predictive as the node's default."""
        self.budget = IterationBudget(self.budget.iters, deadline_ms=deadline_ms)

    def run(self, frame: CameraFrame, started: float, on_partial: OnPartial):
        """Process one frame; return (refined answer, None: the protocol times it)."""
        if self.single_frame:
            self.session.reset()
        label = self.pipeline.person_label
        self.pipeline.budget = self.budget
        result, out = self.pipeline.process(
            self.session, frame.rgb, partial_at=self.partial_at, started=started,
            on_partial=lambda o: on_partial(answer_of(o, label)))
        self.pipeline.frame_done(result)
        self.iterations.append(result.iters)
        return answer_of(out, label), None


class PeerRunner:
    """A single-frame torchvision peer (``streamdeq train-peer``): one frame at a time."""

    def __init__(self, peer):
        """Wrap a loaded :class:`~streamdeq_ros.tools.peers.Peer`."""
        self.peer = peer
        self.tasks = [peer.task]

    def reset(self):
        """Nothing is carried between frames."""

    def run(self, frame: CameraFrame, started: float, on_partial: OnPartial):
        """Process one frame; return (answer, None)."""
        out = self.peer(torch.from_numpy(frame.rgb).permute(2, 0, 1)[None])
        if 'seg_logits' in out:
            mask = class_ids(out['seg_logits'], frame.rgb.shape[:2])[0].to(torch.uint8)
            return Answer(mask=mask.cpu().numpy()), None
        d = out['detections'][0]
        keys = ('boxes', 'scores', 'labels')
        return Answer(detections={k: d[k].detach().cpu() for k in keys}), None


class LabelRunner:
    """The reference model: it answers every frame with that frame's own labels.

    Its cost is fixed (``ms``, with a partial answer at ``partial_ms``), not measured, so it
    shows the protocol alone: instantaneously it scores 100 %; streamed, what staleness costs.
    """

    def __init__(self, ms: float, partial_ms: Optional[float] = None):
        """Take ``ms`` per frame (emulated)."""
        self.ms, self.partial_ms = ms, partial_ms
        self.tasks = ['segmentation', 'detection', 'pose']

    def reset(self):
        """Nothing is carried between frames."""

    @staticmethod
    def reference(labels: street.FrameLabels) -> Answer:
        """Return the labels of a frame as the reference output (boxes with score 1)."""
        t = frame_targets(labels)
        dets = {'boxes': t['boxes'], 'scores': torch.ones(len(t['boxes'])),
                'labels': t['labels']}
        return Answer(labels.mask.copy(), dets, t['person_boxes'], t['keypoints'])

    def run(self, frame: CameraFrame, started: float, on_partial: OnPartial):
        """Answer with the frame's labels after the fixed cost."""
        if self.partial_ms is not None:
            on_partial(self.reference(frame.labels), at_ms=self.partial_ms)
        return self.reference(frame.labels), self.ms


@dataclass
class Published:
    """An output that became available at ``time`` (s), answering camera frame ``frame``."""

    time: float
    frame: int
    partial: bool
    answer: Answer


@dataclass
class Timeline:
    """What one camera's clip gave: every output with its time, and what was processed."""

    rate: float
    frames: int
    published: List[Published] = field(default_factory=list)
    processed: List[Tuple[int, float, float]] = field(default_factory=list)  # k, start, done

    @property
    def dropped(self) -> int:
        """Return the camera frames never processed."""
        return self.frames - len(self.processed)

    def latencies_ms(self) -> List[float]:
        """Return, per processed frame, arrival to refined output in milliseconds."""
        return [(done - k / self.rate) * 1e3 for k, _, done in self.processed]


def simulate(runner, frames: Sequence[CameraFrame], rate: float, speed: float = 1.0,
             clock: Callable[[], float] = time.perf_counter) -> Timeline:
    """Play ``frames`` at ``rate`` Hz through ``runner`` with measured processing times.

    Times are emulated seconds from the clip's first frame: a frame's duration is its measured
    wall time divided by ``speed``. The frame's deadline clock starts when the process takes
    it, as the node's ``deadline_ms`` does (its wait before is not counted).
    """
    if rate <= 0 or speed <= 0:
        raise ValueError('rate and speed must be positive, got %r and %r' % (rate, speed))
    line = Timeline(rate, len(frames))
    runner.reset()
    taken, free = -1, 0.0
    while taken < len(frames) - 1:
        newest = min(int(math.floor(free * rate + 1e-9)), len(frames) - 1)
        if newest > taken:
            k, start = newest, free
        else:
            k = taken + 1
            start = k / rate
        t0 = clock()
        parts = []

        def on_partial(answer: Answer, at_ms: Optional[float] = None, _k=k, _start=start):
            ms = at_ms if at_ms is not None else (clock() - t0) * 1e3 / speed
            parts.append(Published(_start + ms / 1e3, _k, True, answer))

        answer, ms = runner.run(frames[k], t0, on_partial)
        if ms is None:
            ms = (clock() - t0) * 1e3 / speed
        done = start + ms / 1e3
        line.published.extend(parts)
        line.published.append(Published(done, k, False, answer))
        line.processed.append((k, start, done))
        taken, free = k, done
    return line


def new_scores(tasks: Sequence[str], num_classes: int) -> Dict:
    """Return fresh accumulators for the scored metrics of ``tasks``."""
    out = {}
    if 'segmentation' in tasks:
        out['miou'] = SegmentationScore(num_classes, street.CLASSES)
    if 'detection' in tasks:
        out['map50'] = DetectionScore(DET_CLASSES)
    if 'pose' in tasks:
        out['pckh'] = PoseScore(street.JOINTS)
    return out


def score_answer(answer: Answer, labels: street.FrameLabels, scores: Dict):
    """Add one answer scored against one frame's labels."""
    targets = frame_targets(labels) if set(scores) - {'miou'} else None
    if 'miou' in scores:
        scores['miou'].update(torch.from_numpy(np.ascontiguousarray(answer.mask))[None],
                              torch.from_numpy(labels.mask)[None])
    if 'map50' in scores:
        scores['map50'].update([answer.detections], [targets])
    if 'pckh' in scores:
        pred = match_persons(answer.persons, answer.keypoints, targets['person_boxes'],
                             len(street.JOINTS))
        scores['pckh'].update(pred, targets['keypoints'], targets['head_sizes'])


def score_timeline(line: Timeline, frames: Sequence[CameraFrame], warmup_s: float,
                   stream: Dict, instant: Dict) -> Dict:
    """Score one clip's timeline into ``stream`` and ``instant``; return its counts.

    Streaming: at each frame k from the warm-up on, the newest output published at or before
    k / rate against frame k's labels. Instantaneous: each processed frame's refined output
    against its own labels (same warm-up).
    """
    pubs = sorted(line.published, key=lambda p: p.time)
    first = pubs[0].time
    j, current = 0, None
    scored, unscored, stale, partial_used = 0, 0, [], 0
    for k in range(line.frames):
        t = k / line.rate
        while j < len(pubs) and pubs[j].time <= t + 1e-12:
            current = pubs[j]
            j += 1
        if t < warmup_s or t < first:
            unscored += 1
            continue
        score_answer(current.answer, frames[k].labels, stream)
        scored += 1
        stale.append(k - current.frame)
        partial_used += current.partial
    refined = [p for p in pubs if not p.partial and p.frame / line.rate >= max(warmup_s, first)]
    for p in refined:
        score_answer(p.answer, frames[p.frame].labels, instant)
    return {'scored': scored, 'unscored': unscored, 'staleness': stale,
            'partial_used': partial_used, 'instant_scored': len(refined)}


def camera_frames(seed: int, index: int, height: int, width: int, rate: float,
                  duration: float, cache: Dict) -> List[CameraFrame]:
    """Return the frames a ``rate`` Hz camera sees of held-out world clip ``index``."""
    if not 0 < rate <= WORLD_RATE:
        raise ValueError('camera rates above the world rate (%g Hz) would repeat world frames, '
                         'got %g' % (WORLD_RATE, rate))
    count = int(round(duration * rate))
    # the world frame at or before the camera's instant k / rate
    world = [int(math.floor(k * WORLD_RATE / rate + 1e-9)) for k in range(count)]
    key = (seed, index, height, width)
    if key not in cache:
        length = int(round(duration * WORLD_RATE)) + 1
        cache[key] = (street.StreetClip(derive_seed(seed, 'val', index), height, width,
                                        length=length), {})
    clip, rendered = cache[key]
    out = []
    for w in world:
        if w not in rendered:
            rendered[w] = CameraFrame(*clip[min(w, clip.length - 1)])
        out.append(rendered[w])
    return out


def _computed(scores: Dict, count: int) -> Dict[str, float]:
    """Return each score's value (NaN when nothing was scored)."""
    return {m: (s.compute()[m] if count else float('nan')) for m, s in scores.items()}


def evaluate_runner(runner, clips: Sequence[Sequence[CameraFrame]], rate: float,
                    warmup_s: float, num_classes: int, speed: float = 1.0) -> Dict:
    """Run the protocol for one model at one rate over ``clips``; return its scores."""
    stream, instant = new_scores(runner.tasks, num_classes), new_scores(runner.tasks,
                                                                        num_classes)
    counts = {'frames': 0, 'processed': 0, 'scored': 0, 'unscored': 0, 'partial_used': 0,
              'instant_scored': 0}
    stale, latency = [], []
    for frames in clips:
        line = simulate(runner, frames, rate, speed)
        c = score_timeline(line, frames, warmup_s, stream, instant)
        counts['frames'] += line.frames
        counts['processed'] += len(line.processed)
        for key in ('scored', 'unscored', 'partial_used', 'instant_scored'):
            counts[key] += c[key]
        stale += c['staleness']
        latency += line.latencies_ms()
    out = {'stream': _computed(stream, counts['scored']),
           'instant': _computed(instant, counts['instant_scored'])}
    out.update(counts)
    out['dropped'] = counts['frames'] - counts['processed']
    out['staleness_frames'] = float(np.mean(stale)) if stale else float('nan')
    out['latency_ms_p50'] = float(np.median(latency))
    out['latency_ms_p95'] = float(np.percentile(latency, 95))
    return out


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

def _spread(values: Sequence[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return '%.1f' % values[0]
    return '%.1f ±%.1f' % (float(np.mean(values)), (max(values) - min(values)) / 2)


def table_markdown(results: Dict) -> str:
    """Return one table per metric: model x rate -> streaming (instantaneous) score."""
    rates = results['rates']
    lines = []
    for metric in STREAM_METRICS:
        rows = [(name, r) for name, r in results['models'].items()
                if metric in r['runs'][str(rates[0])][0]['stream']]
        if not rows:
            continue
        lines += ['', '**Streaming %s** (instantaneous in brackets; processed / camera frames, '
                  'the range over repeats; p50 latency, frame arrival to refined output; each '
                  'model scored at its input size)' % METRIC_NAMES[metric], '',
                  '| model | input | ' + ' | '.join('%g Hz' % r for r in rates) + ' |',
                  '|---|---|' + '---|' * len(rates)]
        for name, r in rows:
            cells = []
            for rate in rates:
                runs = r['runs'][str(rate)]
                done = sorted({x['processed'] for x in runs})
                span = str(done[0]) if len(done) == 1 else '%d–%d' % (done[0], done[-1])
                cells.append('%s (%s); %s/%d; %.0f ms' % (
                    _spread([x['stream'][metric] for x in runs]),
                    _spread([x['instant'][metric] for x in runs]), span, runs[0]['frames'],
                    float(np.median([x['latency_ms_p50'] for x in runs]))))
            lines.append('| %s | %s | %s |' % (name, '%d×%d' % tuple(r['input'][::-1]),
                                               ' | '.join(cells)))
    speed = results['speed']
    runtimes = sorted({r.get('runtime', 'torch') for r in results['models'].values()})
    lines += ['', '%d held-out world clips of %g s, scored after %g s; %s (%s); %d repeat(s) '
              '(± half the range)%s.' % (
                  results['clips'], results['duration'], results['warmup'], results['device'],
                  ', '.join(runtimes), results['repeats'],
                  '' if speed == 1 else '; processing times divided by %g: EMULATED faster '
                  'computer' % speed)]
    return '\n'.join(lines).strip() + '\n'


def plot_rates(results: Dict, path: str, metric: str) -> bool:
    """Plot streaming (solid) and instantaneous (dotted) ``metric`` against camera rate.

    One colour per model; runs with partial outputs are drawn with square markers.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rates = results['rates']
    rows = [(name, r) for name, r in results['models'].items()
            if metric in r['runs'][str(rates[0])][0]['stream']]
    if not rows:
        return False
    colours = plt.get_cmap('tab20').colors
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for i, (name, r) in enumerate(rows):
        colour = colours[i % len(colours)]
        marker = 's' if '+partial' in name else 'o'
        for kind, style in (('stream', '-'), ('instant', ':')):
            ys = [100 * float(np.mean([x[kind][metric] for x in r['runs'][str(rate)]]))
                  for rate in rates]
            ax.plot(rates, ys, style, marker=marker if kind == 'stream' else None,
                    color=colour, label=name if kind == 'stream' else None)
    ax.set_xlabel('camera rate (Hz)')
    ax.set_ylabel('%s: streaming (solid), instantaneous (dotted)' % METRIC_NAMES[metric])
    ax.set_xticks(rates)
    title = 'streaming %s, %s' % (METRIC_NAMES[metric], results['device'])
    if results['speed'] != 1:
        title += ' (EMULATED x%g)' % results['speed']
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_reports(results: Dict, out_dir: str) -> Dict[str, str]:
    """Write results.json, table.md and the plots; return their paths by kind."""
    import json
    os.makedirs(out_dir, exist_ok=True)
    paths = {'json': os.path.join(out_dir, 'results.json'),
             'table': os.path.join(out_dir, 'table.md')}
    with open(paths['json'], 'w') as fh:
        json.dump(results, fh, indent=1)
    with open(paths['table'], 'w') as fh:
        fh.write(table_markdown(results))
    for metric in STREAM_METRICS:
        path = os.path.join(out_dir, 'streaming_%s_vs_rate.png' % metric)
        if plot_rates(results, path, metric):
            paths['plot_' + metric] = path
    return paths


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def add_arguments(p):
    """Add the ``eval-streaming`` options to ``p``."""
    p.add_argument('--model', action='append', default=[], metavar='NAME=PATH',
                   help='a StreamDEQ checkpoint (file, folder, bundled name or '
                        'official:FILE[:CONFIG]), repeatable')
    p.add_argument('--peer', action='append', default=[], metavar='NAME=PATH',
                   help='a single-frame peer of `streamdeq train-peer`, repeatable')
    p.add_argument('--iters', type=int, nargs='+', default=[1, 2, 4], help='M values')
    p.add_argument('--partial-iters', type=int, default=1,
                   help='also run each M > this with the partial output after this many '
                        'iterations (0: no partial runs)')
    p.add_argument('--single-frame-iters', type=int, default=-1,
                   help='N of the single-frame run from zeros (-1: the model card, 0: none)')
    p.add_argument('--deadline', choices=('period', 'off'), default='period',
                   help="the frames' predictive deadline: the camera period, or none")
    p.add_argument('--rates', type=float, nargs='+', default=[10.0, 15.0, 30.0],
                   help='camera rates (Hz)')
    p.add_argument('--clips', type=int, default=8, help='held-out world clips')
    p.add_argument('--duration', type=float, default=3.0, help='seconds per clip')
    p.add_argument('--warmup', type=float, default=0.5,
                   help='seconds at the start of each clip that are not scored')
    p.add_argument('--speed', type=float, default=1.0,
                   help='divide the measured processing times by this (EMULATES a faster '
                        'computer; reports say so)')
    p.add_argument('--repeats', type=int, default=1, help='runs (the spread is reported)')
    p.add_argument('--backend', choices=BACKENDS, default='auto',
                   help='runtime of the StreamDEQ models (as the node parameter; auto: '
                        'onnxruntime on the CPU when installed)')
    p.add_argument('--seed', type=int, default=0, help='data seed (held-out split)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--readme', default=None,
                   help='also write the tables and plots between the streaming markers of '
                        'this file')


def _check(args) -> Optional[str]:
    if not args.model and not args.peer:
        return 'give at least one --model or --peer'
    if any(m < 1 for m in args.iters):
        return '--iters must be >= 1'
    if args.partial_iters < 0:
        return '--partial-iters must be >= 0'
    if any(not (r > 0 and math.isfinite(r)) for r in args.rates):
        return '--rates must be positive'
    if not args.speed > 0 or not math.isfinite(args.speed):
        return '--speed must be positive'
    if args.repeats < 1 or args.clips < 1:
        return '--repeats and --clips must be >= 1'
    if not (math.isfinite(args.duration) and args.duration > args.warmup >= 0):
        return '--duration must be finite and longer than --warmup (>= 0)'
    for rate in args.rates:
        if rate > WORLD_RATE:
            return ('--rates: %g Hz is above the %g frames per second of the generated world (its '
                    'frames would repeat)' % (rate, WORLD_RATE))
        count = int(round(args.duration * rate))
        if count < 1 or (count - 1) / rate < args.warmup:
            return ('--duration %g s at %g Hz leaves no frame after the --warmup of %g s'
                    % (args.duration, rate, args.warmup))
    names = ['%d' % m for m in args.iters]
    if len(set(names)) != len(names):
        return '--iters lists an M twice'
    model_names = [s.partition('=')[0] for s in args.model + args.peer]
    twice = sorted({n for n in model_names if model_names.count(n) > 1})
    if twice:
        return 'two models are named %s (each NAME labels its rows)' % ', '.join(twice)
    for spec in args.model + args.peer:
        name, _, path = spec.partition('=')
        if not name or not path:
            return '--model and --peer need NAME=PATH, got %r' % spec
    if args.readme:
        try:
            with open(args.readme) as fh:
                text = fh.read()
        except OSError as exc:
            return '--readme %s cannot be read: %s' % (args.readme, exc.strerror)
        if not all(m in text for m in README_STREAMING):
            return '--readme %s has no %s ... %s markers' % ((args.readme,) + README_STREAMING)
        if not os.access(args.readme, os.W_OK):
            return '--readme %s is not writable' % args.readme
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        return '--out %s cannot be made: %s' % (args.out, exc.strerror)
    if not os.access(args.out, os.W_OK):
        return '--out %s is not writable' % args.out
    return None


def _runners(args) -> List[Tuple[str, object, Tuple[int, int], int, str]]:
    """Return (name, runner, input size, classes, runtime in words) of every model run."""
    from ..model.checkpoint import CheckpointError
    from ..models import resolve_checkpoint
    from ..runtime.backends import open_net
    from .peers import load_peer
    out = []
    for spec in args.model:
        name, _, path = spec.partition('=')
        try:
            net, card, _, runtime = open_net(resolve_checkpoint(path), args.backend, 'cpu',
                                             threads=args.threads)
        except (CheckpointError, ValueError, ImportError) as exc:
            raise SystemExit('streamdeq eval-streaming: %s' % exc)
        size = (card['input']['height'], card['input']['width'])
        n_cls = net.heads['segmentation'].num_classes if 'segmentation' in net.heads else 0
        for m in args.iters:
            parts = [0] + ([args.partial_iters] if 0 < args.partial_iters < m else [])
            for p in parts:
                runner = StreamDEQRunner(FramePipeline(net, card), m, p)
                out.append(('%s M=%d%s' % (name, m, ' +partial@%d' % p if p else ''),
                            runner, size, n_cls, runtime))
        n = args.single_frame_iters
        if n < 0:
            n = int(card.get('inference', {}).get('single_frame_iters', 20))
        if n:
            out.append(('%s N=%d single-frame' % (name, n),
                        StreamDEQRunner(FramePipeline(net, card), n, single_frame=True),
                        size, n_cls, runtime))
    for spec in args.peer:
        name, _, path = spec.partition('=')
        try:
            peer = load_peer(path, name)
        except CheckpointError as exc:
            raise SystemExit('streamdeq eval-streaming: %s' % exc)
        out.append(('%s (single-frame)' % name, PeerRunner(peer),
                    (peer.card['input']['height'], peer.card['input']['width']),
                    len(street.CLASSES), 'torch'))
    return out


def run(args) -> int:
    """Entry point of ``streamdeq eval-streaming``."""
    import shlex
    from .reports import update_readme
    problem = _check(args)
    if problem:
        raise SystemExit('streamdeq eval-streaming: %s' % problem)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.partial_iters and args.model and args.partial_iters >= max(args.iters):
        print('note: no M of --iters is above --partial-iters %d: no runs with partial outputs'
              % args.partial_iters)
    runners = _runners(args)
    rates = sorted(set(args.rates))
    device = 'cpu, %d threads' % (args.threads or torch.get_num_threads())
    command = 'streamdeq eval-streaming ' + ' '.join(shlex.quote(a) for a in args.argv)
    results = {'command': command,
               'rates': rates, 'clips': args.clips, 'duration': args.duration,
               'warmup': args.warmup, 'speed': args.speed, 'repeats': args.repeats,
               'world_rate': WORLD_RATE, 'device': device, 'deadline': args.deadline,
               'models': {name: {'input': list(size), 'runtime': runtime,
                                 'runs': {str(r): [] for r in rates}}
                          for name, _, size, _, runtime in runners}}
    cache: Dict = {}
    bar = tqdm(total=args.repeats * len(rates) * len(runners), desc='eval-streaming',
               unit='run')
    for _ in range(args.repeats):
        for rate in rates:
            for name, runner, size, n_cls, _ in runners:
                if isinstance(runner, StreamDEQRunner) and not runner.single_frame:
                    runner.set_deadline(1e3 / rate * args.speed
                                        if args.deadline == 'period' else 0.0)
                clips = [camera_frames(args.seed, i, size[0], size[1], rate, args.duration,
                                       cache) for i in range(args.clips)]
                r = evaluate_runner(runner, clips, rate, args.warmup, n_cls, args.speed)
                if isinstance(runner, StreamDEQRunner):
                    r['iters_mean'] = float(np.mean(runner.iterations))
                    runner.iterations.clear()
                results['models'][name]['runs'][str(rate)].append(r)
                bar.update(1)
                shown = ', '.join('%s %.3f (%.3f)' % (METRIC_NAMES[m], v, r['instant'][m])
                                  for m, v in r['stream'].items())
                bar.write('%s @%g Hz: %s; %d/%d processed' % (
                    name, rate, shown,
                    r['processed'], r['frames']))
    bar.close()
    paths = write_reports(results, args.out)
    if args.readme:
        def rel(p):
            return os.path.relpath(p, os.path.dirname(os.path.abspath(args.readme)))
        update_readme(args.readme, table_markdown(results),
                      [rel(paths[k]) for k in sorted(paths) if k.startswith('plot_')],
                      results['command'], README_STREAMING)
    print('wrote %s' % ', '.join(sorted(paths.values())))
    return 0
