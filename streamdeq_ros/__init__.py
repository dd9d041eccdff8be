"""streamdeq_ros: StreamDEQ streaming perception (warm-started deep equilibrium models)."""
__version__ = '0.2.0'
