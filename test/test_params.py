"""The node's parameter table, its validation, and config/streamdeq.yaml agree."""
import os
import re

import pytest
import yaml

from streamdeq_ros.ros.params import BY_NAME, defaults, validate

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config',
                      'streamdeq.yaml')


def test_config_file_lists_every_parameter_with_its_default():
    with open(CONFIG) as fh:
        data = yaml.safe_load(fh)
    assert data['/**']['ros__parameters'] == defaults()


def test_defaults_are_valid():
    for name, value in defaults().items():
        assert validate(name, value) is None, name


@pytest.mark.parametrize('name, value, reason', [
    ('iters', 0, r'iters must be in \[1, 100\]'),
    ('iters', 2.5, 'iters must be of type int'),
    ('iters', True, 'iters must be of type int'),
    ('solver', 'newton', 'solver must be one of unroll, broyden'),
    ('tol', float('nan'), 'tol must be in'),
    ('deadline_ms', -1.0, 'deadline_ms must be in'),
    ('mask_resolution', 'camera', 'mask_resolution must be one of'),
    ('input_size', [100, 192], 'multiples of 32'),
    ('device', 'gpu', "device must be 'auto'"),
    ('cameras', [], 'non-empty list'),
    ('cameras', ['a', 'a'], 'distinct'),
    ('warp', 1, 'unknown parameter'),
])
def test_invalid_values_are_refused_with_a_reason(name, value, reason):
    assert validate(name, value) is not None
    assert re.search(reason, validate(name, value))


def test_read_only_parameters_cannot_change_while_running():
    assert 'read-only' in validate('checkpoint', 'other.pt', configured=True)
    assert validate('iters', 1, configured=True) is None
    assert validate('tol', 0, configured=True) is None           # an int for a float is fine
    assert BY_NAME['iters'].read_only is False and BY_NAME['device'].read_only is True
