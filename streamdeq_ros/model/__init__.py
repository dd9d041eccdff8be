"""The StreamDEQ model core: pure PyTorch, no ROS imports."""
from .mdeq import CONFIGS, get_config, MDEQBackbone, MDEQConfig, official_to_native
from .solvers import broyden, solve, SolverResult, unroll

__all__ = ['CONFIGS', 'MDEQBackbone', 'MDEQConfig', 'SolverResult', 'broyden', 'get_config',
           'official_to_native', 'solve', 'unroll']
