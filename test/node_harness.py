"""Shared pieces of the node tests over DDS.

Spin until a condition, run the node with a client, send a frame until the node answers it.
"""
import contextlib
import json
import signal
import time

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from streamdeq_ros.tools.harness import start_node


def spin_until(node, cond, timeout=60.0):
    """Spin ``node`` until ``cond()`` holds or ``timeout`` passes; return ``cond()``."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    return cond()


@contextlib.contextmanager
def node_with_client(camera, params, client_name, log=None):
    """Run ``streamdeq_node`` on ``camera`` with ``params`` (name -> value) and a client node.

    Yields (client, publisher on the camera, got, process); ``got`` collects the refined and
    partial class masks, the parsed ``~/status`` and ``/diagnostics``. ``log``: a file for the
    node's output (default: discarded).
    """
    proc = start_node([camera], params, log=log)
    rclpy.init()
    client = Node(client_name)
    got = {'class': [], 'partial': [], 'status': [], 'diag': []}
    client.create_subscription(Image, '/streamdeq/segmentation/class_mask',
                               got['class'].append, 50)
    client.create_subscription(Image, '/streamdeq/partial/segmentation/class_mask',
                               got['partial'].append, 50)
    client.create_subscription(String, '/streamdeq/status',
                               lambda m: got['status'].append(json.loads(m.data)), 50)
    client.create_subscription(DiagnosticArray, '/diagnostics', got['diag'].append, 50)
    pub = client.create_publisher(Image, camera, 10)
    try:
        yield client, pub, got, proc
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def send_until_answered(client, pub, got, msg, timeout=60.0):
    """Publish ``msg`` until the node's status answers its stamp (discovery takes a while)."""
    key = [msg.header.stamp.sec, msg.header.stamp.nanosec]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(msg)
        if spin_until(client, lambda: any(s['stamp'] == key for s in got['status']), 2.0):
            return next(s for s in got['status'] if s['stamp'] == key)
    raise AssertionError('no answer for frame %s' % key)
