"""The node's parameters: one table of names, defaults, descriptions, ranges and validity.

The table feeds three things that must agree: the ``ParameterDescriptor`` each parameter is
declared with, the validation in the node's ``add_on_set_parameters_callback`` (a refused value
changes nothing and returns the reason), and ``config/streamdeq.yaml`` (a test checks that the
file lists exactly these parameters with these defaults). No rclpy import here.
"""
from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Param:
    """One node parameter."""

    name: str
    default: Any
    description: str
    read_only: bool = False              # a change needs a restart (reconfigure)
    choices: Tuple = ()
    int_range: Optional[Tuple[int, int]] = None
    float_range: Optional[Tuple[float, float]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None   # returns a reason or None


def _input_size(v) -> Optional[str]:
    v = list(v)
    if not v:
        return None
    if len(v) != 2 or any(int(x) <= 0 or int(x) % 32 for x in v):
        return 'input_size must be [] (the model card) or [height, width], positive multiples ' \
               'of 32, got %s' % v
    return None


def _device(v) -> Optional[str]:
    if v in ('auto', 'cpu', 'cuda') or (v.startswith('cuda:') and v[5:].isdigit()):
        return None
    return "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got %r" % v


def _cameras(v) -> Optional[str]:
    v = list(v)
    if not v or any(not t or ' ' in t for t in v) or len(set(v)) != len(v):
        return 'cameras must be a non-empty list of distinct topic names, got %s' % v
    return None


PARAMS: List[Param] = [
    Param('cameras', ['image'], 'camera image topics, one stream state each', True,
          check=_cameras),
    Param('input_transport', 'raw', "'raw' (sensor_msgs/Image) or 'compressed' "
          '(sensor_msgs/CompressedImage on <topic>/compressed)', True, ('raw', 'compressed')),
    Param('input_qos', 'sensor_data', "'sensor_data' (best effort, connects to any camera) or "
          "'reliable'", True, ('sensor_data', 'reliable')),
    Param('input_depth', 1, 'subscription queue depth (1: always the newest frame)', True,
          int_range=(1, 100)),
    Param('checkpoint', '', "model checkpoint; '' = the bundled default", True),
    Param('device', 'auto', "'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'", True,
          check=_device),
    Param('input_size', [], "network input [height, width], multiples of 32; [] = the model's",
          True, check=_input_size),
    Param('iters', 2, 'solver iterations per frame (applies from the next frame)',
          int_range=(1, 100)),
    Param('solver', 'unroll', "'unroll' or 'broyden'", choices=('unroll', 'broyden')),
    Param('tol', 0.0, 'stop a frame early below this relative residual (0: off)',
          float_range=(0.0, 1.0)),
    Param('deadline_ms', 0.0, 'per-frame time budget in ms; 0: off, else iterations follow '
          'the time left', float_range=(0.0, 10000.0)),
    Param('publish_partial', True, 'publish results after partial_iters iterations too'),
    Param('partial_iters', 1, 'iterations before the partial result', int_range=(1, 100)),
    Param('score_threshold', 0.5, 'minimum score of a published detection (and of a person '
          'whose keypoints are published)', float_range=(0.0, 1.0)),
    Param('mask_resolution', 'input', "'input' (camera size) or 'network' (input_size)",
          choices=('input', 'network')),
    Param('autostart', True, 'configure and activate on start-up', True),
]
BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}


def defaults() -> Dict[str, Any]:
    """Return every parameter's default value."""
    return {p.name: p.default for p in PARAMS}


def _same_kind(default, value) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return isinstance(value, (list, tuple))


def validate(name: str, value, configured: bool = False) -> Optional[str]:
    """Return why ``value`` is refused for parameter ``name``, or None when it is valid.

    ``configured``: the node is running, so read-only parameters cannot change.
    """
    p = BY_NAME.get(name)
    if p is None:
        return 'unknown parameter %r' % name
    if configured and p.read_only:
        return '%s is read-only while the node runs; set it at start-up' % name
    if not _same_kind(p.default, value):
        return '%s must be of type %s, got %r' % (name, type(p.default).__name__, value)
    if p.choices and value not in p.choices:
        return '%s must be one of %s, got %r' % (name, ', '.join(p.choices), value)
    if p.int_range and not p.int_range[0] <= value <= p.int_range[1]:
        return '%s must be in [%d, %d], got %r' % ((name,) + p.int_range + (value,))
    if p.float_range and not (math.isfinite(value)
                              and p.float_range[0] <= value <= p.float_range[1]):
        return '%s must be in [%g, %g], got %r' % ((name,) + p.float_range + (value,))
    if p.check is not None:
        return p.check(value)
    return None
