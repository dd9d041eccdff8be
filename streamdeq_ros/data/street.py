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
"""
from dataclasses import dataclass
import math
from typing import List, Optional, Tuple

import cv2
import numpy as np

CLASSES = ('road', 'sidewalk', 'building', 'vegetation', 'sky', 'person', 'car', 'pole')
PALETTE = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
                    (70, 130, 180), (220, 20, 60), (0, 0, 142), (153, 153, 153)], np.uint8)
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR, POLE = range(len(CLASSES))
IGNORE_INDEX = 255
THING_CLASSES = (PERSON, CAR)

JOINTS = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
          'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
          'l_elbow', 'l_wrist')
SKELETON = ((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
            (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15))
HEAD_SEGMENT = (8, 9)

CLIP_LENGTH = 30
LABELLED_INDEX = 19


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


@dataclass
class _Car:
    track: int
    lane: int
    x: float
    speed: float
    length: float
    height: float
    color: Tuple[int, int, int]


@dataclass
class _Walker:
    track: int
    x: float
    y: float
    speed: float
    height: float
    phase: float
    cadence: float
    shirt: Tuple[int, int, int]
    trousers: Tuple[int, int, int]
    skin: Tuple[int, int, int]


class _World:
    """A static street canvas and the moving objects in it (world units: canvas pixels)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, track_base: int):
        self.h = height
        self.unit = height / 128.0
        self.cw = int(round(width * 2.6))
        self.ch = int(round(height * 1.15))
        self.horizon = self.ch * rng.uniform(0.30, 0.42)
        self.walk_top = self.horizon + self.ch * rng.uniform(0.20, 0.26)
        self.curb = self.walk_top + self.ch * rng.uniform(0.07, 0.10)
        self.lanes = [self.curb + (self.ch - self.curb) * f for f in (0.38, 0.80)]
        self.image = np.zeros((self.ch, self.cw, 3), np.uint8)
        self.mask = np.zeros((self.ch, self.cw), np.uint8)
        self._paint_static(rng)
        self.cars = self._make_cars(rng, track_base)
        self.walkers = self._make_walkers(rng, track_base + 100)

    # -- static layers ------------------------------------------------------------------------
    def _fill(self, pts, cls, color):
        pts = np.round(np.asarray(pts, np.float64)).astype(np.int32)
        cv2.fillPoly(self.image, [pts], tuple(int(c) for c in color))
        cv2.fillPoly(self.mask, [pts], int(cls))

    def _rect(self, x1, y1, x2, y2, cls, color):
        self._fill([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], cls, color)

    def _paint_static(self, rng):
        cw, ch, u = self.cw, self.ch, self.unit
        # half of the skies are overcast grey, in the colour range of the facades and the
        # road, so that sky, building, road and sidewalk are told apart by layout and context
        # (as in real streets) rather than by the colour of a pixel's neighbourhood
        if rng.random() < 0.5:
            grey = rng.uniform(110, 190)
            top = np.array([grey, grey, grey + rng.uniform(0, 15)])
            bottom = top + rng.uniform(0, 25)
        else:
            top = np.array(rng.uniform([90, 120, 170], [150, 180, 235]))
            bottom = np.array(rng.uniform([170, 190, 210], [225, 230, 245]))
        ramp = np.linspace(0, 1, int(self.horizon) + 1)[:, None]
        sky = (top[None] * (1 - ramp) + bottom[None] * ramp).astype(np.uint8)
        self.image[:int(self.horizon) + 1] = sky[:, None, :]
        self.mask[:int(self.horizon) + 1] = SKY
        # road, sidewalk (the building band is drawn over the gap above the sidewalk)
        asphalt = rng.uniform(60, 140)
        self._rect(0, self.curb, cw, ch, ROAD, (asphalt, asphalt, asphalt + rng.uniform(0, 8)))
        if rng.random() < 0.5:   # paving of the same grey as the asphalt
            pave = np.array([asphalt, asphalt, asphalt]) + rng.uniform(-12, 12, 3)
        else:
            pave = rng.uniform([150, 140, 130], [200, 190, 180])
        self._rect(0, self.walk_top, cw, self.curb, SIDEWALK, pave)
        for x in np.arange(0, cw, rng.uniform(10, 18) * u):
            cv2.line(self.image, (int(x), int(self.walk_top)), (int(x), int(self.curb)),
                     tuple(int(c) for c in pave * 0.8), max(1, int(u)))
        # lane marks between the two lanes (class road, as in Cityscapes)
        y_mark = (self.lanes[0] + self.lanes[1]) / 2 - 2 * u
        dash, gap = rng.uniform(14, 24) * u, rng.uniform(10, 18) * u
        for x in np.arange(rng.uniform(0, gap), cw, dash + gap):
            cv2.rectangle(self.image, (int(x), int(y_mark)),
                          (int(x + dash), int(y_mark + max(1.5 * u, 1))), (235, 235, 225), -1)
        # a hazy far backdrop (skyline or tree line) behind the buildings, down to the sidewalk
        far_cls = BUILDING if rng.random() < 0.6 else VEGETATION
        far = rng.uniform([110, 115, 125], [160, 165, 175]) if far_cls == BUILDING else \
            rng.uniform([60, 100, 50], [100, 140, 80])
        xs = np.arange(0, cw + 12 * u, rng.uniform(6, 12) * u)
        tops = self.horizon - rng.uniform(0, 0.08, len(xs)) * ch
        outline = list(zip(xs, tops)) + [(xs[-1], self.walk_top), (0, self.walk_top)]
        self._fill(outline, far_cls, far)
        # buildings along the back of the sidewalk
        x = -rng.uniform(0, 20) * u
        while x < cw:
            bw = rng.uniform(28, 70) * u
            top_y = rng.uniform(0.12 * ch, self.horizon + 0.05 * ch)
            if rng.random() < 0.4:   # concrete grey facade
                base = np.full(3, rng.uniform(80, 190)) + rng.uniform(-8, 8, 3)
            else:
                base = rng.uniform([70, 60, 55], [190, 170, 160])
            self._rect(x, top_y, x + bw, self.walk_top, BUILDING, base)
            if rng.random() < 0.3:   # a blank wall: no windows
                x += bw + rng.uniform(0, 6) * u
                continue
            win = base * rng.uniform(0.35, 0.6) if rng.random() < 0.7 else \
                np.minimum(base * 1.5, 255)
            wx, wy = rng.uniform(5, 9) * u, rng.uniform(6, 10) * u
            for yy in np.arange(top_y + wy * 0.6, self.walk_top - wy, wy * 1.7):
                for xx in np.arange(x + wx * 0.6, x + bw - wx, wx * 1.8):
                    cv2.rectangle(self.image, (int(xx), int(yy)),
                                  (int(xx + wx), int(yy + wy)),
                                  tuple(int(c) for c in win), -1)
            x += bw + rng.uniform(0, 6) * u
        # trees and hedges in front of the buildings
        for _ in range(int(rng.integers(3, 8) * cw / (2.6 * 256 * u))):
            tx = rng.uniform(0, cw)
            r = rng.uniform(8, 18) * u
            green = rng.uniform([40, 90, 20], [90, 150, 60])
            trunk_top = self.walk_top - rng.uniform(10, 22) * u
            self._rect(tx - 1.2 * u, trunk_top, tx + 1.2 * u, self.walk_top + 2 * u,
                       VEGETATION, (80, 60, 40))
            for _ in range(4):
                cx = tx + rng.uniform(-0.6, 0.6) * r
                cy = trunk_top - rng.uniform(0.2, 0.9) * r
                rr = r * rng.uniform(0.6, 1.0)
                cv2.circle(self.image, (int(cx), int(cy)), int(rr),
                           tuple(int(c) for c in green * rng.uniform(0.85, 1.15)), -1)
                cv2.circle(self.mask, (int(cx), int(cy)), int(rr), VEGETATION, -1)
        for _ in range(int(rng.integers(1, 4))):
            hx = rng.uniform(0, cw)
            hw, hh = rng.uniform(20, 60) * u, rng.uniform(5, 10) * u
            self._rect(hx, self.walk_top - hh, hx + hw, self.walk_top + u, VEGETATION,
                       rng.uniform([30, 80, 20], [70, 130, 50]))
        # poles at the curb
        for px in rng.uniform(0, cw, int(rng.integers(2, 6))):
            ptop = self.horizon - rng.uniform(0, 0.12) * ch
            self._rect(px, ptop, px + max(1.5 * u, 1.0), self.curb, POLE, (150, 150, 150))
            self._rect(px - 3 * u, ptop, px + 4 * u, ptop + 2 * u, POLE, (120, 120, 120))
        # texture: low-frequency blotches and fine grain, on the image only (from their own
        # generator: their sizes depend on the resolution, the scene's draws must not)
        tex = np.random.default_rng(int(rng.integers(1 << 31)))
        lo = cv2.resize(tex.normal(0, 16, (max(2, ch // 12), max(2, cw // 12), 1)),
                        (cw, ch), interpolation=cv2.INTER_CUBIC)
        grain = tex.normal(0, 6, (ch, cw, 1))
        self.image = np.clip(self.image + lo[..., None] + grain, 0, 255).astype(np.uint8)

    # -- moving objects -----------------------------------------------------------------------
    def _make_cars(self, rng, base) -> List[_Car]:
        cars = []
        for i in range(int(rng.integers(2, 6))):
            lane = int(rng.integers(0, 2))
            s = 0.75 if lane == 0 else 1.0
            direction = 1 if lane == 0 else -1
            color = tuple(float(c) for c in rng.uniform(20, 235, 3))
            cars.append(_Car(base + i, lane, rng.uniform(0, self.cw),
                             direction * rng.uniform(1.0, 3.5) * self.unit,
                             rng.uniform(40, 56) * s * self.unit,
                             rng.uniform(15, 20) * s * self.unit, color))
        return cars

    def _make_walkers(self, rng, base) -> List[_Walker]:
        walkers = []
        for i in range(int(rng.integers(2, 6))):
            y = rng.uniform(self.walk_top + 1.0 * self.unit, self.curb + 4 * self.unit)
            walkers.append(_Walker(
                base + i, rng.uniform(0, self.cw), y,
                rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * self.unit,
                rng.uniform(30, 40) * self.unit * (0.85 + 0.3 * (y - self.walk_top)
                                                   / (self.curb - self.walk_top + 1e-6)),
                rng.uniform(0, 2 * math.pi), rng.uniform(0.25, 0.4),
                tuple(float(c) for c in rng.uniform(20, 240, 3)),
                tuple(float(c) for c in rng.uniform(20, 120, 3)),
                tuple(float(c) for c in rng.uniform([150, 110, 80], [240, 200, 170]))))
        return walkers

    def car_polys(self, car: _Car, t: int):
        """Body, cabin and wheels of ``car`` at frame ``t`` (world coordinates)."""
        x = (car.x + car.speed * t) % (self.cw + 2 * car.length) - car.length
        y = self.lanes[car.lane]
        L, H = car.length, car.height
        body = [(x, y - 0.55 * H), (x + L, y - 0.55 * H), (x + L, y - 0.1 * H), (x, y - 0.1 * H)]
        f = 0.25 if car.speed > 0 else 0.15
        cabin = [(x + f * L, y - 0.55 * H), (x + (f + 0.12) * L, y - H),
                 (x + (f + 0.5) * L, y - H), (x + (f + 0.62) * L, y - 0.55 * H)]
        wheels = [(x + 0.2 * L, y - 0.12 * H), (x + 0.8 * L, y - 0.12 * H)]
        return body, cabin, wheels, 0.14 * H

    def walker_joints(self, w: _Walker, t: int) -> np.ndarray:
        """Return the 16 MPII joints of walker ``w`` at frame ``t`` (world coordinates)."""
        x = (w.x + w.speed * t) % (self.cw + 20 * self.unit) - 10 * self.unit
        h = w.height
        ph = w.phase + w.cadence * t * 2 * math.pi / 4
        swing = 0.45 * math.sin(ph)
        d = 1 if w.speed > 0 else -1
        foot_y = w.y
        pelvis = np.array([x, foot_y - 0.52 * h])
        thorax = pelvis + [0.02 * d * h, -0.28 * h]
        neck = thorax + [0, -0.05 * h]
        head_top = neck + [0.01 * d * h, -0.15 * h]
        joints = np.zeros((16, 2))
        joints[6], joints[7], joints[8], joints[9] = pelvis, thorax, neck, head_top
        thigh, shin, upper, fore = 0.26 * h, 0.25 * h, 0.17 * h, 0.16 * h
        for side, sgn in (('r', 1), ('l', -1)):
            a = sgn * swing
            hip = pelvis + [sgn * 0.03 * h, 0]
            knee = hip + thigh * np.array([math.sin(a) * d, math.cos(a)])
            bend = max(0.0, -sgn * math.sin(ph)) * 0.6
            ankle = knee + shin * np.array([math.sin(a - bend) * d, math.cos(a - bend)])
            shoulder = thorax + [sgn * 0.05 * h, 0.02 * h]
            b = -a * 0.8
            elbow = shoulder + upper * np.array([math.sin(b) * d, math.cos(b)])
            wrist = elbow + fore * np.array([math.sin(b + 0.3) * d, math.cos(b + 0.3)])
            idx = {'r': (2, 1, 0, 12, 11, 10), 'l': (3, 4, 5, 13, 14, 15)}[side]
            for j, p in zip(idx, (hip, knee, ankle, shoulder, elbow, wrist)):
                joints[j] = p
        return joints


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
        self.worlds = [_World(rng, height, width, 1)]
        if cut_at is not None:
            self.worlds.append(_World(rng, height, width, 1001))
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
