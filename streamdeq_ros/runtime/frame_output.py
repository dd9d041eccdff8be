"""What the pipeline gives for a frame: detections, the frame's outputs, how to read a state.

Plain records shared by :mod:`streamdeq_ros.runtime.pipeline` and its callers (the node's outputs),
plus the stage timer that fills ``FrameOutput.stages_ms``.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .tracking import IoUTracker

MASK_RESOLUTIONS = ('input', 'network')


@dataclass
class Detections:
    """Boxes (K, 4) x1 y1 x2 y2 in camera pixels, labels (K,) (1-based), scores, ids (K,)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    ids: np.ndarray

    def select(self, keep: np.ndarray) -> 'Detections':
        """Return the rows where ``keep`` is True (or the listed rows)."""
        return Detections(self.boxes[keep], self.labels[keep], self.scores[keep],
                          self.ids[keep])


@dataclass
class FrameOutput:
    """What the heads read from one state of one frame (None: the network lacks the head).

    ``mask`` (H, W) uint8 class ids; ``detections`` at or above the score threshold;
    ``persons`` the person detections the keypoints belong to (same order); ``keypoints``
    (P, J, 3) x, y (camera pixels), score.
    """

    iteration: int
    residual: float
    partial: bool
    mask: Optional[np.ndarray] = None
    detections: Optional[Detections] = None
    persons: Optional[Detections] = None
    keypoints: Optional[np.ndarray] = None
    #: refined outputs: milliseconds of the frame's batch in prepare (resize, normalise), solve
    #: (without partial reads), partials (reading partial results and their callbacks), heads
    stages_ms: Dict[str, float] = field(default_factory=dict)
    #: a deferred mask (``read_batch(defer_masks=True)``): the logits (1, C, h, w) and the size
    #: :meth:`FramePipeline.finish_mask` computes the mask at
    logits: Optional[torch.Tensor] = None
    mask_size: Optional[Tuple[int, int]] = None
    #: the frame was found to be a hard cut and its camera restarted from zeros
    cut: bool = False


def only_classes(out: FrameOutput, seg_keep: Optional[np.ndarray],
                 det_keep: Optional[np.ndarray], person_label: int) -> FrameOutput:
    """Return ``out`` with only the kept classes (None: keep all of that kind).

    ``seg_keep``: bool per class id of the mask (the others become 255); ``det_keep``: bool
    per detection label (index = label). Persons and their keypoints go with the person label.
    """
    changes = {}
    if seg_keep is not None and out.mask is not None:
        lut = np.where(seg_keep, np.arange(len(seg_keep)), 255).astype(np.uint8)
        lut = np.concatenate([lut, np.full(256 - len(lut), 255, np.uint8)])
        changes['mask'] = lut[out.mask]
    if det_keep is not None:
        if out.detections is not None:
            labels = out.detections.labels
            changes['detections'] = out.detections.select(
                (labels < len(det_keep)) & det_keep[np.minimum(labels, len(det_keep) - 1)])
        if out.persons is not None and not (0 <= person_label < len(det_keep)
                                            and det_keep[person_label]):
            changes['persons'] = out.persons.select(np.zeros(len(out.persons.ids), bool))
            changes['keypoints'] = out.keypoints[:0]
    return replace(out, **changes) if changes else out


@dataclass
class ReadSpec:
    """How to read one sample of a state: mask and camera sizes (H, W), iteration, tracker."""

    mask_size: Tuple[int, int]
    camera_size: Tuple[int, int]
    iteration: int
    residual: float
    tracker: Optional[IoUTracker] = None


def check_resolution(mask_resolution: str):
    """Refuse a ``mask_resolution`` that is not one of :data:`MASK_RESOLUTIONS`."""
    if mask_resolution not in MASK_RESOLUTIONS:
        raise ValueError('mask_resolution must be one of %s, got %r'
                         % (', '.join(MASK_RESOLUTIONS), mask_resolution))


class StageTimer:
    """Milliseconds per named stage; time spent ``aside`` is taken out of the enclosing stage."""

    def __init__(self):
        self.last = time.perf_counter()
        self.stages: Dict[str, float] = {}
        self.aside_s = 0.0

    def mark(self, name: str):
        now = time.perf_counter()
        self.stages[name] = (now - self.last - self.aside_s) * 1e3
        self.last, self.aside_s = now, 0.0

    @contextmanager
    def aside(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.aside_s += dt
            self.stages[name] = self.stages.get(name, 0.0) + dt * 1e3

    def ms(self) -> Dict[str, float]:
        return {k: round(v, 3) for k, v in self.stages.items()}
