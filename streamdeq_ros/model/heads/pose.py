"""Top-down pose head in the style of "simple baselines" (Xiao et al., 2018) on the MDEQ state.

For each person box, the box is widened to a fixed 3:4 (w:h) aspect and enlarged by 1.25 (the
crop simple baselines uses), and the finest-resolution representation of the shared fixed point
(all scales upsampled to branch 0 and concatenated, as the segmentation head reads it) is cropped
with torchvision's RoIAlign, so the backbone never runs per person. Deconvolution layers upsample
the crop to joint heatmaps; decoding takes the arg-max and moves it a quarter pixel towards the
higher neighbour (the sub-pixel refinement of simple baselines).
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
import torch.nn.functional as F
from torchvision.ops import roi_align

from .common import finest_features

CROP_ASPECT = 0.75      # width / height of a person crop
CROP_SCALE = 1.25
#: clamped keypoints stay this far inside the right and bottom edges (exact in float32)
INSIDE = 1.0 / 64


def crop_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Person boxes (K, 4) x1 y1 x2 y2 -> crops with aspect :data:`CROP_ASPECT`, x1.25."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    h = torch.maximum(h, w / CROP_ASPECT) * CROP_SCALE
    w = h * CROP_ASPECT
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def gaussian_targets(keypoints: torch.Tensor, crops: torch.Tensor, size: Tuple[int, int],
                     sigma: float = 1.5) -> Tuple[torch.Tensor, torch.Tensor]:
    """Heatmap targets (K, J, h, w) and weights (K, J) for keypoints (K, J, 3) in ``crops``.

    A joint counts (weight 1) when its visibility is > 0 (annotated inside the image) and it
    falls inside its crop.
    """
    hh, ww = size
    x = (keypoints[..., 0] - crops[:, None, 0]) / (crops[:, None, 2] - crops[:, None, 0]) * ww
    y = (keypoints[..., 1] - crops[:, None, 1]) / (crops[:, None, 3] - crops[:, None, 1]) * hh
    # pixel centres of the heatmap grid sit at i + 0.5
    gx = torch.arange(ww, device=crops.device, dtype=crops.dtype) + 0.5
    gy = torch.arange(hh, device=crops.device, dtype=crops.dtype) + 0.5
    d2 = (gx.view(1, 1, 1, ww) - x[..., None, None]) ** 2 + \
        (gy.view(1, 1, hh, 1) - y[..., None, None]) ** 2
    heat = torch.exp(-d2 / (2 * sigma ** 2))
    inside = (x >= 0) & (x < ww) & (y >= 0) & (y < hh)
    weight = ((keypoints[..., 2] > 0) & inside).to(heat.dtype)
    return heat, weight


def decode_heatmaps(heat: torch.Tensor, crops: torch.Tensor,
                    image_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Heatmaps (K, J, h, w) over ``crops`` -> keypoints (K, J, 3): x, y in pixels, score.

    The score is the heatmap's maximum clipped to [0, 1] (the targets are Gaussians of height
    1, so it reads as the confidence that the joint is there). With ``image_size`` (H, W) the
    coordinates are clamped into the image, ``0 <= x <= W - 1/64`` and likewise y: a crop
    reaches past the image edge, and its arg-max may land outside it.
    """
    k, j, hh, ww = heat.shape
    if k == 0:
        return heat.new_zeros((0, j, 3))
    flat = heat.reshape(k, j, -1)
    score, idx = flat.max(dim=2)
    px = (idx % ww).to(heat.dtype)
    py = torch.div(idx, ww, rounding_mode='floor').to(heat.dtype)
    xi, yi = px.long(), py.long()
    padded = F.pad(heat, (1, 1, 1, 1), mode='replicate')
    b = torch.arange(k, device=heat.device)[:, None]
    c = torch.arange(j, device=heat.device)[None, :]
    dx = padded[b, c, yi + 1, xi + 2] - padded[b, c, yi + 1, xi]
    dy = padded[b, c, yi + 2, xi + 1] - padded[b, c, yi, xi + 1]
    px = px + 0.25 * torch.sign(dx) + 0.5
    py = py + 0.25 * torch.sign(dy) + 0.5
    x = crops[:, None, 0] + px / ww * (crops[:, None, 2] - crops[:, None, 0])
    y = crops[:, None, 1] + py / hh * (crops[:, None, 3] - crops[:, None, 1])
    if image_size is not None:
        x = x.clamp(0.0, image_size[1] - INSIDE)
        y = y.clamp(0.0, image_size[0] - INSIDE)
    return torch.stack([x, y, score.clamp(0.0, 1.0)], dim=2)


class PoseHead(nn.Module):
    """RoIAlign crops of the finest representation -> deconvolutions -> joint heatmaps."""

    def __init__(self, num_channels: Sequence[int], stride: int, num_joints: int,
                 width: int = 64, roi_size: Tuple[int, int] = (8, 6), deconvs: int = 2,
                 bn_momentum: float = 0.1):
        """Build for branch widths ``num_channels``; ``stride`` = input pixels per z[0] cell."""
        super().__init__()
        self.num_joints = int(num_joints)
        self.stride = int(stride)
        self.roi_size = tuple(roi_size)
        total = int(sum(num_channels))
        layers = [nn.Conv2d(total, width, 3, padding=1, bias=False),
                  nn.BatchNorm2d(width, momentum=bn_momentum), nn.ReLU(inplace=True)]
        for _ in range(deconvs):
            layers += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width, momentum=bn_momentum), nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(width, self.num_joints, 1)
        nn.init.normal_(self.final.weight, std=0.001)      # as simple baselines: start near 0
        nn.init.zeros_(self.final.bias)
        self.heatmap_size = (self.roi_size[0] * 2 ** deconvs, self.roi_size[1] * 2 ** deconvs)

    def forward(self, z: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                features: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (heatmaps (K, J, h, w), crops (K, 4)) for per-image person ``boxes``.

        ``boxes[i]`` is (K_i, 4) in input pixels of image i; the rows of the result follow the
        boxes image by image. ``features`` is ``finest_features(z)`` when the caller has it.
        """
        crops = [crop_boxes(b.to(z[0].dtype)) for b in boxes]
        flat = torch.cat(crops) if crops else z[0].new_zeros((0, 4))
        if flat.shape[0] == 0:
            return z[0].new_zeros((0, self.num_joints) + self.heatmap_size), flat
        if features is None:
            features = finest_features(z)
        rois = roi_align(features, list(crops), self.roi_size,
                         spatial_scale=1.0 / self.stride, sampling_ratio=2, aligned=True)
        return self.final(self.deconv(rois)), flat
