"""Per-camera bookkeeping for diagnostics: rates, silence, frames lost upstream, stamp faults.

No ROS here: the node feeds it times, header stamps and its clock, and publishes
:meth:`StreamMonitor.warnings`. Every warning is about the recent past, so it clears once its
cause is gone; the totals are kept beside it.

- Rates and latencies are over the last ``window_s`` seconds (or since start, when shorter),
  so a camera that stops sending falls to 0 fps instead of keeping its last rate.
- ``silent_for`` is the time since the last frame arrived (since start when none has).
- Frames lost before the node (in the camera driver, or dropped by DDS) are estimated from
  gaps in the input header stamps. The camera's period is the mean of the recent clean stamp
  intervals that lie within 1.7x their 5th percentile (long intervals that losses make are left
  out; timing jitter is averaged). A gap of ``n`` periods counts ``n - 1`` lost frames, where
  ``n`` is read from the smaller of the stamp gap and the arrival gap (a stamp cannot claim
  more frames than the time that passed here), and only while ``n <= PAUSE_PERIODS``: a longer
  gap is a camera that paused (silence, reported as such when it lasts), not loss.
- A stamp fault is a stamp that does not move forward (repeated, backwards: a restarted or
  looping source) or that jumps ahead of the time that passed here by more than
  ``JUMP_FACTOR`` times plus the larger of ``JUMP_SLACK_PERIODS`` periods and ``JUMP_SLACK_S``
  (a driver's clock fault, a stamp of 2^31 s). It counts nothing as lost, and the next
  interval is measured from it. A replay faster than recorded (stamps ahead of arrivals) counts
  no loss, since the arrival gaps bound it.
- A stamp of zero, or more than ``FUTURE_S`` ahead of the node's clock, is counted (and
  flagged); the node serves such frames with their stamp unchanged.
- Loss, rejected frames and stamp faults warn over the last ``event_window_s`` seconds.
"""
import collections
from typing import Deque, List, Optional, Tuple

import numpy as np

PERIOD_PERCENTILE = 5
PERIOD_SPREAD = 1.7
MIN_INTERVALS = 5
#: a gap longer than this many periods is a pause of the camera, not lost frames
PAUSE_PERIODS = 10
#: a stamp gap beyond JUMP_FACTOR x the arrival gap + the larger of JUMP_SLACK_PERIODS
#: periods and JUMP_SLACK_S is a fault (the slack lets a bag replayed faster than recorded pass)
JUMP_FACTOR = 4.0
JUMP_SLACK_PERIODS = 3
JUMP_SLACK_S = 1.0
#: a stamp more than this far ahead of the node's clock is "in the future"
FUTURE_S = 1.0
#: estimated loss above which the camera warns
LOSS_WARN = 0.05


class StreamMonitor:
    """Rates, silence, an upstream-loss estimate and stamp checks of one input stream."""

    def __init__(self, start: float, window_s: float = 5.0, history: int = 200,
                 event_window_s: float = 10.0):
        """``start``: the monotonic time the stream was opened (subscription created)."""
        self.start = start
        self.window_s = window_s
        self.event_window_s = event_window_s
        self.arrivals: Deque[float] = collections.deque(maxlen=4096)
        self.done: Deque[Tuple[float, float]] = collections.deque(maxlen=4096)  # time, ms
        self.intervals: Deque[float] = collections.deque(maxlen=history)
        #: (arrival time, kind, count) of lost frames, rejected frames and stamp faults
        self.events: Deque[Tuple[float, str, int]] = collections.deque(maxlen=4096)
        self.last: Optional[Tuple[float, float]] = None      # (arrival, stamp) of the last frame
        self.count = 0
        self.lost = self.stamp_faults = self.rejects = 0
        self.zero_stamps = self.future_stamps = 0

    def received(self, now: float, stamp_s: float, clock_s: Optional[float] = None):
        """Count a frame that arrived at ``now`` with header stamp ``stamp_s`` (seconds).

        ``clock_s``: the node's clock (the ROS time the stamps are in), to flag future stamps.
        """
        self.arrivals.append(now)
        self.count += 1
        if stamp_s == 0:
            self.zero_stamps += 1
            self._event(now, 'stamp', 1)
        elif clock_s is not None and stamp_s > clock_s + FUTURE_S:
            self.future_stamps += 1
            self._event(now, 'stamp', 1)
        if self.last is not None:
            self._interval(now - self.last[0], stamp_s - self.last[1], now)
        self.last = (now, stamp_s)

    def _interval(self, arrival_dt: float, stamp_dt: float, now: float):
        period = self.period()
        slack = max(JUMP_SLACK_PERIODS * (period or 0.0), JUMP_SLACK_S)
        if stamp_dt <= 0 or stamp_dt > JUMP_FACTOR * arrival_dt + slack:
            self.stamp_faults += 1
            self._event(now, 'stamp', 1)
            return
        if period is None:
            self.intervals.append(stamp_dt)
            period = self.period()
            if period:          # the first time a period is known, the gaps so far count too
                for dt in list(self.intervals):
                    self._count_gap(dt, dt, period, now)
            return
        n = int(round(min(stamp_dt, arrival_dt) / period))
        if n <= PAUSE_PERIODS:
            self.intervals.append(stamp_dt)
        self._count_gap(stamp_dt, arrival_dt, period, now)

    def _count_gap(self, stamp_dt: float, arrival_dt: float, period: float, now: float):
        n = int(round(min(stamp_dt, arrival_dt) / period))
        if 1 < n <= PAUSE_PERIODS:
            self.lost += n - 1
            self._event(now, 'lost', n - 1)

    def _event(self, now: float, kind: str, count: int):
        self.events.append((now, kind, count))

    def rejected(self, now: float):
        """Count a frame that arrived but was refused (bad encoding, size, data, state)."""
        self.rejects += 1
        self._event(now, 'rejected', 1)

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

    def recent(self, now: float, kind: str) -> int:
        """Return how many ``kind`` events ('lost', 'rejected', 'stamp') the event window holds."""
        return sum(c for t, k, c in self.events if k == kind and now - t <= self.event_window_s)

    def loss_fraction(self, now: Optional[float] = None) -> float:
        """Return the estimated fraction of the camera's frames that never reached the node.

        Over the event window ending at ``now``; over the whole run when ``now`` is None.
        """
        if now is None:
            lost, got = self.lost, self.count
        else:
            lost = self.recent(now, 'lost')
            got = sum(1 for t in self.arrivals if now - t <= self.event_window_s)
        return lost / (lost + got) if lost + got else 0.0

    def warnings(self, now: float, stale_after_s: float) -> List[str]:
        """Return what is wrong with the camera now (empty: OK), each as a short clause."""
        out = []
        silent = self.silent_for(now)
        if silent > stale_after_s:
            out.append('no frame for %.0f s' % silent)
        window = '%g s' % self.event_window_s
        rejected = self.recent(now, 'rejected')
        if rejected:
            out.append('%d frames rejected in the last %s (%d in all)'
                       % (rejected, window, self.rejects))
        loss = self.loss_fraction(now)
        if loss > LOSS_WARN:
            out.append('about %.0f %% of the frames lost before the node in the last %s'
                       % (100 * loss, window))
        faults = self.recent(now, 'stamp')
        if faults:
            out.append('%d frames with a bad header stamp (repeated, backwards, jumping, zero '
                       'or in the future) in the last %s' % (faults, window))
        return out
