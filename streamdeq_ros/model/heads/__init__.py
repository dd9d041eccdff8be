"""Task heads that read the MDEQ fixed point (a list of per-scale tensors)."""
from .detection import DetectionHead
from .pose import PoseHead
from .segmentation import SegmentationHead

__all__ = ['DetectionHead', 'PoseHead', 'SegmentationHead']
