"""Metric 3D from an aligned depth image, and intrinsics that follow an image's resize.

No ROS here: the node converts ``sensor_msgs/CameraInfo`` and depth images to what these take.

- :class:`Intrinsics` is a pinhole camera (fx, fy, cx, cy at a width and height).
  :meth:`Intrinsics.resized` gives the intrinsics of the same view resized to another size (a
  mask at the network's resolution), with pixel centres mapped as ``(c + 0.5) * s - 0.5``.
- :func:`depth_in_metres`: a depth image (16-bit millimetres or float metres) as float32 metres,
  invalid pixels (0, NaN, inf, outside :data:`DEPTH_RANGE_M`) NaN.
- :func:`object_3d`: the 3D centre and size of an object from the depth inside its box (or its
  mask). Background rejection: the valid depths are sorted and split into groups wherever two
  consecutive depths differ by more than ``max(0.25 m, 5 % of the depth)``; the object is the
  nearest group that holds at least :data:`MIN_GROUP_SHARE` of the valid pixels (the largest
  group when none does). Its depth range (5th to 95th percentile) gives the centre's depth (the
  middle of the range) and the size along the optical axis; the box's width and height at that
  depth give the other two sizes; the box's centre pixel, back-projected, the centre's x and y.
  In a box, only its central half (half the width, half the height) is read, as a box is wider
  than the object near its corners; a mask is read whole.
- :func:`keypoints_3d`: each keypoint at the median valid depth of a small window around it
  (NaN when there is none).

Coordinates are the camera's optical frame (x right, y down, z forward, metres), the frame of
the image's ``frame_id``.
"""
from dataclasses import dataclass
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

#: depths outside this range (metres) are invalid
DEPTH_RANGE_M = (0.05, 200.0)
#: the smallest share of a box's valid depths that the object's group must hold
MIN_GROUP_SHARE = 0.15
#: fewer valid depths than this in a box: no 3D for it
MIN_PIXELS = 5
#: depth encodings that are read, lower case (and their scale to metres)
DEPTH_ENCODINGS = {'16uc1': 1e-3, 'mono16': 1e-3, '32fc1': 1.0}


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels, at ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> 'Intrinsics':
        """Return the intrinsics of the row-major 3x3 camera matrix ``k`` (or ValueError)."""
        k = [float(v) for v in k]
        if len(k) != 9:
            raise ValueError('a camera matrix has 9 values, got %d' % len(k))
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            raise ValueError('the camera matrix has no positive focal lengths (K = %s)'
                             % [round(v, 3) for v in k])
        if width <= 0 or height <= 0:
            raise ValueError('camera_info has no image size (%d x %d)' % (width, height))
        return cls(fx, fy, cx, cy, int(width), int(height))

    def scale(self, width: int, height: int) -> Tuple[float, float]:
        """Return (sx, sy): how ``width`` x ``height`` relates to this camera's size."""
        return width / self.width, height / self.height

    def resized(self, width: int, height: int) -> 'Intrinsics':
        """Return the intrinsics of this view scaled to the given size (a resize, no crop)."""
        sx, sy = self.scale(width, height)
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, int(width), int(height))

    def k(self) -> list:
        """Return the row-major 3x3 camera matrix."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def ray(self, u, v) -> Tuple[np.ndarray, np.ndarray]:
        """Return (x/z, y/z) of pixels (u, v) (arrays or numbers)."""
        return ((np.asarray(u, np.float64) - self.cx) / self.fx,
                (np.asarray(v, np.float64) - self.cy) / self.fy)


def resized_projection(p: Sequence[float], sx: float, sy: float) -> list:
    """Return a row-major 3x4 projection matrix for the image resized by (sx, sy)."""
    p = [float(v) for v in p]
    if len(p) != 12:
        raise ValueError('a projection matrix has 12 values, got %d' % len(p))
    row0 = [p[0] * sx, p[1] * sx, (p[2] + 0.5 * p[10]) * sx - 0.5 * p[10], p[3] * sx]
    row1 = [p[4] * sy, p[5] * sy, (p[6] + 0.5 * p[10]) * sy - 0.5 * p[10], p[7] * sy]
    return row0 + row1 + p[8:]


def depth_in_metres(view: np.ndarray, encoding: str) -> np.ndarray:
    """Return the depth image ``view`` (H, W) as float32 metres; invalid pixels NaN."""
    scale = DEPTH_ENCODINGS.get(encoding.lower())
    if scale is None:
        raise ValueError('depth images must be 16UC1 (millimetres), mono16 or 32FC1 (metres), '
                         'got %r' % encoding)
    depth = view.astype(np.float32) * np.float32(scale)
    lo, hi = DEPTH_RANGE_M
    with np.errstate(invalid='ignore'):
        depth[~((depth >= lo) & (depth <= hi))] = np.nan
    return depth


def _object_group(depths: np.ndarray) -> np.ndarray:
    """Return the depths of the nearest group holding MIN_GROUP_SHARE of them (sorted input)."""
    gap = np.maximum(0.25, 0.05 * depths[:-1])
    cuts = np.flatnonzero(np.diff(depths) > gap) + 1
    groups = np.split(depths, cuts)
    for g in groups:
        if len(g) >= MIN_GROUP_SHARE * len(depths):
            return g
    return max(groups, key=len)


def object_3d(depth: np.ndarray, box: Sequence[float], cam: Intrinsics,
              mask: Optional[np.ndarray] = None
              ) -> Optional[Tuple[Tuple[float, float, float], Tuple[float, float, float]]]:
    """Return ((x, y, z) centre, (width, height, depth) size) in metres, or None.

    ``depth``: metres (NaN invalid), the size of ``cam``; ``box``: x1, y1, x2, y2 in its pixels;
    ``mask``: optional (H, W) bool of the object's pixels (read inside the box). None when the
    box holds fewer than :data:`MIN_PIXELS` valid depths.
    """
    h, w = depth.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    if mask is not None:
        r = (slice(max(0, int(y1)), min(h, int(math.ceil(y2)))),
             slice(max(0, int(x1)), min(w, int(math.ceil(x2)))))
        values = depth[r][mask[r]]
    else:
        qx, qy = (x2 - x1) / 4, (y2 - y1) / 4
        r = (slice(max(0, int(y1 + qy)), min(h, int(math.ceil(y2 - qy)))),
             slice(max(0, int(x1 + qx)), min(w, int(math.ceil(x2 - qx)))))
        values = depth[r].reshape(-1)
    values = np.sort(values[np.isfinite(values)])
    if len(values) < MIN_PIXELS:
        return None
    group = _object_group(values)
    near, far = np.percentile(group, [5, 95])
    z = float(near + far) / 2
    rx, ry = cam.ray((x1 + x2) / 2, (y1 + y2) / 2)
    size = ((x2 - x1) * z / cam.fx, (y2 - y1) * z / cam.fy, float(far - near))
    return (float(rx) * z, float(ry) * z, z), size


def detections_3d(depth: np.ndarray, boxes: np.ndarray, labels: np.ndarray, cam: Intrinsics,
                  seg_mask: Optional[np.ndarray] = None,
                  seg_ids: Optional[Dict[int, int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Return (centres (K, 3), sizes (K, 3)) of boxes (K, 4); NaN rows have no depth.

    With a class mask of the depth's size (``seg_mask``) and ``seg_ids`` mapping a detection
    label to its class id in that mask, an object is read from its class's pixels inside its
    box when there are at least :data:`MIN_PIXELS` valid ones (else from the box).
    """
    centres = np.full((len(boxes), 3), np.nan, np.float32)
    sizes = np.full((len(boxes), 3), np.nan, np.float32)
    usable = seg_mask is not None and seg_mask.shape == depth.shape and seg_ids
    for i, (box, label) in enumerate(zip(boxes, labels)):
        found = None
        if usable and int(label) in seg_ids:
            found = object_3d(depth, box, cam, seg_mask == seg_ids[int(label)])
        if found is None:
            found = object_3d(depth, box, cam)
        if found is not None:
            centres[i], sizes[i] = found
    return centres, sizes


def keypoints_3d(depth: np.ndarray, keypoints: np.ndarray, cam: Intrinsics) -> np.ndarray:
    """Return (P, J, 3) x, y, z in metres of keypoints (P, J, >= 2) u, v; NaN without depth.

    Each joint reads the median valid depth of a window of radius ``max(2, width / 320)``
    pixels around it.
    """
    h, w = depth.shape
    out = np.full(keypoints.shape[:2] + (3,), np.nan, np.float32)
    radius = max(2, int(round(w / 320)))
    for p in range(keypoints.shape[0]):
        for j in range(keypoints.shape[1]):
            u, v = float(keypoints[p, j, 0]), float(keypoints[p, j, 1])
            if not (0 <= u < w and 0 <= v < h):
                continue
            iu, iv = int(u), int(v)
            win = depth[max(0, iv - radius):iv + radius + 1, max(0, iu - radius):iu + radius + 1]
            win = win[np.isfinite(win)]
            if win.size:
                z = float(np.median(win))
                rx, ry = cam.ray(u, v)
                out[p, j] = (float(rx) * z, float(ry) * z, z)
    return out
