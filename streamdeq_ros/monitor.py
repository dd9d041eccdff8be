"""Per-camera bookkeeping for diagnostics: rates over a window, silence, frames lost upstream.

No ROS here: the node feeds it times and header stamps and publishes what it reports.

- Rates are counts over the last ``window_s`` seconds (or since start, when shorter), so a
  camera that stops sending falls to 0 fps instead of keeping its last rate.
- ``silent_for`` is the time since the last frame arrived (since start when none has).
- Frames lost before the node (in the camera driver, or dropped by DDS) are estimated from
  gaps in the input header stamps: the camera's period is the mean of the recent stamp
  intervals that lie within 1.7x their 5th percentile (the long intervals that losses make are
  left out; timing jitter is averaged), and a gap of ``n`` periods counts ``n - 1`` lost
  frames. Repeated or backwards stamps (a restarted or looping source) count nothing.
"""
import collections
from typing import Deque, Optional, Tuple

import numpy as np

PERIOD_PERCENTILE = 5
PERIOD_SPREAD = 1.7
MIN_INTERVALS = 5


class StreamMonitor:
    """Rates, silence and an upstream-loss estimate of one input stream."""

    def __init__(self, start: float, window_s: float = 5.0, history: int = 200):
        """``start``: the monotonic time the stream was opened (subscription created)."""
        self.start = start
        self.window_s = window_s
        self.arrivals: Deque[float] = collections.deque(maxlen=4096)
        self.done: Deque[Tuple[float, float]] = collections.deque(maxlen=4096)  # time, ms
        self.intervals: Deque[float] = collections.deque(maxlen=history)
        self.last_stamp: Optional[float] = None
        self.count = 0
        self.lost = 0

    def received(self, now: float, stamp_s: float):
        """Count a frame that arrived at ``now`` with header stamp ``stamp_s`` (seconds)."""
        self.arrivals.append(now)
        self.count += 1
        if self.last_stamp is not None and stamp_s > self.last_stamp:
            dt = stamp_s - self.last_stamp
            self.intervals.append(dt)
            period = self.period()
            if period:
                # the first time a period is known, the intervals seen so far count too
                gaps = self.intervals if len(self.intervals) == MIN_INTERVALS else [dt]
                self.lost += sum(max(0, int(round(g / period)) - 1) for g in gaps)
        if self.last_stamp is None or stamp_s > self.last_stamp:
            self.last_stamp = stamp_s

    def processed(self, now: float, latency_ms: float):
        """Count a frame answered at ``now`` after ``latency_ms``."""
        self.done.append((now, latency_ms))

    def period(self) -> Optional[float]:
        """Return the estimated camera period in seconds (None before 5 intervals)."""
        if len(self.intervals) < MIN_INTERVALS:
            return None
        dt = np.asarray(self.intervals)
        low = np.percentile(dt, PERIOD_PERCENTILE)
        return float(dt[dt <= PERIOD_SPREAD * low].mean())

    def _span(self, now: float) -> float:
        return max(1e-6, min(self.window_s, now - self.start))

    def input_fps(self, now: float) -> float:
        """Return the frames received per second over the window."""
        return sum(1 for t in self.arrivals if now - t <= self.window_s) / self._span(now)

    def fps(self, now: float) -> float:
        """Return the frames answered per second over the window."""
        return sum(1 for t, _ in self.done if now - t <= self.window_s) / self._span(now)

    def latency_ms(self, now: float, q: float) -> Optional[float]:
        """Return the ``q``-th latency percentile of the window's answered frames, or None."""
        lat = [ms for t, ms in self.done if now - t <= self.window_s]
        return float(np.percentile(lat, q)) if lat else None

    def silent_for(self, now: float) -> float:
        """Return the seconds since the last frame arrived (or since start)."""
        return now - (self.arrivals[-1] if self.arrivals else self.start)

    def loss_fraction(self) -> float:
        """Return the estimated fraction of the camera's frames that never reached the node."""
        total = self.lost + self.count
        return self.lost / total if total else 0.0
