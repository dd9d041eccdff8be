"""Memory of the node when one oversized raw frame arrives (docs/dds.md).

Starts ``streamdeq_node`` on a private ROS domain, sends five small frames, then one 8000x8000
rgb8 frame (192 MB, over ``max_input_pixels``) reliably, waits until /diagnostics counts it
rejected, and prints the node's peak (VmHWM) and resident (VmRSS) memory before and after.
Usage: .venv/bin/python scripts/oversized_frame.py  (set FASTDDS_DEFAULT_PROFILES_FILE to try
a Fast DDS profile on both ends).
"""
import os
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from streamdeq_ros.tools.harness import private_domain_env, start_node, stop_node


def _mem(pid: int, key: str) -> int:
    with open('/proc/%d/status' % pid) as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith(key))


def main() -> int:
    os.environ.update(private_domain_env())
    proc = start_node(['/oversized/cam'], {'input_qos': 'reliable'})
    rclpy.init()
    node = Node('oversized_frame_client')
    diag = []
    node.create_subscription(DiagnosticArray, '/diagnostics', diag.append, 10)
    pub = node.create_publisher(Image, '/oversized/cam',
                                QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    try:
        end = time.monotonic() + 120
        while pub.get_subscription_count() < 1 and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(3)
        small = Image(height=240, width=320, encoding='rgb8', step=960, data=bytes(240 * 960))
        for k in range(5):
            small.header.stamp.sec = k + 1
            pub.publish(small)
            rclpy.spin_once(node, timeout_sec=0.3)
        time.sleep(2)
        before = _mem(proc.pid, 'VmHWM'), _mem(proc.pid, 'VmRSS')
        big = Image(height=8000, width=8000, encoding='rgb8', step=24000)
        big.header.stamp.sec = 10
        big.data = np.zeros(8000 * 8000 * 3, np.uint8).tobytes()
        pub.publish(big)

        def rejected():
            return any(kv.key == 'rejected' and int(kv.value) > 0
                       for arr in diag for st in arr.status for kv in st.values)
        end = time.monotonic() + 60
        while not rejected() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(2)
        after = _mem(proc.pid, 'VmHWM'), _mem(proc.pid, 'VmRSS')
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop_node(proc)
    print('rejected: %s; peak %d -> %d MB (+%d), resident %d -> %d MB (+%d)'
          % (rejected(), before[0], after[0], after[0] - before[0], before[1], after[1],
             after[1] - before[1]))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
