"""The node's parameters: one table of names, defaults, descriptions, rules and validity.

The table feeds three things that must agree: the ``ParameterDescriptor`` each parameter is
declared with, the validation of start-up values and of live changes (a refused value changes
nothing and returns the reason), and ``config/streamdeq.yaml`` (a test checks that the file
lists exactly these parameters with these defaults). No rclpy import here.

Every refusal is one sentence that names the parameter, the allowed values in words and the
value as given, with its type when the type is wrong, e.g. ``iters must be an integer from 1
to 100, got 3.0 (a float)`` or ``iters must be an integer from 1 to 100, got 0``. The node
declares its
parameters with dynamic typing and leaves all checking to :func:`validate`, so rclpy's own
type and range messages never reach a user, and a float parameter takes integer syntax
(``ros2 param set /streamdeq deadline_ms 5``).

ROS 2 cannot carry an empty list (``[]`` in YAML or on the command line arrives as "not set"),
so no parameter uses one: ``input_size`` ``[0, 0]`` means "the model's size".
"""
from dataclasses import dataclass
import difflib
import math
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..model.solvers import SOLVERS
from ..runtime.backends import BACKENDS

MODEL_SIZE = [0, 0]


@dataclass(frozen=True)
class Param:
    """One node parameter; ``rule`` overrides the generated "must be ..." words."""

    name: str
    default: Any
    description: str
    read_only: bool = False              # a change needs a restart (reconfigure)
    choices: Tuple = ()
    num_range: Optional[Tuple[float, float]] = None
    check: Optional[Callable[[Any], bool]] = None   # extra condition on a well-typed value
    rule: str = ''
    #: the machine-dependent part of the rule, said in a refusal only (e.g. the core count)
    detail: Optional[Callable[[], str]] = None

    @property
    def kind(self) -> str:
        """Return the value kind from the default: bool, int, float, str, int_list, str_list."""
        d = self.default
        if isinstance(d, list):
            return 'str_list' if d and isinstance(d[0], str) else 'int_list'
        return type(d).__name__

    def words(self) -> str:
        """Return the rule for a valid value in words, like ``an integer from 1 to 100``."""
        if self.rule:
            return self.rule
        if self.choices:
            return 'one of ' + ', '.join(repr(c) for c in self.choices)
        base = {'bool': 'true or false', 'int': 'an integer', 'float': 'a number',
                'str': 'a string', 'int_list': 'a list of integers',
                'str_list': 'a list of strings'}[self.kind]
        if self.num_range:
            lo, hi = self.num_range
            base += ' from %s to %s' % (_bound(lo), _bound(hi))
        return base


def _bound(v) -> str:
    return str(int(v)) if float(v).is_integer() else '%g' % v


def usable_cores() -> int:
    """Return the number of CPU cores this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def _show(v) -> str:
    if v is None:
        return "no value (an empty list [] reaches ROS 2 as 'not set')"
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return '[' + ', '.join(_show(x) for x in v) + ']'
    return repr(v) if isinstance(v, str) else str(v)


def _input_size_ok(v) -> bool:
    return list(v) == MODEL_SIZE or (len(v) == 2 and all(x > 0 and x % 32 == 0 for x in v))


def _device_ok(v) -> bool:
    return v in ('auto', 'cpu', 'cuda') or (v.startswith('cuda:') and v[5:].isdigit())


def _cameras_ok(v) -> bool:
    return bool(v) and all(t and ' ' not in t for t in v) and len(set(v)) == len(v)


def _topics_ok(v) -> bool:
    return bool(v) and all(' ' not in t for t in v)


def _classes_ok(v) -> bool:
    return bool(v) and (v == [''] or all(v)) and len(set(v)) == len(v)


#: the per-camera list parameters: one entry per camera, or [''] for every camera's default
PER_CAMERA = ('camera_info_topics', 'depth_topics')


def per_camera(values: Dict[str, Any]) -> List[str]:
    """Return why the per-camera lists do not fit ``cameras`` (one sentence each)."""
    n = len(values['cameras'])
    return ["%s must have one entry per camera (%d: %s) or be [''], got %s"
            % (name, n, _show(list(values['cameras'])), _show(list(values[name])))
            for name in PER_CAMERA
            if list(values[name]) != [''] and len(values[name]) != n]


PARAMS: List[Param] = [
    Param('cameras', ['image'], 'camera image topics, one stream state each', True,
          check=_cameras_ok, rule='a non-empty list of distinct topic names'),
    Param('camera_info_topics', [''], "sensor_msgs/CameraInfo per camera; '' = the "
          'image_pipeline sibling of the image topic (/front/image_raw -> '
          '/front/camera_info)', True, check=_topics_ok,
          rule="a list of topic names, one per camera ('' = the sibling camera_info)"),
    Param('depth_topics', [''], 'aligned depth image per camera (16UC1 millimetres or 32FC1 '
          "metres, registered to the colour image); '' = none. With depth: ~/detections_3d, "
          '~/keypoints_3d, ~/markers', True, check=_topics_ok,
          rule="a list of topic names, one per camera ('' = no depth for it)"),
    Param('input_transport', 'raw', "'raw' (sensor_msgs/Image) or 'compressed' "
          '(sensor_msgs/CompressedImage on <topic>/compressed)', True, ('raw', 'compressed')),
    Param('input_qos', 'sensor_data', "'sensor_data' (best effort, connects to any camera) or "
          "'reliable'", True, ('sensor_data', 'reliable')),
    Param('input_depth', 1, 'subscription queue depth (1: always the newest frame)', True,
          num_range=(1, 100)),
    Param('checkpoint', '', "the model: '' = the bundled default, a bundled name, a file, a "
          'model folder or official:FILE[:small|large|xl] (docs/official_models.md)', True),
    Param('backend', 'auto', "'auto' (onnxruntime on the CPU when it is installed and the "
          "model exports, else torch with the reason; torch on CUDA), 'torch' (eager PyTorch) or "
          "'onnxruntime' (the graphs of `streamdeq export`, exported once into "
          '~/.cache/streamdeq_ros; its CUDA provider with a cuda device)', True, BACKENDS),
    Param('device', 'auto', "'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'", True,
          check=_device_ok, rule="'auto', 'cpu', 'cuda' or 'cuda:N'"),
    Param('input_size', MODEL_SIZE, 'network input [height, width], multiples of 32; '
          "[0, 0] = the model's", True, check=_input_size_ok,
          rule="[height, width] in positive multiples of 32, or [0, 0] for the model's size"),
    Param('threads', 0, 'intra-op threads of the solver (0: adaptive, see docs/benchmarks.md '
          '"A busy computer"; N: exactly N)', check=lambda v: 0 <= v <= usable_cores(),
          rule='an integer from 0 to the number of cores this process may use',
          detail=lambda: '%d here' % usable_cores()),
    Param('iters', 2, 'solver iterations per frame (applies from the next frame)',
          num_range=(1, 100)),
    Param('solver', '', "%s or '' (the model card's: unroll for the bundled models, broyden "
          'for official MDEQ imports)' % ', '.join(repr(s) for s in SOLVERS),
          choices=('',) + tuple(SOLVERS)),
    Param('tol', 0.0, 'stop a frame early below this relative residual (0: off)',
          num_range=(0.0, 1.0)),
    Param('deadline_ms', 0.0, 'per-frame time budget in ms; 0: off, else iterations follow '
          'the time left', num_range=(0.0, 10000.0)),
    Param('deadline_rule', 'predictive', "'predictive' (stop before an iteration that, with "
          "the frame's outputs, would not fit in deadline_ms; costs measured online) or "
          "'reactive' (stop after the iteration during which deadline_ms passed)",
          choices=('predictive', 'reactive')),
    Param('publish_partial', True, 'publish results after partial_iters iterations too'),
    Param('partial_iters', 1, 'iterations before the partial result; there is none when '
          'iters <= partial_iters (the refined result is all there is; /diagnostics says so) '
          'or when tol or deadline_ms end the frame sooner', num_range=(1, 100)),
    Param('score_threshold', 0.5, 'minimum score of a published detection (and of a person '
          'whose keypoints are published); LabelInfo.threshold says it', num_range=(0.0, 1.0)),
    Param('classes', [''], "publish only these classes (names of the model card's "
          "segmentation and detection classes; other pixels become 255); [''] = all",
          check=_classes_ok, rule="a list of distinct class names, or [''] for all"),
    Param('sync_tolerance_s', 0.02, 'a depth image pairs with the frame whose stamp is within '
          'this many seconds of its own', num_range=(0.0, 1.0)),
    Param('mask_resolution', 'input', "'input' (camera size) or 'network' (input_size)",
          choices=('input', 'network')),
    Param('mono16_max', 0, 'white level of 16-bit images (mono16, 16UC1, rgb16, bgr16, '
          "bayer_*16) when they are scaled to 8 bits; 0: each frame's bit depth (the fewest "
          "bits from 8 to 16 that hold its largest value: a 12-bit camera's 4095 is white)",
          num_range=(0, 65535)),
    Param('max_input_pixels', 4096 * 4096, 'frames with more pixels are dropped before any '
          'decoding (compressed frames by their file header)', num_range=(1, 16384 * 16384)),
    Param('stale_after_s', 2.0, 'a camera without a frame for this long is reported WARN in '
          '/diagnostics', num_range=(0.1, 3600.0)),
    Param('max_batch', 8, 'most cameras solved together in one batch (1: one camera at a '
          'time); only frames already waiting are batched, and only with the unroll solver',
          num_range=(1, 64)),
    Param('batch_wait_ms', 0.0, 'after the first waiting frame, wait up to this long for the '
          'other cameras so their frames are solved together (0: never wait)',
          num_range=(0.0, 1000.0)),
    Param('reset_on_cut', True, 'restart a camera from zeros when its frame is a hard cut '
          '(camera switch, tunnel exit, a frame of glare): its change from the previous frame '
          'exceeds cut_threshold times the usual change'),
    Param('cut_threshold', 4.0, 'how many times the usual frame-to-frame change makes a cut '
          '(lower: more cuts found, more false restarts)', num_range=(1.5, 1000.0)),
    Param('autostart', True, 'configure and activate on start-up', True),
]
BY_NAME: Dict[str, Param] = {p.name: p for p in PARAMS}


def defaults() -> Dict[str, Any]:
    """Return every parameter's default value."""
    return {p.name: p.default for p in PARAMS}


def _typed(kind: str, value) -> bool:
    if kind == 'bool':
        return isinstance(value, bool)
    if kind == 'int':
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == 'float':
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == 'str':
        return isinstance(value, str)
    item = 'str' if kind == 'str_list' else 'int'
    return isinstance(value, (list, tuple)) and all(_typed(item, x) for x in value)


def _kind_words(value) -> str:
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, int):
        return 'an integer'
    if isinstance(value, float):
        return 'a float'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, list):
        return 'a list'
    return type(value).__name__


def unknown(name: str) -> str:
    """Return the refusal of a parameter the node does not have, with the nearest names."""
    near = difflib.get_close_matches(name, list(BY_NAME), n=3, cutoff=0.6)
    hint = 'did you mean %s?' % ' or '.join(repr(n) for n in near) if near else \
        '`ros2 param list /streamdeq` lists its parameters'
    return 'unknown parameter %r: the streamdeq node has no such parameter (%s)' % (name, hint)


def validate(name: str, value, configured: bool = False) -> Optional[str]:
    """Return why ``value`` is refused for parameter ``name`` (one sentence), or None.

    ``configured``: the node is running, so read-only parameters cannot change. ``value`` None
    is a parameter that ROS 2 reports as not set.
    """
    p = BY_NAME.get(name)
    if p is None:
        return unknown(name)
    if configured and p.read_only:
        return '%s is read-only while the node runs (got %s); set it at start-up' \
            % (name, _show(value))
    if isinstance(value, tuple) or type(value).__name__ == 'array':
        value = list(value)
    typed = ok = value is not None and _typed(p.kind, value)
    if ok and p.kind == 'float':
        ok = math.isfinite(value)
    if ok and p.choices:
        ok = value in p.choices
    if ok and p.num_range:
        ok = p.num_range[0] <= value <= p.num_range[1]
    if ok and p.check is not None:
        ok = p.check(value)
    if ok:
        return None
    words = p.words() + (' (%s)' % p.detail() if p.detail else '')
    given = _show(value)
    if not typed and value is not None:
        given += ' (%s)' % _kind_words(value)
    return '%s must be %s, got %s' % (name, words, given)


def coerce(name: str, value):
    """Return a valid ``value`` in its parameter's own type (an integer for a float -> float)."""
    kind = BY_NAME[name].kind
    if kind == 'float':
        return float(value)
    if kind.endswith('_list'):
        return list(value)
    return value


def validate_all(values: Dict[str, Any]) -> List[str]:
    """Return the refusal sentences for a full set of start-up values (empty when all valid)."""
    refused = [r for r in (validate(n, v) for n, v in values.items()) if r]
    if not any(validate(n, values.get(n)) for n in ('cameras',) + PER_CAMERA):
        refused += per_camera(values)
    return refused


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return "'%s'" % v
    if isinstance(v, list):
        return '[' + ', '.join(_yaml_value(x) for x in v) + ']'
    return repr(v)


def config_yaml() -> str:
    """Return ``config/streamdeq.yaml``: every parameter with its default, rule and meaning."""
    lines = ['# Parameters of the streamdeq node (streamdeq_node): generated from '
             'streamdeq_ros/ros/params.py',
             '# (python -m streamdeq_ros.ros.params > config/streamdeq.yaml). Read-only '
             'parameters (marked) need a',
             '# restart; the others apply from the next frame. ROS 2 cannot carry an empty '
             'list ([] arrives as',
             "# 'not set'): input_size [0, 0] means the model's size.",
             '/**:', '  ros__parameters:']
    for p in PARAMS:
        marker = ' (read-only)' if p.read_only else ''
        lines.append('    # %s [%s]%s' % (p.description, p.words(), marker))
        lines.append('    %s: %s' % (p.name, _yaml_value(p.default)))
    return '\n'.join(lines) + '\n'


def markdown_table() -> str:
    """Return the table of docs/ros_node.md (the same words as the yaml and the descriptors)."""
    rows = ['| parameter | default | allowed | change applies | |', '|---|---|---|---|---|']
    for p in PARAMS:
        rows.append('| `%s` | `%s` | %s | %s | %s |' % (
            p.name, _yaml_value(p.default), p.words(),
            'restart (or before configure)' if p.read_only else 'next frame', p.description))
    return '\n'.join(rows) + '\n'


if __name__ == '__main__':
    import sys
    print(markdown_table() if '--markdown' in sys.argv else config_yaml(), end='')
