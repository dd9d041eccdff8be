"""Faster R-CNN + FPN over the MDEQ fixed point, from torchvision's parts.

The paper replaces Faster R-CNN's ResNet with MDEQ and sets the FPN's input channels to MDEQ's.
Here the backbone's state comes from the :class:`~streamdeq_ros.runtime.stream.StreamSession` (warm
started across frames), so the head starts from that state: the only code written here is the
adapter that names the MDEQ scales as FPN levels (and a cache around the anchor generator, since
a stream's frame size does not change). The FPN, anchor generator, RPN, RoIAlign
(``MultiScaleRoIAlign``), box head, box predictor and NMS are torchvision's.

Proposal and detection counts are sized for street scenes of a few dozen objects: at inference
the RPN keeps 100 boxes per level before NMS and 30 after, and at most 20 detections remain.
Boxes are ``x1, y1, x2, y2`` in pixels of the network input; label 0 is the background, label
``i >= 1`` is ``classes[i - 1]`` of the model card.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

Detections = List[Dict[str, torch.Tensor]]

#: anchor aspect ratios (height / width): cars are wide, pedestrians tall
ASPECT_RATIOS = (0.4, 1.0, 2.2)


class CachedAnchorGenerator(AnchorGenerator):
    """torchvision's :class:`AnchorGenerator` that keeps the anchors of the last geometry.

    A camera stream has one frame size, so the anchors (the same for every image of a batch)
    are built once and reused until the frame size, level sizes, dtype, device or inference
    mode change. Anchors carry no gradient; nothing downstream modifies them in place.
    """

    def __init__(self, *args, **kwargs):
        """Arguments as :class:`AnchorGenerator`'s."""
        super().__init__(*args, **kwargs)
        self._key = None
        self._anchors = None

    def forward(self, image_list: ImageList, feature_maps: List[torch.Tensor]
                ) -> List[torch.Tensor]:
        """Return one (A, 4) anchor tensor per image, as :class:`AnchorGenerator` does."""
        key = (tuple(image_list.tensors.shape[-2:]),
               tuple(tuple(f.shape[-2:]) for f in feature_maps), feature_maps[0].dtype,
               feature_maps[0].device, torch.is_inference_mode_enabled())
        if key != self._key:
            one = ImageList(image_list.tensors[:1], image_list.image_sizes[:1])
            self._anchors = super().forward(one, feature_maps)[0]
            self._key = key
        return [self._anchors] * len(image_list.image_sizes)


def mdeq_to_fpn_levels(z: Sequence[torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Name the MDEQ scales (finest first) as FPN input levels '0', '1', ..."""
    return OrderedDict((str(i), t) for i, t in enumerate(z))


class DetectionHead(nn.Module):
    """FPN (input channels = MDEQ's) -> RPN -> RoIAlign -> box head, all torchvision."""

    def __init__(self, num_channels: Sequence[int], stride: int, num_classes: int,
                 fpn_channels: int = 32, representation: int = 128,
                 anchor_scale: float = 3.0):
        """Build for branch widths ``num_channels``; ``stride`` = input pixels per z[0] cell.

        ``num_classes`` counts the object classes without the background. Anchor sizes are
        ``anchor_scale`` times each level's stride.
        """
        super().__init__()
        self.num_classes = int(num_classes)
        self.stride = int(stride)
        levels = len(num_channels)
        self.fpn = FeaturePyramidNetwork(list(num_channels), fpn_channels)
        sizes = tuple((int(round(anchor_scale * stride * 2 ** i)),) for i in range(levels))
        anchors = CachedAnchorGenerator(sizes, (ASPECT_RATIOS,) * levels)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(fpn_channels, len(ASPECT_RATIOS)),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=128,
            positive_fraction=0.5, pre_nms_top_n={'training': 600, 'testing': 100},
            post_nms_top_n={'training': 300, 'testing': 30}, nms_thresh=0.7)
        names = [str(i) for i in range(levels)]
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2),
            TwoMLPHead(fpn_channels * 7 * 7, representation),
            FastRCNNPredictor(representation, self.num_classes + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=128,
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05,
            nms_thresh=0.5, detections_per_img=20)

    def image_size(self, z: Sequence[torch.Tensor]) -> Tuple[int, int]:
        """Return the network input size (H, W) that produced the state ``z``."""
        h, w = z[0].shape[-2:]
        return int(h) * self.stride, int(w) * self.stride

    def forward(self, z: Sequence[torch.Tensor], targets: Optional[Detections] = None
                ) -> Tuple[Detections, Dict[str, torch.Tensor]]:
        """Return (per-image ``{'boxes', 'labels', 'scores'}``, losses).

        In training mode ``targets`` (per image ``{'boxes' (K, 4) float, 'labels' (K,) int64}``)
        are required and the losses of the RPN and the box head are returned.
        """
        n = z[0].shape[0]
        size = self.image_size(z)
        # the anchor generator reads only the batch's size, dtype and device: a stride-0 view
        images = ImageList(z[0].new_zeros(()).expand(n, 3, *size), [size] * n)
        feats = self.fpn(mdeq_to_fpn_levels(z))
        proposals, rpn_losses = self.rpn(images, feats, targets)
        detections, box_losses = self.roi_heads(feats, proposals, images.image_sizes, targets)
        losses = dict(rpn_losses)
        losses.update(box_losses)
        return detections, losses
