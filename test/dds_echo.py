"""Child process for the DDS smoke test: echo Image and Detection2DArray messages back."""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


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
    """Spin until interrupted."""
    rclpy.init()
    node = Echo()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
