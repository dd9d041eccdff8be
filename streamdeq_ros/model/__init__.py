"""The StreamDEQ model core: pure PyTorch, no ROS imports."""
from .mdeq import CONFIGS, get_config, MDEQBackbone, MDEQConfig
from .official import load_official, official_to_native
from .solvers import broyden, solve, SolverResult, unroll

__all__ = ['CONFIGS', 'MDEQBackbone', 'MDEQConfig', 'SolverResult', 'broyden', 'get_config',
           'load_official', 'official_to_native', 'solve', 'unroll']
