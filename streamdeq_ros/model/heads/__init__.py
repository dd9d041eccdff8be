"""Task heads that read the MDEQ fixed point (a list of per-scale tensors)."""
from .segmentation import SegmentationHead

__all__ = ['SegmentationHead']
