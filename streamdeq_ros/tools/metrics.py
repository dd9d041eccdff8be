"""Scores of the streaming evaluation: mIoU, mAP@50 and PCKh, each over a stream of frames.

Segmentation and detection use torchmetrics (a confusion matrix; MeanAveragePrecision with
pycocotools); PCKh is counted here. Under torchrun every score sums the counts of all
processes when computed, so each process returns the score of all shards.
"""
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.detection import MeanAveragePrecision

from ..data.clips import LabelledClip

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


def seconds_per_frame(one: Callable[[torch.Tensor], None], clip: LabelledClip, frames: int,
                      device: torch.device) -> float:
    """Time ``one(frame)`` on ``frames`` frames of ``clip`` (uint8 (1, 3, H, W)), one at a time.

    The first frame is a warm-up, not timed; on CUDA the device is synchronised around the run.
    """
    seq = [torch.from_numpy(clip.frames[i % len(clip.frames)]).permute(2, 0, 1)[None]
           for i in range(frames + 1)]
    one(seq[0])
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for img in seq[1:]:
        one(img)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / frames
