"""An orderly Ctrl-C for the package's processes: signals set a flag, the spin loop checks it.

rclpy's own handlers shut the ROS context down from inside the signal, under a running executor
and any thread still publishing; a frame in flight then fails with "publisher's context is
invalid", and now and then the process hangs. Here SIGINT and SIGTERM only set a flag; the
caller's spin loop ends, stops its own work, and then destroys the node and the context.
"""
import signal
import threading
from typing import Callable

import rclpy
from rclpy.signals import SignalHandlerOptions


def init_with_stop_flag(args=None) -> threading.Event:
    """Initialise rclpy without its signal handlers; return the flag SIGINT/SIGTERM set."""
    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def spin_until_stopped(node, stop: threading.Event,
                       done: Callable[[], bool] = lambda: False):
    """Spin ``node`` until a signal, ``done()``, or the context going away."""
    while not stop.is_set() and not done() and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
