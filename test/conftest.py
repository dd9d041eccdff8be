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
