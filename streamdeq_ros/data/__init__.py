"""Datasets, synthetic sequences and video readers (no ROS)."""
from .synthetic import panning_frames

__all__ = ['panning_frames']
