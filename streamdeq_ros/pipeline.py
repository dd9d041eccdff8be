"""From a camera frame to segmentation outputs: everything the ROS node calls, without ROS.

:class:`FramePipeline` holds one loaded network on one device and makes one
:class:`~streamdeq_ros.stream.StreamSession` per camera. For a frame (RGB uint8, any size) it
resizes to the network's input size, runs the session (warm start, budget, partial results)
and turns the state into a class-id mask at the camera's resolution (``'input'``) or at the
network's input resolution (``'network'``), plus a colour mask and an overlay on request.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .model.network import StreamDEQNet
from .stream import FrameResult, IterationBudget, PartialResult, StreamSession

MASK_RESOLUTIONS = ('input', 'network')


def _state(z: List[torch.Tensor]) -> List[torch.Tensor]:
    return z


@dataclass
class Segmentation:
    """A class-id mask (uint8) and the iteration it was read after."""

    mask: np.ndarray
    iteration: int
    residual: float
    partial: bool


class FramePipeline:
    """One network, any number of camera sessions."""

    def __init__(self, net: StreamDEQNet, card: dict, input_size: Optional[Tuple[int, int]] = None,
                 solver: Optional[str] = None, budget: Optional[IterationBudget] = None):
        """Use ``net`` (on its device); ``input_size`` = (H, W), default the card's."""
        if 'segmentation' not in net.heads:
            raise ValueError('the network has no segmentation head')
        self.net = net.eval()
        self.card = card
        inp = card.get('input', {})
        h, w = input_size or (inp.get('height', 96), inp.get('width', 192))
        stride = net.cfg.stride
        if h <= 0 or w <= 0 or h % stride or w % stride:
            raise ValueError('input_size must be positive multiples of %d, got %dx%d'
                             % (stride, w, h))
        self.input_size = (int(h), int(w))
        self.solver = solver or card.get('inference', {}).get('solver', 'unroll')
        self.budget = budget or IterationBudget()
        seg = card.get('heads', {}).get('segmentation', {})
        n = net.heads['segmentation'].num_classes
        self.classes = list(seg.get('classes', [str(i) for i in range(n)]))
        palette = np.zeros((256, 3), np.uint8)
        colours = seg.get('palette') or []
        palette[:len(colours)] = np.asarray(colours, np.uint8).reshape(-1, 3)
        self.palette = palette

    @property
    def device(self) -> torch.device:
        """Return the network's device, where every session's state lives."""
        return self.net.mean.device

    def new_session(self, name: str) -> StreamSession:
        """Return a fresh per-camera session sharing this network and budget.

        Its readout is the state itself, so partial results carry the state they came from.
        """
        return StreamSession(self.net.backbone, readout=_state, solver=self.solver,
                             budget=self.budget, name=name)

    def prepare(self, rgb: np.ndarray) -> torch.Tensor:
        """Resize an RGB uint8 frame to the input size; return the normalised (1, 3, H, W)."""
        h, w = self.input_size
        if rgb.shape[:2] != (h, w):
            shrink = rgb.shape[0] * rgb.shape[1] > h * w
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink
                             else cv2.INTER_LINEAR)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        return self.net.normalize(x)

    def masks(self, z: List[torch.Tensor], size: Tuple[int, int]) -> np.ndarray:
        """Class ids (H, W) uint8 at ``size`` from a state (bilinear logits, then arg-max)."""
        with torch.inference_mode():
            logits = self.net.heads['segmentation'](z)
            logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
            return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()

    def process(self, session: StreamSession, rgb: np.ndarray, iters: Optional[int] = None,
                partial_at: Sequence[int] = (), mask_resolution: str = 'input',
                on_partial: Optional[Callable[[Segmentation], None]] = None
                ) -> Tuple[FrameResult, Segmentation]:
        """Run one frame through ``session``; partial masks go to ``on_partial`` at once."""
        if mask_resolution not in MASK_RESOLUTIONS:
            raise ValueError('mask_resolution must be one of %s, got %r'
                             % (', '.join(MASK_RESOLUTIONS), mask_resolution))
        size = rgb.shape[:2] if mask_resolution == 'input' else self.input_size
        x = self.prepare(rgb)

        def partial(p: PartialResult):
            if on_partial is not None:
                on_partial(Segmentation(self.masks(p.outputs, size), p.iteration, p.residual,
                                        True))

        result = session.step(x, iters=iters, partial_at=partial_at, on_partial=partial)
        refined = Segmentation(self.masks(result.outputs, size), result.iters,
                               result.final_residual, False)
        return result, refined

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """Return the RGB colours of a class-id mask (the card's palette)."""
        return self.palette[mask]

    def overlay(self, rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blend the colour mask over the frame (mask resized to the frame if needed)."""
        colour = self.colorize(mask)
        if colour.shape[:2] != rgb.shape[:2]:
            colour = cv2.resize(colour, (rgb.shape[1], rgb.shape[0]),
                                interpolation=cv2.INTER_NEAREST)
        return cv2.addWeighted(rgb, 1 - alpha, colour, alpha, 0)
