"""How frames come into the node: one record per camera, the newest frame, cameras in turn.

:class:`Camera` holds a camera's state in the node (its session, tracker, cut detector,
subscription, publishers, the frame waiting and its counters); :func:`round_robin` picks whose
frames the worker takes next, so a fast camera cannot starve another. :class:`Job` carries one
frame from the worker to the output thread.
"""
from typing import Dict, List, Sequence, Tuple

from .image_conv import read_image


def camera_prefix(topic: str, count: int) -> str:
    """Output namespace of a camera: '' for a single camera, else its topic as a name + '/'."""
    if count == 1:
        return ''
    return topic.strip('/').replace('/', '_') + '/'


class Camera:
    """One camera topic's state in the node (guarded by the node's lock)."""

    def __init__(self, topic: str, prefix: str):
        """Start with nothing received and no session (activate makes one)."""
        self.topic, self.prefix = topic, prefix
        self.session = None
        self.tracker = None
        self.cut = None
        self.sub = None
        self.pending = None
        self.pending_since = 0.0
        self.reset_requested = False
        self.received = self.processed = self.skipped = self.rejected = 0
        self.over_deadline = self.over_deadline_at_one = 0
        self.monitor = None
        self.read = read_image          # serialized bytes -> WireImage (read_compressed too)
        self.pubs: Dict[str, object] = {}


def round_robin(cams: Sequence[Camera], turn: int, size: int) -> Tuple[List[int], int]:
    """Return the cameras whose frames go next, and the next turn.

    (indices of up to ``size`` cameras with a waiting frame, from ``turn`` on; the turn after
    them: past the last one taken, so every camera gets its turn).
    """
    n = len(cams)
    order = [k % n for k in range(turn, turn + n) if cams[k % n].pending is not None][:size]
    return order, (order[-1] + 1 if order else turn)


class Job:
    """One camera's frame on its way from the worker to the output thread."""

    def __init__(self, cam: Camera, msg, rgb, t0: float, stages: Dict[str, float]):
        """Carry a frame converted at ``t0``; ``stages`` (ms) grows on its way."""
        self.cam, self.msg, self.rgb, self.t0, self.stages = cam, msg, rgb, t0, stages
        self.result = None              # None: a partial result
        self.out = None
        self.batch = 1
        self.queued = 0.0
        self.published: List[str] = []  # keys of the partial outputs published
        self.deadline: Tuple[float, str] = (0.0, '')   # deadline_ms, deadline_rule it ran with
        self.threads = 0                # the solver threads it was solved with

    def partial(self, out) -> 'Job':
        """Return the job that publishes a partial result of this frame."""
        job = Job(self.cam, self.msg, self.rgb, self.t0, self.stages)
        job.out = out
        job.published = self.published
        job.deadline = self.deadline
        return job
