"""A StreamDEQ network: one MDEQ backbone and any subset of task heads reading its state.

Heads: ``segmentation`` (class logits), ``detection`` (torchvision Faster R-CNN + FPN over the
MDEQ scales) and ``pose`` (top-down heatmaps inside person boxes, RoIAlign crops of the same
state). The fixed point is computed once per frame and every head reads it.
"""
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from .heads.common import finest_features
from .heads.detection import DetectionHead
from .heads.pose import decode_heatmaps, PoseHead
from .heads.segmentation import SegmentationHead
from .mdeq import get_config, MDEQBackbone, MDEQConfig

#: the task heads a network may carry, in the order they run
HEADS = ('segmentation', 'detection', 'pose')
#: width arguments a card's head spec may set; a card without them gets the head's defaults
DETECTION_WIDTHS = ('fpn_channels', 'representation')
POSE_WIDTHS = ('width',)
#: ImageNet statistics, the normalisation of the official MDEQ models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StreamDEQNet(nn.Module):
    """Backbone + heads. ``perceive(z)`` runs the heads on a fixed-point state."""

    def __init__(self, cfg: MDEQConfig, heads: Mapping[str, dict],
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        """Build for ``cfg`` with heads described as ``{'segmentation': {'num_classes': C}}``."""
        super().__init__()
        self.cfg = cfg
        self.backbone = MDEQBackbone(cfg)
        self.heads = nn.ModuleDict()
        self.specs = {name: dict(spec) for name, spec in heads.items()}
        for name, spec in heads.items():
            if name == 'segmentation':
                self.heads[name] = SegmentationHead(
                    cfg.num_channels, int(spec['num_classes']), cfg.bn_momentum,
                    int(spec.get('final_conv_kernel', 1)))
            elif name == 'detection':
                self.heads[name] = DetectionHead(cfg.num_channels, self.state_stride,
                                                 int(spec['num_classes']),
                                                 **_widths(spec, DETECTION_WIDTHS))
            elif name == 'pose':
                self.heads[name] = PoseHead(cfg.num_channels, self.state_stride,
                                            int(spec['num_joints']),
                                            **_widths(spec, POSE_WIDTHS))
            else:
                raise ValueError('unknown head %r (known: %s)' % (name, ', '.join(HEADS)))
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def det_classes(self) -> List[str]:
        """Names of the detection labels 1, 2, ... (label 0 is the background)."""
        n = self.heads['detection'].num_classes
        return list(self.specs['detection'].get('classes', [str(i + 1) for i in range(n)]))

    @property
    def joint_names(self) -> List[str]:
        """Names of the pose head's joints, in heatmap order."""
        n = self.heads['pose'].num_joints
        return list(self.specs['pose'].get('joints', [str(i) for i in range(n)]))

    @property
    def person_label(self) -> int:
        """The detection label whose boxes the pose head reads (its card's person class)."""
        name = self.specs.get('pose', {}).get('person_class', 'person')
        names = self.det_classes
        if name not in names:
            raise ValueError('the detection head has no %r class for the pose head (classes: %s)'
                             % (name, ', '.join(names)))
        return names.index(name) + 1

    def persons(self, detections: Dict[str, torch.Tensor],
                score_threshold: float) -> torch.Tensor:
        """Mask of one image's detections that are persons scoring at least the threshold."""
        return (detections['labels'] == self.person_label) & \
            (detections['scores'] >= score_threshold)

    @property
    def state_stride(self) -> int:
        """Input pixels per cell of the finest state tensor z[0]."""
        return 2 ** self.cfg.downsample_times

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Turn (N, 3, H, W) RGB in [0, 1] (float) or 0..255 (uint8) into the network's input."""
        x = images.to(self.mean.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std

    def perceive(self, z: List[torch.Tensor], heads: Optional[Sequence[str]] = None,
                 person_boxes: Optional[Sequence[torch.Tensor]] = None,
                 score_threshold: float = 0.5) -> 'Perception':
        """Run the named heads (default: all) on one state; inference only.

        Pose reads the person boxes given in ``person_boxes`` (per image, input pixels), or
        else the detector's boxes of :attr:`person_label` scoring at least ``score_threshold``
        (detection must then run too).
        """
        names = list(self.heads.keys() if heads is None else heads)
        out = Perception()
        # the segmentation and pose heads read the same up-sampled concatenation: build it once
        features = finest_features(z) if {'segmentation', 'pose'} & set(names) else None
        if 'segmentation' in names:
            out.seg_logits = self.heads['segmentation'](z, features)
        if 'detection' in names:
            out.detections, _ = self.heads['detection'](z)
        if 'pose' in names:
            if person_boxes is None:
                if out.detections is None:
                    raise ValueError('pose needs person boxes: run detection or pass them')
                keep = [self.persons(d, score_threshold) for d in out.detections]
                person_boxes = [d['boxes'][k] for d, k in zip(out.detections, keep)]
                out.person_index = [torch.nonzero(k).flatten() for k in keep]
            heat, crops = self.heads['pose'](z, person_boxes, features)
            size = (z[0].shape[-2] * self.state_stride, z[0].shape[-1] * self.state_stride)
            out.keypoints = list(torch.split(decode_heatmaps(heat, crops, size),
                                             [len(b) for b in person_boxes]))
        return out


@dataclass
class Perception:
    """Head outputs of one state (batch first); None where a head did not run.

    ``seg_logits`` (N, C, h, w); ``detections`` per image ``{'boxes', 'labels', 'scores'}`` in
    input pixels; ``keypoints`` per image (P, J, 3) x, y, score; ``person_index`` per image, the
    rows of ``detections`` the persons of ``keypoints`` came from (None for given boxes).
    """

    seg_logits: Optional[torch.Tensor] = None
    detections: Optional[List[Dict[str, torch.Tensor]]] = None
    keypoints: Optional[List[torch.Tensor]] = None
    person_index: Optional[List[torch.Tensor]] = None


def _widths(spec: Mapping, names: Sequence[str]) -> Dict[str, int]:
    """Return the width arguments of ``names`` that a head spec sets."""
    return {k: int(spec[k]) for k in names if k in spec}


def build_net(card: Mapping) -> StreamDEQNet:
    """Build an untrained network from a model card's ``config``, ``heads`` and ``input``."""
    cfg = card.get('config')
    cfg = MDEQConfig.from_dict(cfg) if isinstance(cfg, Mapping) else get_config(cfg or 'tiny')
    inp = card.get('input', {})
    return StreamDEQNet(cfg, card.get('heads', {}), inp.get('mean', IMAGENET_MEAN),
                        inp.get('std', IMAGENET_STD))
