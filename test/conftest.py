"""Shared pytest set-up: import path for test helpers and deterministic torch."""
import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _torch_seed():
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


# Keep DDS discovery on this machine and give every test run its own domain, so parallel runs
# (and other ROS users on the machine) never see each other. Must happen before rclpy.init.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 200))


# test/distro/ checks the package against a ROS 2 distro install: launch_testing, ros2cli, the
# real cv_bridge, sensor_msgs_py and the official vision_msgs. None of these exist as PyPI
# wheels, so the pip venv does not collect them; the distro suite (colcon test in the
# environment of ../shared/ros2_distro, run by .ci/run) does.
DISTRO_MODULES = ('launch_testing', 'ros2cli', 'cv_bridge', 'sensor_msgs_py')
collect_ignore = [] if all(importlib.util.find_spec(m) for m in DISTRO_MODULES) else ['distro']
