"""Shared pytest set-up: import path for test helpers and deterministic torch."""
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
