"""The training objective of IL, UR and SUR: the state a batch is trained through, the losses.

IL solves with Broyden without a graph and applies f once more with one (the IFT
approximation); UR unrolls a fixed number of iterations with the graph; SUR draws that number
per batch (:func:`draw_unrolls`). :class:`TrainStep` is the forward that DistributedDataParallel
wraps under torchrun.
"""
from typing import Dict

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..data import street
from ..model.heads.common import finest_features
from ..model.heads.pose import gaussian_targets
from ..model.network import StreamDEQNet
from ..model.solvers import broyden, unroll

VARIANTS = ('sur', 'ur', 'il')


def draw_unrolls(variant: str, step: int, seed: int, max_unroll: int) -> int:
    """Unroll count of mini-batch ``step``: uniform 1..max for SUR, max for UR (deterministic)."""
    if variant != 'sur':
        return max_unroll
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return int(torch.randint(1, max_unroll + 1, (1,), generator=g))


def forward_train(net: StreamDEQNet, images: torch.Tensor, variant: str, unrolls: int,
                  f_thres: int, implicit: bool):
    """Return the state of a training batch (graph kept) and the number of f evaluations."""
    bb = net.backbone
    u = bb.inject(images)
    z0 = bb.zeros(u)
    bb.fullstage.reset_dropout(z0)

    def f(z):
        return bb.f(z, u)

    if variant == 'il' and implicit:
        with torch.no_grad():
            z_star = broyden(f, z0, f_thres).z
        z = f([t.detach() for t in z_star])          # 1-step (Jacobian-free) gradient
        n_f = f_thres + 2
    else:
        z = unroll(f, z0, unrolls).z
        n_f = unrolls
    return z, n_f


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (ignore 255) of logits upsampled to the label size."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode='bilinear', align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=street.IGNORE_INDEX)


def pose_loss(net: StreamDEQNet, z, person_boxes, keypoints, features=None) -> torch.Tensor:
    """Heatmap MSE (simple baselines) over the annotated joints of the given person boxes."""
    if sum(len(b) for b in person_boxes) == 0:
        return z[0].new_zeros(())
    head = net.heads['pose']
    heat, crops = head(z, person_boxes, features)
    target, weight = gaussian_targets(torch.cat(list(keypoints)), crops, head.heatmap_size)
    err = (heat - target) ** 2 * weight[..., None, None]
    return err.mean()


def task_losses(net: StreamDEQNet, z, masks, targets, pose_weight: float) -> Dict:
    """Loss terms of every head of ``net`` on the state ``z`` (a dict; their sum is trained)."""
    losses = {}
    features = finest_features(z) if {'segmentation', 'pose'} & set(net.heads) else None
    if 'segmentation' in net.heads:
        losses['seg'] = seg_loss(net.heads['segmentation'](z, features), masks)
    if 'detection' in net.heads:
        _, det = net.heads['detection'](z, [{'boxes': t['boxes'], 'labels': t['labels']}
                                            for t in targets])
        losses.update(det)
    if 'pose' in net.heads:
        losses['pose'] = pose_weight * pose_loss(net, z, [t['person_boxes'] for t in targets],
                                                 [t['keypoints'] for t in targets], features)
    return losses


class TrainStep(torch.nn.Module):
    """One training forward: state of the batch (graph kept) and the task losses.

    Wrapped in DistributedDataParallel under torchrun, so its forward is what DDP sees.
    """

    def __init__(self, net: StreamDEQNet, variant: str, f_thres: int, pose_weight: float):
        """Hold ``net`` and the loss settings."""
        super().__init__()
        self.net = net
        self.variant, self.f_thres, self.pose_weight = variant, f_thres, pose_weight

    def forward(self, images, masks, targets, unrolls: int, implicit: bool) -> Dict:
        """Return the loss terms of one batch."""
        with parametrize.cached():
            z, _ = forward_train(self.net, images, self.variant, unrolls, self.f_thres, implicit)
            return task_losses(self.net, z, masks, targets, self.pose_weight)
