"""The node's parameter table, its validation, and config/streamdeq.yaml agree."""
import os

import pytest
import yaml

from streamdeq_ros.ros.params import (BY_NAME, coerce, config_yaml, defaults, validate,
                                      validate_all)

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config',
                      'streamdeq.yaml')
SIZE_RULE = 'input_size must be [height, width] in positive multiples of 32, or [0, 0] for ' \
    "the model's size"


def test_config_file_lists_every_parameter_with_its_default():
    with open(CONFIG) as fh:
        text = fh.read()
    assert yaml.safe_load(text)['/**']['ros__parameters'] == defaults()
    assert text == config_yaml(), 'regenerate: python -m streamdeq_ros.ros.params > ' \
        'config/streamdeq.yaml'


def test_no_default_is_an_empty_list():
    # ROS 2 cannot carry [] (YAML and the command line turn it into 'not set')
    assert all(v != [] for v in defaults().values())


def test_defaults_are_valid():
    assert validate_all(defaults()) == []


@pytest.mark.parametrize('name, value, reason', [
    ('iters', 0, 'iters must be an integer from 1 to 100, got 0'),
    ('iters', 2.5, 'iters must be an integer from 1 to 100, got 2.5 (a float)'),
    ('iters', 3.0, 'iters must be an integer from 1 to 100, got 3.0 (a float)'),
    ('iters', True, 'iters must be an integer from 1 to 100, got true (a boolean)'),
    ('iters', '3', "iters must be an integer from 1 to 100, got '3' (a string)"),
    ('solver', 'newton', "solver must be one of '', 'unroll', 'broyden', got 'newton'"),
    ('tol', float('nan'), 'tol must be a number from 0 to 1, got nan'),
    ('deadline_ms', -1.0, 'deadline_ms must be a number from 0 to 10000, got -1.0'),
    ('mask_resolution', 'camera', "mask_resolution must be one of 'input', 'network', got "
                                  "'camera'"),
    ('input_size', [100, 192], SIZE_RULE + ', got [100, 192]'),
    ('input_size', None, SIZE_RULE + ", got no value (an empty list [] reaches ROS 2 as 'not "
                                     "set')"),
    ('device', 'gpu', "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ('cameras', None, 'cameras must be a non-empty list of distinct topic names, got no value'),
    ('cameras', ['a', 'a'], 'cameras must be a non-empty list of distinct topic names, got '
                            "['a', 'a']"),
    ('publish_partial', 1, 'publish_partial must be true or false, got 1 (an integer)'),
    ('threads', -1, 'threads must be an integer from 0 to the number of cores this process may '
                    'use'),
    ('threads', 10 ** 6, 'threads must be an integer from 0 to the number of cores this process '
                         'may use'),
    ('mono16_max', 70000, 'mono16_max must be an integer from 0 to 65535, got 70000'),
    ('max_input_pixels', 0, 'max_input_pixels must be an integer from 1 to 268435456, got 0'),
    ('stale_after_s', 0.0, 'stale_after_s must be a number from 0.1 to 3600, got 0.0'),
    ('warp', 1, "unknown parameter 'warp': the streamdeq node has no such parameter"),
    ('iter', 1, "unknown parameter 'iter': the streamdeq node has no such parameter (did you "
                "mean 'iters'?)"),
])
def test_invalid_values_are_refused_with_one_sentence_in_words(name, value, reason):
    got = validate(name, value)
    assert got is not None and got.startswith(reason), got
    assert '\n' not in got and 'Type.' not in got and 'PARAMETER_' not in got


def test_integers_are_accepted_for_float_parameters():
    assert validate('deadline_ms', 5) is None and coerce('deadline_ms', 5) == 5.0
    assert isinstance(coerce('deadline_ms', 5), float)
    assert validate('input_size', [96, 192]) is None and validate('input_size', [0, 0]) is None


def test_read_only_parameters_cannot_change_while_running():
    assert validate('checkpoint', 'other.pt', configured=True) == \
        "checkpoint is read-only while the node runs (got 'other.pt'); set it at start-up"
    assert validate('iters', 1, configured=True) is None
    assert validate('tol', 0, configured=True) is None           # an int for a float is fine
    assert BY_NAME['iters'].read_only is False and BY_NAME['device'].read_only is True


def test_every_refusal_of_a_start_up_set_is_listed():
    values = dict(defaults(), iters=0, tol=float('nan'), cameras=None)
    assert [r.split(' ')[0] for r in validate_all(values)] == ['cameras', 'iters', 'tol']


def test_the_readme_parameter_table_is_the_table():
    from streamdeq_ros.ros.params import markdown_table
    with open(os.path.join(os.path.dirname(CONFIG), '..', 'docs', 'ros_node.md')) as fh:
        assert markdown_table() in fh.read(), 'regenerate: python -m streamdeq_ros.ros.params ' \
            '--markdown'


def test_per_camera_lists_fit_the_cameras():
    values = dict(defaults(), cameras=['/a/image', '/b/image'])
    assert validate_all(values) == []                       # [''] : every camera's default
    assert validate_all(dict(values, depth_topics=['/a/depth', ''])) == []
    assert validate_all(dict(values, depth_topics=['/a/depth'])) == [
        "depth_topics must have one entry per camera (2: ['/a/image', '/b/image']) or be [''], "
        "got ['/a/depth']"]
    assert validate('camera_info_topics', ['/a/info', 'b c']).startswith(
        'camera_info_topics must be a list of topic names')
    assert validate('classes', ['car', 'car']).startswith('classes must be a list of distinct')
    assert validate('classes', ['']) is None and validate('classes', ['car', '']) is not None
