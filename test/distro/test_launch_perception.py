"""launch_testing: launch/perception.launch.py itself, as installed, with its video source.

Class masks arrive carrying the header of the image they were computed from, and every process
of the launch exits 0 when launch_testing shuts it down (SIGINT).
"""
import os
import time
import unittest

from ament_index_python.packages import get_package_share_directory
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from streamdeq_ros.ros.video_source import GENERATED_SIZE


@pytest.mark.launch_test
def generate_test_description():
    path = os.path.join(get_package_share_directory('streamdeq_ros'), 'launch',
                        'perception.launch.py')
    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                 launch_arguments={'iters': '2'}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestPerceptionLaunch(unittest.TestCase):

    def test_class_masks_carry_the_input_header(self):
        rclpy.init()
        try:
            node = Node('launch_test_client')
            frames, masks = {}, []
            node.create_subscription(
                Image, '/streamdeq_video_source/image',
                lambda m: frames.setdefault((m.header.stamp.sec, m.header.stamp.nanosec),
                                            m.header.frame_id), qos_profile_sensor_data)
            node.create_subscription(Image, '/streamdeq/segmentation/class_mask',
                                     masks.append, 10)
            deadline = time.monotonic() + 90

            def answered():
                return [m for m in masks
                        if (m.header.stamp.sec, m.header.stamp.nanosec) in frames]
            while len(answered()) < 3 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.1)
            self.assertGreaterEqual(len(answered()), 3, 'no class masks within 90 s')
            first = min(frames)
            for m in masks:
                key = (m.header.stamp.sec, m.header.stamp.nanosec)
                if key >= first:                   # not sent before this client subscribed
                    self.assertIn(key, frames)     # the stamp of an input frame
                    self.assertEqual(m.header.frame_id, frames[key])
                self.assertEqual((m.encoding, m.height, m.width), ('mono8',) + GENERATED_SIZE)
            node.destroy_node()
        finally:
            rclpy.try_shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_every_process_exits_0(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
