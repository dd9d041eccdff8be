"""The ROS 2 layer: message conversion, nodes. Only this package imports rclpy."""
import os

#: the OpenMP wait policy of this process's torch as its environment names it (libgomp reads
#: OMP_WAIT_POLICY when torch loads; docs/benchmarks.md "A busy computer")
OMP_WAIT_POLICY = os.environ.get('OMP_WAIT_POLICY', 'unset (libgomp default)')
