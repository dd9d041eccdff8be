"""The ROS 2 layer: message conversion, nodes. Only this package imports rclpy."""
import os
import sys

from ..threads import prefer_passive_wait

#: the OpenMP wait policy of this process's torch: PASSIVE unless the environment names one,
#: set here because libgomp reads it when torch loads (a process that loaded torch before this
#: package keeps what it had; README "A busy computer")
OMP_WAIT_POLICY = (prefer_passive_wait() if 'torch' not in sys.modules
                   else os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)'))
