"""Synthetic image sequences with exactly known motion."""
import math
from typing import List

import torch


def panning_frames(n: int = 8, height: int = 64, width: int = 96, speed: float = 0.5,
                   seed: int = 0) -> List[torch.Tensor]:
    """Render a smooth image (sum of sinusoids) panning ``speed`` pixels per frame.

    Returns ``n`` tensors of shape (1, 3, height, width) in [0, 1]. The shift is exact and
    sub-pixel, so the sequence changes slowly and smoothly, like a camera panning over a scene.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing='ij')
    waves = []
    for _ in range(6):
        wy, wx = ((torch.rand(2, generator=g) - 0.5) * (2 * math.pi / 24)).tolist()
        phase = torch.rand(3, generator=g) * 2 * math.pi
        amp = torch.rand(3, generator=g)
        waves.append((wy, wx, phase, amp))
    frames = []
    for t in range(n):
        img = torch.zeros(3, height, width)
        for wy, wx, phase, amp in waves:
            arg = wy * yy + wx * (xx + speed * t)
            img += amp[:, None, None] * torch.sin(arg[None] + phase[:, None, None])
        frames.append((0.5 + 0.15 * img).clamp(0, 1)[None])
    return frames
