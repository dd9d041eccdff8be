"""From a camera frame to perception outputs: everything the ROS node calls, without ROS.

:class:`FramePipeline` holds one loaded network on one device and makes one
:class:`~streamdeq_ros.runtime.stream.StreamSession` per camera. For a
frame (RGB uint8, any size) it
resizes to the network's input size, runs the session (warm start, budget, partial results)
and reads every head of the network from the one state: a class-id mask at the camera's
resolution (``'input'``) or at the network's input resolution (``'network'``), detections
(boxes in camera pixels, with instance ids from the camera's :class:`IoUTracker`) and person
keypoints inside the detected person boxes. It also draws colour masks and overlays (mask,
boxes, skeletons).
"""
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from .budget import DeadlinePlanner, IterationBudget
from .cuts import CutDetector
from .frame_output import check_resolution, Detections, FrameOutput, ReadSpec, StageTimer
from .stream import FrameResult, NonFiniteStateError, PartialResult, step_batch, StreamSession
from .tracking import IoUTracker
from ..model.card import card_solver
from ..model.heads.segmentation import class_ids
from ..model.network import HEADS, StreamDEQNet
from ..model.solvers import BATCH_SOLVERS


def _state(z: List[torch.Tensor]) -> List[torch.Tensor]:
    return z


def _stack(states: Sequence[List[torch.Tensor]]) -> List[torch.Tensor]:
    """Concatenate batch-1 states into one batched state (a single one is used as it is)."""
    if len(states) == 1:
        return states[0]
    return [torch.cat(ts) for ts in zip(*states)]


def _restart_at_cut(session: StreamSession, rgb: np.ndarray, detector: Optional[CutDetector],
                    tracker: Optional[IoUTracker]) -> bool:
    """Restart ``session`` (and ``tracker``) from zeros when ``detector`` finds a cut."""
    if detector is None or not detector.update(rgb):
        return False
    session.reset()
    session.stats.cut_resets += 1
    if tracker is not None:
        tracker.reset()
    return True


class FramePipeline:
    """One network, any number of camera sessions."""

    def __init__(self, net: StreamDEQNet, card: dict, input_size: Optional[Tuple[int, int]] = None,
                 solver: Optional[str] = None, budget: Optional[IterationBudget] = None):
        """Use ``net`` (on its device); ``input_size`` = (H, W), default the card's."""
        if not len(net.heads):
            raise ValueError('the network has no heads')
        self.net = net.eval()
        self.tasks = [t for t in HEADS if t in net.heads]
        if 'pose' in net.heads and 'detection' not in net.heads:
            raise ValueError('the network has a pose head but no detection head to find persons')
        # the detection label whose boxes the pose head reads (ValueError now, not per frame)
        self.person_label = net.person_label if 'pose' in net.heads else -1
        self.card = card
        inp = card.get('input', {})
        h, w = input_size or (inp.get('height', 96), inp.get('width', 192))
        stride = net.cfg.stride
        if h <= 0 or w <= 0 or h % stride or w % stride:
            raise ValueError('input_size must be positive multiples of %d, got %dx%d'
                             % (stride, w, h))
        self.input_size = (int(h), int(w))
        #: the solver the model card names (the node's ``solver: ''``)
        self.card_solver = card_solver(card)
        self.solver = self.solver_for(solver)
        #: the one iteration budget of every session's frames (the node replaces it live)
        self.budget = budget or IterationBudget()
        #: costs of the predictive deadline rule, shared by every session of this network
        self.planner = DeadlinePlanner()
        seg = card.get('heads', {}).get('segmentation', {})
        n = net.heads['segmentation'].num_classes if 'segmentation' in net.heads else 0
        self.classes = list(seg.get('classes', [str(i) for i in range(n)]))
        palette = np.zeros((256, 3), np.uint8)
        colours = seg.get('palette') or []
        palette[:len(colours)] = np.asarray(colours, np.uint8).reshape(-1, 3)
        self.palette = palette
        self.det_classes = net.det_classes if 'detection' in net.heads else []
        self.joints = net.joint_names if 'pose' in net.heads else []
        self.skeleton = [tuple(p) for p in card.get('heads', {}).get('pose', {})
                         .get('skeleton', [])]

    def self_test(self):
        """Solve a mid-grey frame from zeros and read every head; ValueError if not finite.

        The node runs it at configure, so weights that give a non-finite state or output stop
        start-up with a sentence instead of rejecting every frame later. The scratch session
        does not teach the deadline planner.
        """
        h, w = self.input_size
        session = StreamSession(self.net.backbone, readout=_state, solver=self.solver,
                                name='self-test')
        try:
            result = session.step(self.prepare(np.full((h, w, 3), 128, np.uint8)),
                                  self.budget)
        except NonFiniteStateError:
            raise ValueError('the model gives a non-finite state on a plain grey %dx%d frame '
                             'even from zeros: its weights are unusable' % (w, h)) from None
        with torch.inference_mode():
            p = self.net.perceive(result.outputs, score_threshold=0.0)
        outputs = {'segmentation logits': [p.seg_logits],
                   'detection boxes and scores': [t for d in p.detections or []
                                                  for t in (d['boxes'], d['scores'])],
                   'keypoints': list(p.keypoints or [])}
        bad = [name for name, ts in outputs.items()
               if any(t is not None and not torch.isfinite(t).all() for t in ts)]
        if bad:
            raise ValueError('the model gives non-finite %s on a plain grey %dx%d frame: its '
                             'weights are unusable' % (' and '.join(bad), w, h))

    def set_threads(self, threads: int):
        """Compute with ``threads`` intra-op threads from the calling thread on.

        torch's count is per calling thread (OpenMP); an onnxruntime network switches to
        sessions of that many threads. The deadline planner keeps its costs per count.
        """
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        setter = getattr(self.net, 'set_threads', None)
        if setter is not None:
            setter(threads)
        self.planner.use_threads(threads)

    @staticmethod
    def solver_batches(solver: str) -> bool:
        """Return whether frames of several cameras can share one solve with ``solver``."""
        return solver in BATCH_SOLVERS

    @property
    def device(self) -> torch.device:
        """Return the network's device, where every session's state lives."""
        return self.net.mean.device

    def solver_for(self, name: Optional[str]) -> str:
        """Return the solver a session runs for the parameter ``name`` ('' or None: the card's)."""
        return name or self.card_solver

    def new_session(self, name: str) -> StreamSession:
        """Return a fresh per-camera session on this network (its frames get :attr:`budget`).

        Its readout is the state itself, so partial results carry the state they came from.
        """
        return StreamSession(self.net.backbone, readout=_state, solver=self.solver,
                             name=name, planner=self.planner)

    def frame_done(self, result: FrameResult, now: Optional[float] = None):
        """Report that a frame's last output is out (the predictive deadline learns its cost)."""
        now = time.perf_counter() if now is None else now
        self.planner.observe_outputs((now - result.solve_end) * 1e3)

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """Resize an RGB uint8 frame to the input size; return the normalised (1, 3, H, W)."""
        h, w = self.input_size
        if rgb.shape[:2] != (h, w):
            shrink = rgb.shape[0] * rgb.shape[1] > h * w
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink
                             else cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray(rgb)
        if not rgb.flags.writeable:    # a view of message bytes at the input size: torch wants
            rgb = rgb.copy()           # a writable buffer (a small copy at network size)
        return self.net.normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None])

    def heads_for(self, heads: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
        """Return the heads to read for the names in ``heads`` (None: every head), in order.

        Pose reads the detected persons, so asking for pose reads detection too. A name the
        network has no head for raises ValueError.
        """
        if heads is None:
            return tuple(self.tasks)
        unknown = sorted(set(heads) - set(self.tasks))
        if unknown:
            raise ValueError('the network has no %s head (it has %s)'
                             % (', '.join(unknown), ', '.join(self.tasks)))
        wanted = set(heads) | ({'detection'} if 'pose' in heads else set())
        return tuple(t for t in self.tasks if t in wanted)

    def _heads_plan(self, heads, partial_heads, partial_at, tracked: bool
                    ) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """Return the (refined, partial) heads to read; bad names raise here, before a solve.

        Partial detections take their instance ids from the tracks that only refined
        detections advance: with a tracker, partial detections make the refined frame read
        detection too.
        """
        refined = self.heads_for(heads)
        partial = self.heads_for(heads if partial_heads is None else partial_heads)
        if tracked and partial_at and 'detection' in partial and 'detection' not in refined:
            refined = self.heads_for(refined + ('detection',))
        return refined, partial

    def read(self, z: List[torch.Tensor], mask_size: Tuple[int, int],
             camera_size: Tuple[int, int], iteration: int, residual: float, partial: bool,
             score_threshold: float = 0.5, tracker: Optional[IoUTracker] = None,
             heads: Optional[Sequence[str]] = None) -> FrameOutput:
        """Read the heads (default every one) from the state ``z`` of one frame (batch 1).

        Detections below ``score_threshold`` are dropped; boxes and keypoints are scaled
        from the network's input to ``camera_size`` (H, W). The ``tracker`` gives instance ids
        (a partial result does not advance it); without one every id is 0.
        """
        return self.read_batch(z, [ReadSpec(mask_size, camera_size, iteration, residual,
                                            tracker)], partial, score_threshold,
                               heads=heads)[0]

    def read_batch(self, z: List[torch.Tensor], specs: Sequence['ReadSpec'], partial: bool,
                   score_threshold: float = 0.5, defer_masks: bool = False,
                   heads: Optional[Sequence[str]] = None) -> List[FrameOutput]:
        """Read the heads once from a batched state, one :class:`ReadSpec` per sample.

        ``heads``: the names to read (default every head; see :meth:`heads_for`); an output
        whose head was not read stays None. Tracks do not survive a refined frame whose
        detections were not read: the trackers forget them (ids are never reused).
        With ``defer_masks`` the class masks are left to :meth:`finish_mask` (up-sampling the
        logits to a camera's size is the costliest step of a frame there; a caller can run it
        on another thread, or not at all when nobody wants the mask).
        """
        outs = [FrameOutput(r.iteration, r.residual, partial) for r in specs]
        names = self.heads_for(heads)
        if 'detection' not in names and not partial:
            for spec in specs:
                if spec.tracker is not None:
                    spec.tracker.reset()
        if not names:
            return outs
        with torch.inference_mode():
            p = self.net.perceive(z, heads=names, score_threshold=score_threshold)
            h, w = self.input_size
            for i, (out, spec) in enumerate(zip(outs, specs)):
                if p.seg_logits is not None:
                    out.logits, out.mask_size = p.seg_logits[i:i + 1], spec.mask_size
                    if not defer_masks:
                        self.finish_mask(out)
                if p.detections is None:
                    continue
                d = p.detections[i]
                keep = d['scores'] >= score_threshold
                cam = spec.camera_size
                scale = torch.tensor([cam[1] / w, cam[0] / h] * 2, device=d['boxes'].device)
                dets = Detections((d['boxes'][keep] * scale).cpu().numpy(),
                                  d['labels'][keep].cpu().numpy(),
                                  d['scores'][keep].cpu().numpy(),
                                  np.zeros(int(keep.sum()), np.uint32))
                if spec.tracker is not None:
                    dets.ids = spec.tracker.assign(dets.boxes, dets.labels, commit=not partial)
                out.detections = dets
                if p.keypoints is not None:
                    # perceive read the joints in the persons among the kept detections, in order
                    is_person = self.net.persons(d, score_threshold)[keep]
                    kp = p.keypoints[i].clone()
                    kp[..., :2] *= scale[:2]
                    out.persons = dets.select(is_person.cpu().numpy())
                    out.keypoints = kp.cpu().numpy()
        return outs

    def process(self, session: StreamSession, rgb: np.ndarray, iters: Optional[int] = None,
                partial_at: Sequence[int] = (), mask_resolution: str = 'input',
                on_partial: Optional[Callable[[FrameOutput], None]] = None,
                score_threshold: float = 0.5, tracker: Optional[IoUTracker] = None,
                cut_detector: Optional[CutDetector] = None, started: Optional[float] = None,
                heads: Optional[Sequence[str]] = None,
                partial_heads: Optional[Sequence[str]] = None
                ) -> Tuple[FrameResult, FrameOutput]:
        """Run one frame through ``session``; partial outputs go to ``on_partial`` at once.

        With a solver that batches (``unroll``) this is :meth:`process_batch` with one session
        (raising its :class:`NonFiniteStateError`); other solvers step the session alone.
        ``cut_detector``, ``started``, ``heads``, ``partial_heads``: see
        :meth:`process_batch`.
        """
        if self.solver_batches(session.solver):
            out = self.process_batch([session], [rgb], iters, partial_at, mask_resolution,
                                     None if on_partial is None else
                                     (lambda i, o: on_partial(o)),
                                     score_threshold, [tracker], cut_detectors=[cut_detector],
                                     started=started, heads=heads,
                                     partial_heads=partial_heads)[0]
            if isinstance(out, NonFiniteStateError):
                raise out
            return out
        check_resolution(mask_resolution)
        heads, partial_heads = self._heads_plan(heads, partial_heads, partial_at,
                                                tracker is not None)
        cut = _restart_at_cut(session, rgb, cut_detector, tracker)
        camera = rgb.shape[:2]
        size = camera if mask_resolution == 'input' else self.input_size
        timer = StageTimer()
        x = self.prepare(rgb)
        timer.mark('prepare')

        def partial(p: PartialResult):
            if on_partial is not None:
                with timer.aside('partials'):
                    on_partial(self.read(p.outputs, size, camera, p.iteration, p.residual, True,
                                         score_threshold, tracker, partial_heads))

        result = session.step(x, self.budget, iters, partial_at=partial_at, on_partial=partial,
                              started=started)
        timer.mark('solve')
        refined = self.read(result.outputs, size, camera, result.iters, result.final_residual,
                            False, score_threshold, tracker, heads)
        timer.mark('heads')
        refined.stages_ms = timer.ms()
        refined.cut = cut
        return result, refined

    def process_batch(self, sessions: Sequence[StreamSession], frames: Sequence[np.ndarray],
                      iters: Optional[int] = None, partial_at: Sequence[int] = (),
                      mask_resolution: str = 'input',
                      on_partial: Optional[Callable[[int, FrameOutput], None]] = None,
                      score_threshold: float = 0.5,
                      trackers: Optional[Sequence[Optional[IoUTracker]]] = None,
                      defer_masks: bool = False,
                      cut_detectors: Optional[Sequence[Optional[CutDetector]]] = None,
                      started: Optional[float] = None, heads: Optional[Sequence[str]] = None,
                      partial_heads: Optional[Sequence[str]] = None
                      ) -> List[Union[Tuple[FrameResult, FrameOutput], NonFiniteStateError]]:
        """Run one frame per session in one batched solve and one batched read of the heads.

        Per session it gives what :meth:`process` gives (see :func:`~streamdeq_ros.runtime.stream.
        step_batch` for tolerance, partials and non-finite states); ``on_partial(i, output)``
        names the session by its index. A session whose frame failed gets the
        :class:`NonFiniteStateError` in its place. ``defer_masks``: see :meth:`read_batch`.
        ``cut_detectors`` (one per session, or None): a session whose detector finds its frame
        to be a hard cut restarts from zeros (its tracker too) before the solve; the output
        says ``cut`` and the session counts it in ``stats.cut_resets``. ``started``: the
        ``time.perf_counter()`` at which the frames began, for the budget's deadline (default:
        now); the caller reports each frame's end with :meth:`frame_done`. ``heads`` names the
        heads read for the refined outputs (default every head: see :meth:`read_batch`),
        ``partial_heads`` those for partial results (default ``heads``; with trackers, partial
        detections make the refined frame read detection too, for their ids).
        """
        check_resolution(mask_resolution)
        trackers = list(trackers) if trackers is not None else [None] * len(sessions)
        heads, partial_heads = self._heads_plan(heads, partial_heads, partial_at,
                                                any(t is not None for t in trackers))
        timer = StageTimer()
        detectors = list(cut_detectors) if cut_detectors is not None else [None] * len(sessions)
        cuts = [_restart_at_cut(s, f, d, t)
                for s, f, d, t in zip(sessions, frames, detectors, trackers)]
        cameras = [f.shape[:2] for f in frames]
        sizes = [c if mask_resolution == 'input' else self.input_size for c in cameras]

        def spec(i, iteration, residual):
            return ReadSpec(sizes[i], cameras[i], iteration, residual, trackers[i])

        def partial(k, parts: Dict[int, PartialResult]):
            if on_partial is None:
                return
            with timer.aside('partials'):
                order = sorted(parts)
                z = _stack([parts[i].outputs for i in order])
                outs = self.read_batch(z, [spec(i, k, parts[i].residual) for i in order], True,
                                       score_threshold, defer_masks, partial_heads)
                for i, out in zip(order, outs):
                    on_partial(i, out)

        x = torch.cat([self.prepare(f) for f in frames])
        timer.mark('prepare')
        results = step_batch(sessions, x, self.budget, iters, partial_at=partial_at,
                             on_partial=partial, started=started)
        timer.mark('solve')
        done = [i for i, r in enumerate(results) if isinstance(r, FrameResult)]
        outs = self.read_batch(_stack([results[i].outputs for i in done]),
                               [spec(i, results[i].iters, results[i].final_residual)
                                for i in done], False, score_threshold, defer_masks, heads) \
            if done else []
        timer.mark('heads')
        stages = timer.ms()
        paired: List = list(results)
        for i, out in zip(done, outs):
            out.stages_ms = dict(stages)
            out.cut = cuts[i]
            paired[i] = (results[i], out)
        return paired

    def finish_mask(self, out: FrameOutput) -> Optional[np.ndarray]:
        """Compute a deferred class mask from the output's logits (once); return the mask."""
        if out.mask is None and out.logits is not None:
            with torch.inference_mode():
                out.mask = class_ids(out.logits, out.mask_size)[0].to(torch.uint8).cpu().numpy()
            out.logits = None
        return out.mask

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Return the RGB colours of a class-id mask (the card's palette).

        OpenCV's table look-up: 9x faster than numpy indexing at 1280x720 on this CPU.
        """
        return cv2.LUT(cv2.cvtColor(np.ascontiguousarray(mask), cv2.COLOR_GRAY2RGB),
                       self.palette.reshape(256, 1, 3))

    def overlay(self, rgb: np.ndarray, out: FrameOutput, alpha: float = 0.5) -> np.ndarray:
        """Draw an output over the frame: the colour mask blended, boxes, skeletons."""
        image = rgb.copy()
        if out.mask is not None:
            colour = self.colorize(out.mask)
            if colour.shape[:2] != rgb.shape[:2]:
                colour = cv2.resize(colour, (rgb.shape[1], rgb.shape[0]),
                                    interpolation=cv2.INTER_NEAREST)
            image = cv2.addWeighted(rgb, 1 - alpha, colour, alpha, 0)
        if out.detections is not None:
            for box, label in zip(out.detections.boxes, out.detections.labels):
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                colour = (255, 255, 0) if label == self.person_label else (255, 64, 0)
                cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1, cv2.LINE_AA)
        if out.keypoints is not None:
            for person in out.keypoints:
                for a, b in self.skeleton:
                    pa, pb = person[a], person[b]
                    cv2.line(image, (int(round(pa[0])), int(round(pa[1]))),
                             (int(round(pb[0])), int(round(pb[1]))), (0, 255, 0), 1,
                             cv2.LINE_AA)
        return image
