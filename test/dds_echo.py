"""Child process for the DDS smoke test: echo Image and Detection2DArray messages back."""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from streamdeq_ros.ros.shutdown import init_with_stop_flag, spin_until_stopped


class Echo(Node):
    """Republish /smoke/in_* on /smoke/out_* unchanged."""

    def __init__(self):
        """Create the echo publishers and subscriptions."""
        super().__init__('smoke_echo')
        self.pub_img = self.create_publisher(Image, '/smoke/out_image', 10)
        self.pub_det = self.create_publisher(Detection2DArray, '/smoke/out_dets', 10)
        self.create_subscription(Image, '/smoke/in_image', self.pub_img.publish, 10)
        self.create_subscription(Detection2DArray, '/smoke/in_dets', self.pub_det.publish, 10)
        print('ready', flush=True)


def main():
    """Spin until SIGINT or SIGTERM (a flag checked between callbacks, as the package's nodes do).

    rclpy's own SIGTERM handler shuts the context down under a spinning executor, which now
    and then left this process hanging (60 s without exiting).
    """
    stop = init_with_stop_flag()
    node = Echo()
    try:
        spin_until_stopped(node, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
