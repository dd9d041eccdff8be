"""How frames come into the node: one record per camera, the newest frame, cameras in turn.

:class:`Camera` holds a camera's state in the node (its session, tracker, cut detector,
subscriptions, publishers, the frame waiting, the recent camera_info and depth images, and its
counters); :func:`round_robin` picks whose frames the worker takes next, so a fast camera cannot
starve another. :class:`Job` carries one frame from the worker to the output thread. A frame is
paired with its camera_info and depth image by stamp (:func:`info_for`, :func:`depth_for`).
"""
from collections import deque
from typing import Dict, List, Sequence, Tuple

from .image_conv import read_image


def camera_prefix(topic: str, count: int) -> str:
    """Output namespace of a camera: '' for a single camera, else its topic as a name + '/'."""
    if count == 1:
        return ''
    return topic.strip('/').replace('/', '_') + '/'


def stamp_seconds(stamp) -> float:
    """Return a ``builtin_interfaces/Time`` in seconds."""
    return stamp.sec + 1e-9 * stamp.nanosec


def info_topic(image_topic: str) -> str:
    """Return the image_pipeline camera_info topic of an image topic (its sibling)."""
    topic = image_topic.rstrip('/')
    return topic.rsplit('/', 1)[0] + '/camera_info' if '/' in topic else 'camera_info'


#: how many camera_info and depth messages a camera keeps to pair frames with
RECENT = 16


def info_for(infos, stamp: float):
    """Return the newest camera_info stamped at or before ``stamp``, else the earliest kept.

    (Intrinsics rarely change: a frame that arrived before its camera_info still gets the
    first one.) None when none has arrived.
    """
    before = [m for s, m in infos if s <= stamp + 1e-9]
    if before:
        return before[-1]
    return infos[0][1] if infos else None


def depth_for(depths, stamp: float, tolerance: float):
    """Return the depth image whose stamp is nearest ``stamp``, if within ``tolerance`` s."""
    best = min(depths, key=lambda e: abs(e[0] - stamp), default=None)
    return best[1] if best is not None and abs(best[0] - stamp) <= tolerance + 1e-9 else None


class Camera:
    """One camera topic's state in the node (guarded by the frame worker's lock)."""

    def __init__(self, topic: str, prefix: str, info: str = '', depth: str = ''):
        """Start with nothing received and no session (activate makes one).

        ``info``: its camera_info topic ('' = the sibling); ``depth``: its aligned depth
        topic ('' = none).
        """
        self.topic, self.prefix = topic, prefix
        self.info_topic = info or info_topic(topic)
        self.depth_topic = depth
        self.info_sub = self.depth_sub = None
        self.infos: deque = deque(maxlen=RECENT)      # (stamp s, CameraInfo)
        self.depths: deque = deque(maxlen=RECENT)     # (stamp s, WireImage)
        #: frames published without camera_info (none had arrived) / without a paired depth
        #: image (3D outputs subscribed); depth images refused (encoding, size)
        self.no_info = self.no_depth = self.depth_rejected = 0
        #: why camera_info or 3D outputs were not possible since the last /diagnostics report
        self.geometry_faults: List[str] = []
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

    def geometry_fault(self, reason: str):
        """Note why a frame's camera_info or 3D outputs were not possible (once per report)."""
        if reason not in self.geometry_faults and len(self.geometry_faults) < 4:
            self.geometry_faults.append(reason)


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
