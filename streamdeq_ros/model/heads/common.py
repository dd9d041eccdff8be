"""What several heads read from the MDEQ state."""
from typing import Sequence

import torch
import torch.nn.functional as F


def finest_features(z: Sequence[torch.Tensor]) -> torch.Tensor:
    """All scales upsampled (bilinear) to branch 0 and concatenated: (N, sum(C), H0, W0).

    The input of MDEQ's segmentation ``last_layer``; the pose head crops the same tensor, so
    :meth:`~streamdeq_ros.model.network.StreamDEQNet.perceive` computes it once for both.
    """
    h, w = z[0].shape[-2:]
    return torch.cat([z[0]] + [F.interpolate(t, size=(h, w), mode='bilinear',
                                             align_corners=True) for t in z[1:]], dim=1)
