"""Segmentation head of MDEQ: upsample all scales, concatenate, 1x1 conv, BN, ReLU, classes."""
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .common import finest_features


class SegmentationHead(nn.Module):
    """Per-pixel class logits at the resolution of the finest MDEQ branch.

    The layer is named ``last_layer`` as in the official MDEQ segmentation model, so its
    checkpoint keys load unchanged.
    """

    def __init__(self, num_channels: Sequence[int], num_classes: int, bn_momentum: float = 0.01,
                 final_conv_kernel: int = 1):
        """Build for branch widths ``num_channels`` and ``num_classes`` outputs.

        ``final_conv_kernel`` is the official FINAL_CONV_KERNEL: 1, or 3 (padding 1).
        """
        super().__init__()
        if final_conv_kernel not in (1, 3):
            raise ValueError('segmentation head: final_conv_kernel must be 1 or 3 (the official '
                             'FINAL_CONV_KERNEL), got %r' % (final_conv_kernel,))
        total = int(sum(num_channels))
        self.num_classes = num_classes
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, total, kernel_size=1),
            nn.BatchNorm2d(total, momentum=bn_momentum),
            nn.ReLU(),
            nn.Conv2d(total, num_classes, kernel_size=final_conv_kernel,
                      padding=final_conv_kernel // 2))

    def forward(self, z: Sequence[torch.Tensor],
                features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Return (N, classes, H0, W0) logits for the state ``z``.

        ``features`` is ``finest_features(z)`` when the caller has it already.
        """
        return self.last_layer(finest_features(z) if features is None else features)


def class_ids(logits: torch.Tensor, size) -> torch.Tensor:
    """Class ids (N, H, W) at ``size``: bilinear upsampling of the logits, then arg-max.

    The arg-max is ``max(1).indices`` (the first maximal class, as ``argmax``): on a CPU,
    ``argmax`` over the class dimension of an (N, C, H, W) tensor is about 14 times slower.
    """
    return F.interpolate(logits, size=tuple(size), mode='bilinear',
                         align_corners=False).max(1).indices
