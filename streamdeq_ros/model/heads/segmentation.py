"""Segmentation head of MDEQ: upsample all scales, concatenate, 1x1 conv, BN, ReLU, classes."""
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F


class SegmentationHead(nn.Module):
    """Per-pixel class logits at the resolution of the finest MDEQ branch.

    The layer is named ``last_layer`` as in the official MDEQ segmentation model, so its
    checkpoint keys load unchanged.
    """

    def __init__(self, num_channels: Sequence[int], num_classes: int, bn_momentum: float = 0.01):
        """Build for branch widths ``num_channels`` and ``num_classes`` outputs."""
        super().__init__()
        total = int(sum(num_channels))
        self.num_classes = num_classes
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, total, kernel_size=1),
            nn.BatchNorm2d(total, momentum=bn_momentum),
            nn.ReLU(),
            nn.Conv2d(total, num_classes, kernel_size=1))

    def forward(self, z: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return (N, classes, H0, W0) logits for the state ``z``."""
        h, w = z[0].shape[-2:]
        feats = [z[0]] + [F.interpolate(t, size=(h, w), mode='bilinear', align_corners=True)
                          for t in z[1:]]
        return self.last_layer(torch.cat(feats, dim=1))


def class_ids(logits: torch.Tensor, size) -> torch.Tensor:
    """Class ids (N, H, W) at ``size``: bilinear upsampling of the logits, then arg-max."""
    return F.interpolate(logits, size=tuple(size), mode='bilinear',
                         align_corners=False).argmax(1)
