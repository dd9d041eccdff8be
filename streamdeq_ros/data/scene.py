"""The street scene a clip is filmed in: label sets, the static world, the moving objects.

:class:`World` paints a static street canvas wider than the view (sky, buildings with
windows, vegetation, poles, sidewalk, road with lane marks) with its class mask, and places the
moving objects: :class:`Car` in two lanes going opposite ways and :class:`Walker` drawn as
articulated figures whose joints are the keypoints. :mod:`streamdeq_ros.data.street` films it.
"""
from dataclasses import dataclass
import math
from typing import List, Tuple

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
class Car:
    """A car in one lane (world units; its track id is its instance id)."""

    track: int
    lane: int
    x: float
    speed: float
    length: float
    height: float
    color: Tuple[int, int, int]


@dataclass
class Walker:
    """A pedestrian walking along the sidewalk (its joints are the keypoints)."""

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


class World:
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
    def _make_cars(self, rng, base) -> List[Car]:
        cars = []
        for i in range(int(rng.integers(2, 6))):
            lane = int(rng.integers(0, 2))
            s = 0.75 if lane == 0 else 1.0
            direction = 1 if lane == 0 else -1
            color = tuple(float(c) for c in rng.uniform(20, 235, 3))
            cars.append(Car(base + i, lane, rng.uniform(0, self.cw),
                            direction * rng.uniform(1.0, 3.5) * self.unit,
                            rng.uniform(40, 56) * s * self.unit,
                            rng.uniform(15, 20) * s * self.unit, color))
        return cars

    def _make_walkers(self, rng, base) -> List[Walker]:
        walkers = []
        for i in range(int(rng.integers(2, 6))):
            y = rng.uniform(self.walk_top + 1.0 * self.unit, self.curb + 4 * self.unit)
            walkers.append(Walker(
                base + i, rng.uniform(0, self.cw), y,
                rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * self.unit,
                rng.uniform(30, 40) * self.unit * (0.85 + 0.3 * (y - self.walk_top)
                                                   / (self.curb - self.walk_top + 1e-6)),
                rng.uniform(0, 2 * math.pi), rng.uniform(0.25, 0.4),
                tuple(float(c) for c in rng.uniform(20, 240, 3)),
                tuple(float(c) for c in rng.uniform(20, 120, 3)),
                tuple(float(c) for c in rng.uniform([150, 110, 80], [240, 200, 170]))))
        return walkers

    def car_polys(self, car: Car, t: int):
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

    def walker_joints(self, w: Walker, t: int) -> np.ndarray:
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
