"""Procedural street-scene video with exact ground truth (segmentation, boxes, keypoints).

A clip is a seeded, deterministic function of ``(seed, height, width)``: the same seed gives
the same clip, and the same scene at any resolution (all sizes are in units of the frame
height). Each clip has a static world (sky, buildings with windows, vegetation, poles,
sidewalk, road with lane marks) rendered once onto a canvas wider than the view, and moving
objects drawn per frame: cars in two lanes going opposite ways (so they pass and occlude each
other) and pedestrians drawn as articulated figures whose joints are the keypoints. The camera
pans, zooms slowly (ego-motion) and shakes a little; lighting drifts and sensor noise is added.
An optional hard cut switches to a different world part-way (a shot change).

Per frame: RGB image, class-id mask (:data:`CLASSES` train ids), instance map, boxes with class
and track id, and per person the 16 MPII joints with visibility (0 outside the image,
1 occluded, 2 visible) and the head segment (upper neck to head top) that PCKh normalises by.
Like Cityscapes, a clip has 30 frames and the labelled frame is index 19 (:data:`LABELLED_INDEX`).
The world and its objects are :mod:`streamdeq_ros.data.scene`; this module films them.
"""
from dataclasses import dataclass
import math
from typing import Optional

import cv2
import numpy as np

from .scene import (BUILDING, CAR, CLASSES, CLIP_LENGTH, HEAD_SEGMENT, IGNORE_INDEX, JOINTS,
                    LABELLED_INDEX, PALETTE, PERSON, POLE, ROAD, SIDEWALK, SKELETON, SKY,
                    THING_CLASSES, VEGETATION, World)

#: the label sets and clip constants are defined with the scene and read from here too
__all__ = ['CLASSES', 'PALETTE', 'ROAD', 'SIDEWALK', 'BUILDING', 'VEGETATION', 'SKY', 'PERSON',
           'CAR', 'POLE', 'IGNORE_INDEX', 'THING_CLASSES', 'JOINTS', 'SKELETON', 'HEAD_SEGMENT',
           'CLIP_LENGTH', 'LABELLED_INDEX', 'FrameLabels', 'StreetClip', 'colorize']


@dataclass
class FrameLabels:
    """Ground truth of one frame (pixel coordinates of the frame)."""

    mask: np.ndarray          # (H, W) uint8 class ids
    instances: np.ndarray     # (H, W) uint16 track id + 1 of the visible object, 0 = stuff
    boxes: np.ndarray         # (K, 4) float32 x1, y1, x2, y2 (visible objects, clipped)
    labels: np.ndarray        # (K,) int64 class ids (PERSON or CAR)
    track_ids: np.ndarray     # (K,) int64, stable over the clip (new ids after a cut)
    keypoints: np.ndarray     # (P, 16, 3) float32 x, y, visibility (0 out, 1 occluded, 2 vis)
    person_ids: np.ndarray    # (P,) int64 track ids of the persons, rows of ``keypoints``
    head_sizes: np.ndarray    # (P,) float32 length of the head segment in pixels
    scene: int                # 0 before a cut, 1 after


class StreetClip:
    """One procedural street clip; ``clip[t]`` returns ``(rgb uint8 HxWx3, FrameLabels)``."""

    def __init__(self, seed: int, height: int = 128, width: int = 256,
                 length: int = CLIP_LENGTH, cut_at: Optional[int] = None,
                 camera_speed: Optional[float] = None, noise: float = 3.0):
        """Build the clip (``cut_at``: frame index of a hard cut to a new scene, or None)."""
        if height < 16 or width < 16:
            raise ValueError('street clips need at least 16x16 pixels, got %dx%d'
                             % (width, height))
        if length < 1:
            raise ValueError('clip length must be >= 1, got %d' % length)
        if cut_at is not None and not 0 < cut_at < length:
            raise ValueError('cut_at must be inside the clip (1..%d), got %r'
                             % (length - 1, cut_at))
        self.seed, self.height, self.width, self.length = seed, height, width, length
        self.cut_at = cut_at
        self.noise = noise
        rng = np.random.default_rng([seed, 0x5EED])
        self._rng_seed = int(rng.integers(1 << 31))
        self.worlds = [World(rng, height, width, 1)]
        if cut_at is not None:
            self.worlds.append(World(rng, height, width, 1001))
        unit = height / 128.0
        self.cams = []
        for w in self.worlds:
            speed = rng.uniform(-2.5, 2.5) * unit if camera_speed is None \
                else camera_speed * unit
            x0 = rng.uniform(0.25, 0.45) * w.cw + (0 if speed >= 0 else 0.4 * w.cw)
            self.cams.append((x0, speed, rng.uniform(0.0, 0.004), rng.uniform(0, 2 * math.pi)))
        self.light = (rng.uniform(0.85, 1.15), rng.uniform(0.0, 0.06), rng.uniform(0.05, 0.3))

    def __len__(self) -> int:
        """Return the number of frames."""
        return self.length

    def _camera(self, scene: int, t: int) -> np.ndarray:
        world = self.worlds[scene]
        x0, speed, zoom, shake = self.cams[scene]
        s = self.height / world.ch * 1.12 * (1 + zoom * t)
        cx = x0 + speed * t
        cy = world.ch * 0.5 + 0.6 * world.unit * math.sin(0.7 * t + shake)
        return np.array([[s, 0, self.width / 2 - s * cx], [0, s, self.height / 2 - s * cy]])

    def __getitem__(self, t: int):
        """Render frame ``t``."""
        if not 0 <= t < self.length:
            raise IndexError('frame %d outside clip of %d frames' % (t, self.length))
        scene = 1 if self.cut_at is not None and t >= self.cut_at else 0
        t_local = t - self.cut_at if scene else t
        world = self.worlds[scene]
        A = self._camera(scene, t_local)
        size = (self.width, self.height)
        image = cv2.warpAffine(world.image, A, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(world.mask, A, size, flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REFLECT)
        inst = np.zeros((self.height, self.width), np.uint16)
        s = A[0, 0]

        def tr(pts):
            p = np.asarray(pts, np.float64)
            return p @ A[:, :2].T + A[:, 2]

        def poly(pts, cls, track, color):
            q = np.round(tr(pts) * 16).astype(np.int32)
            cv2.fillPoly(image, [q], tuple(int(c) for c in color), cv2.LINE_AA, 4)
            cv2.fillPoly(mask, [q], cls, cv2.LINE_8, 4)
            cv2.fillPoly(inst, [q], track + 1, cv2.LINE_8, 4)

        def seg(p, q, width, cls, track, color):
            a, b = np.round(tr([p, q]) * 16).astype(np.int32)
            th = max(1, int(round(width * s)))
            cv2.line(image, tuple(a), tuple(b), tuple(int(c) for c in color), th, cv2.LINE_AA, 4)
            cv2.line(mask, tuple(a), tuple(b), cls, th, cv2.LINE_8, 4)
            cv2.line(inst, tuple(a), tuple(b), track + 1, th, cv2.LINE_8, 4)

        # painter's order: far (small y) first
        objects = [(world.lanes[c.lane], 'car', c) for c in world.cars]
        objects += [(w.y, 'walker', w) for w in world.walkers]
        objects.sort(key=lambda o: o[0])
        extents = {}
        skeletons = {}
        for _, kind, obj in objects:
            if kind == 'car':
                body, cabin, wheels, r = world.car_polys(obj, t_local)
                poly(cabin, CAR, obj.track, np.array(obj.color) * 0.8)
                poly(body, CAR, obj.track, obj.color)
                glass = np.array(cabin, np.float64)
                glass = glass.mean(0) + (glass - glass.mean(0)) * 0.7
                q = np.round(tr(glass) * 16).astype(np.int32)
                cv2.fillPoly(image, [q], (60, 80, 100), cv2.LINE_AA, 4)
                for wx, wy in wheels:
                    c = np.round(tr([(wx, wy)])[0] * 16).astype(np.int32)
                    rr = int(round(r * s * 16))
                    cv2.circle(image, tuple(c), rr, (25, 25, 25), -1, cv2.LINE_AA, 4)
                    cv2.circle(mask, tuple(c), rr, CAR, -1, cv2.LINE_8, 4)
                    cv2.circle(inst, tuple(c), rr, obj.track + 1, -1, cv2.LINE_8, 4)
                rims = [(wx + dx, wy + dy) for wx, wy in wheels
                        for dx, dy in ((-r, -r), (r, r))]
                pts = tr(np.concatenate([body, cabin, rims]))
                extents[obj.track] = (CAR, pts.min(0), pts.max(0))
            else:
                j = world.walker_joints(obj, t_local)
                h = obj.height
                for a, b in ((3, 4), (4, 5)) if obj.speed > 0 else ((2, 1), (1, 0)):
                    seg(j[a], j[b], 0.07 * h, PERSON, obj.track, obj.trousers)
                for a, b in ((13, 14), (14, 15)) if obj.speed > 0 else ((12, 11), (11, 10)):
                    seg(j[a], j[b], 0.05 * h, PERSON, obj.track, np.array(obj.shirt) * 0.8)
                seg(j[6], j[7], 0.14 * h, PERSON, obj.track, obj.shirt)
                seg(j[6], (j[2] + j[3]) / 2, 0.12 * h, PERSON, obj.track, obj.trousers)
                for a, b in ((2, 1), (1, 0)) if obj.speed > 0 else ((3, 4), (4, 5)):
                    seg(j[a], j[b], 0.07 * h, PERSON, obj.track, obj.trousers)
                for a, b in ((12, 11), (11, 10)) if obj.speed > 0 else ((13, 14), (14, 15)):
                    seg(j[a], j[b], 0.05 * h, PERSON, obj.track, obj.shirt)
                seg(j[7], j[8], 0.05 * h, PERSON, obj.track, obj.skin)
                head_c = (j[8] + j[9]) / 2
                c = np.round(tr([head_c])[0] * 16).astype(np.int32)
                rr = int(round(0.075 * h * s * 16))
                cv2.circle(image, tuple(c), rr, obj.skin, -1, cv2.LINE_AA, 4)
                cv2.circle(mask, tuple(c), rr, PERSON, -1, cv2.LINE_8, 4)
                cv2.circle(inst, tuple(c), rr, obj.track + 1, -1, cv2.LINE_8, 4)
                jt = tr(j)
                pad = 0.06 * h * s
                extents[obj.track] = (PERSON, jt.min(0) - pad, jt.max(0) + pad)
                skeletons[obj.track] = jt
        image = self._light(image, t)
        return image, self._labels(mask, inst, extents, skeletons, scene)

    def _light(self, image: np.ndarray, t: int) -> np.ndarray:
        gain, amp, freq = self.light
        g = gain * (1 + amp * math.sin(freq * t))
        rng = np.random.default_rng([self._rng_seed, t])
        noise = rng.normal(0, self.noise, image.shape) if self.noise > 0 else 0
        return np.clip(image.astype(np.float32) * g + noise, 0, 255).astype(np.uint8)

    def _labels(self, mask, inst, extents, skeletons, scene) -> FrameLabels:
        H, W = mask.shape
        counts = np.bincount(inst.ravel(), minlength=1)
        min_pixels = max(4, int(0.0004 * H * W))
        boxes, labels, tracks = [], [], []
        for track, (cls, lo, hi) in sorted(extents.items()):
            visible = counts[track + 1] if track + 1 < len(counts) else 0
            x1, y1 = np.clip(lo, 0, [W, H])
            x2, y2 = np.clip(hi, 0, [W, H])
            if visible < min_pixels or x2 - x1 < 2 or y2 - y1 < 2:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(cls)
            tracks.append(track)
        kps, pids, heads = [], [], []
        for track, jt in sorted(skeletons.items()):
            if track not in tracks:
                continue
            out = np.zeros((16, 3), np.float32)
            out[:, :2] = jt
            for k, (x, y) in enumerate(jt):
                xi, yi = int(math.floor(x)), int(math.floor(y))
                if not (0 <= xi < W and 0 <= yi < H):
                    continue
                win = inst[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2]
                out[k, 2] = 2 if (win == track + 1).any() else 1
            kps.append(out)
            pids.append(track)
            heads.append(float(np.linalg.norm(jt[HEAD_SEGMENT[1]] - jt[HEAD_SEGMENT[0]])))
        return FrameLabels(
            mask=mask, instances=inst,
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64), track_ids=np.asarray(tracks, np.int64),
            keypoints=np.asarray(kps, np.float32).reshape(-1, 16, 3),
            person_ids=np.asarray(pids, np.int64),
            head_sizes=np.asarray(heads, np.float32), scene=scene)


def colorize(mask: np.ndarray) -> np.ndarray:
    """Map a class-id mask to RGB with :data:`PALETTE` (ignore and unknown ids: black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(PALETTE)] = PALETTE
    return lut[mask]
