"""Hard-cut detection for a warm-started stream (camera switch, tunnel exit, a frame of glare).

A warm start assumes the new frame looks like the last one. At a hard cut it does not, and the
state of the old scene is where the new frame's solve starts. :class:`CutDetector` watches one
stream's frames and says when a frame is a cut, so the stream can restart from zeros.

The signal is cheap and comes before the solve: the mean absolute difference of consecutive
frames, both shrunk to :data:`THUMB` grey pixels (OpenCV, area interpolation), in grey levels.
A frame is a cut when that difference exceeds ``threshold`` times the median difference of the
last ``window`` frames (a running estimate of this camera's normal motion and noise), where the
median is floored at ``floor`` grey levels so that a still camera's tiny differences do not turn
every movement into a cut. After a cut the history starts again.
"""
from collections import deque
from typing import Optional

import cv2
import numpy as np

#: (width, height) of the grey thumbnail the signal is computed on
THUMB = (64, 32)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """Return the float32 grey :data:`THUMB` thumbnail of an RGB/BGR uint8 (H, W, 3) frame.

    A large frame is first subsampled by striding to at most 4x the thumbnail's size, then
    shrunk with OpenCV's area interpolation, so a 1080p frame costs about what a small one does.
    """
    step = max(1, min(frame.shape[0] // (4 * THUMB[1]), frame.shape[1] // (4 * THUMB[0])))
    small = cv2.resize(np.ascontiguousarray(frame[::step, ::step]), THUMB,
                       interpolation=cv2.INTER_AREA)
    return small.mean(axis=2, dtype=np.float32) if small.ndim == 3 else small.astype(np.float32)


class CutDetector:
    """Per-stream cut detector on the thumbnail difference of consecutive frames."""

    def __init__(self, threshold: float = 4.0, window: int = 8, floor: float = 2.0,
                 min_history: int = 2):
        """Fire when the difference > ``threshold`` x max(median of last ``window``, ``floor``)."""
        if not threshold > 1.0:
            raise ValueError('cut threshold must be > 1 (a ratio to the usual change), got %r'
                             % (threshold,))
        if window < 1 or min_history < 1 or min_history > window:
            raise ValueError('cut window must be >= 1 and >= min_history >= 1')
        if not floor > 0:
            raise ValueError('cut floor must be > 0 grey levels, got %r' % (floor,))
        self.threshold, self.floor, self.min_history = float(threshold), float(floor), min_history
        self.history = deque(maxlen=int(window))
        self.previous: Optional[np.ndarray] = None
        self.last_score = float('nan')
        self.cuts = 0

    def reset(self):
        """Forget the stream (a new camera, a reset asked for by the user)."""
        self.history.clear()
        self.previous = None
        self.last_score = float('nan')

    def score(self, difference: float) -> float:
        """Return ``difference`` over the usual change (NaN while the history is short)."""
        if len(self.history) < self.min_history:
            return float('nan')
        return difference / max(float(np.median(self.history)), self.floor)

    def update(self, frame: np.ndarray) -> bool:
        """Take the stream's next frame; return whether it is a cut from the previous one."""
        thumb = thumbnail(frame)
        prev, self.previous = self.previous, thumb
        if prev is None or prev.shape != thumb.shape:
            self.history.clear()
            self.last_score = float('nan')
            return False
        difference = float(np.abs(thumb - prev).mean())
        self.last_score = self.score(difference)
        if self.last_score > self.threshold:
            self.cuts += 1
            self.history.clear()
            return True
        self.history.append(difference)
        return False
