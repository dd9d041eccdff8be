"""What ``perception.launch.py`` gives the node: the params file, then the arguments given.

A launch argument left at its default ('' = not given) passes nothing, so the params file's
value stands, and the node's own default after that. The video source starts with
``use_video_source:=auto`` (the default) only when neither the command line nor the params file
names a camera; the node then watches the video source's topic.

No launch or rclpy import here: the launch file calls :func:`plan`, and the pip suite tests it.
The params file is read the way rcl reads it: every top-level key that matches the node's
fully qualified name (``/**``, ``/**/streamdeq``, ``/ns/streamdeq``, ``streamdeq``, ``*`` for
one name) contributes its ``ros__parameters``; for a parameter set twice the later key wins.
"""
from dataclasses import dataclass, field
import os
import re
from typing import Any, Dict, List

import yaml

NODE_NAME = 'streamdeq'
VIDEO_TOPIC = '/streamdeq_video_source/image'
#: launch arguments that set node parameters when given, in the order they are declared
OVERRIDES = ('cameras', 'image_topic', 'depth_topics', 'input_transport', 'iters', 'device',
             'checkpoint', 'input_size')


class LaunchArgumentError(ValueError):
    """A launch argument or params file that cannot be used; one sentence says why."""


@dataclass
class Plan:
    """The node's parameter overrides and whether the video source runs."""

    overrides: Dict[str, Any] = field(default_factory=dict)
    video_source: bool = False
    file_values: Dict[str, Any] = field(default_factory=dict)


def node_fqn(namespace: str) -> str:
    """Return the node's fully qualified name in ``namespace``."""
    ns = '/'.join(p for p in namespace.split('/') if p)
    return '/' + (ns + '/' if ns else '') + NODE_NAME


def _key_regex(key: str) -> 're.Pattern':
    parts = [p for p in str(key).split('/') if p]
    out = ''
    for p in parts:
        if p == '**':
            out += '(/[^/]+)*'
        else:
            out += '/' + re.escape(p).replace(r'\*', '[^/]*')
    return re.compile('^' + out + '$')


def _flatten(values: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
    flat = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, prefix + str(k) + '.'))
        else:
            flat[prefix + str(k)] = v
    return flat


def params_file_values(path: str, fqn: str) -> Dict[str, Any]:
    """Return the parameters a ROS 2 params file gives the node named ``fqn``."""
    if not os.path.isfile(path):
        raise LaunchArgumentError('params_file %r does not exist or is not a file' % path)
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        first = ' '.join(str(exc).split())
        raise LaunchArgumentError('params_file %r is not readable YAML: %s' % (path, first)) \
            from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LaunchArgumentError('params_file %r is not a ROS 2 parameters file (its top '
                                  'level is not a mapping of node names)' % path)
    values: Dict[str, Any] = {}
    for key, entry in data.items():
        if not _key_regex(key).match(fqn):
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get('ros__parameters', {}),
                                                         dict):
            raise LaunchArgumentError("params_file %r: %r has no 'ros__parameters' mapping"
                                      % (path, key))
        values.update(_flatten(entry.get('ros__parameters') or {}))
    return values


def _cameras(text: str, name: str = 'cameras') -> List[str]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, str):
        value = [t.strip() for t in value.split(',')]
        value = value if name != 'cameras' else [t for t in value if t]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise LaunchArgumentError("%s must be a list of topic names ('[/front, /rear]' "
                                  "or '/front,/rear'), got %r" % (name, text))
    return value


def flag(name: str, text: str) -> bool:
    """Return a true/false launch argument (LaunchArgumentError for anything else)."""
    value = text.strip().lower()
    if value not in ('true', 'false'):
        raise LaunchArgumentError("%s must be 'true' or 'false', got %r" % (name, text))
    return value == 'true'


def _iters(text: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return value        # the node refuses a non-integer with its own sentence


def plan(given: Dict[str, str], params_file: str = '', namespace: str = '',
         use_video_source: str = 'auto') -> Plan:
    """Return the node's overrides for the launch arguments ``given`` (name -> text; '' = not).

    ``image_topic`` is the one-camera form of ``cameras``; giving both is refused.
    """
    if use_video_source not in ('auto', 'true', 'false'):
        raise LaunchArgumentError("use_video_source must be 'auto', 'true' or 'false', got %r"
                                  % use_video_source)
    unknown = set(given) - set(OVERRIDES)
    if unknown:
        raise LaunchArgumentError('unknown launch arguments: %s' % ', '.join(sorted(unknown)))
    given = {k: v.strip() for k, v in given.items() if v is not None and v.strip() != ''}
    if 'cameras' in given and 'image_topic' in given:
        raise LaunchArgumentError('give cameras or image_topic, not both (got cameras:=%s and '
                                  'image_topic:=%s)' % (given['cameras'], given['image_topic']))
    file_values = params_file_values(params_file, node_fqn(namespace)) if params_file else {}
    out = Plan(file_values=file_values)
    if 'image_topic' in given:
        out.overrides['cameras'] = [given['image_topic']]
    elif 'cameras' in given:
        out.overrides['cameras'] = _cameras(given['cameras'])
    if 'depth_topics' in given:
        out.overrides['depth_topics'] = _cameras(given['depth_topics'], 'depth_topics')
    for name in ('input_transport', 'device', 'checkpoint'):
        if name in given:
            out.overrides[name] = given[name]
    for name in ('iters', 'input_size'):      # YAML values; the node refuses bad ones
        if name in given:
            out.overrides[name] = _iters(given[name])
    named = 'cameras' in out.overrides or 'cameras' in file_values
    out.video_source = use_video_source == 'true' or (use_video_source == 'auto'
                                                      and not named)
    if out.video_source and not named:
        out.overrides['cameras'] = [VIDEO_TOPIC]
    return out
