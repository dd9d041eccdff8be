"""The StreamDEQ model core: pure PyTorch, no ROS imports."""
from .mdeq import CONFIGS, MDEQBackbone, MDEQConfig, get_config, official_to_native
from .solvers import SolverResult, broyden, solve, unroll

__all__ = ['CONFIGS', 'MDEQBackbone', 'MDEQConfig', 'SolverResult', 'broyden', 'get_config',
           'official_to_native', 'solve', 'unroll']
