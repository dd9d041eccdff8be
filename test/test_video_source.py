"""``streamdeq_video_source`` as a real process publishing over DDS."""
import subprocess
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from dataset_fixtures import solid_frame, write_png
from streamdeq_ros.ros.image_conv import image_to_rgb
from streamdeq_ros.runtime.executables import executable

BIN = executable('streamdeq_video_source')


def _receive(args, topic, want, timeout=30.0):
    child = subprocess.Popen([BIN, '--ros-args'] + args + ['-r', 'image:=' + topic],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    got = []
    try:
        node = Node('video_source_client')
        node.create_subscription(Image, topic, got.append, QoSProfile(depth=50))
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return child, got


def test_folder_is_published_in_order_looping_and_the_process_ends_cleanly(tmp_path):
    for k in range(3):
        write_png(tmp_path / 'frames' / ('%02d.png' % k), solid_frame(40 * (k + 1)))
    child, got = _receive(['-p', 'source:=%s' % (tmp_path / 'frames'), '-p', 'fps:=30.0',
                           '-p', 'frame_id:=cam_test', '-p', 'max_frames:=400',
                           '-p', 'width:=0', '-p', 'height:=0'], '/vs_test/image', 9)
    try:
        assert len(got) >= 9
        reds = [int(image_to_rgb(m)[0, 0, 0]) for m in got]
        # consecutive frames follow the folder order, wrapping around
        for a, b in zip(reds, reds[1:]):
            assert b == {40: 80, 80: 120, 120: 40}[a]
        m = got[0]
        assert (m.encoding, m.width, m.height, m.header.frame_id) == ('rgb8', 48, 32, 'cam_test')
        stamps = [x.header.stamp.sec + 1e-9 * x.header.stamp.nanosec for x in got]
        assert all(b > a for a, b in zip(stamps, stamps[1:]))
    finally:
        child.send_signal(2)                         # SIGINT, as ros2 launch does
        assert child.wait(timeout=20) == 0


def test_generated_source_and_max_frames(tmp_path):
    child, got = _receive(['-p', 'source:=generated:3', '-p', 'fps:=40.0',
                           '-p', 'max_frames:=200', '-p', 'width:=128', '-p', 'height:=64'],
                          '/vs_gen/image', 3)
    try:
        assert len(got) >= 3
        assert (got[0].width, got[0].height) == (128, 64)
        assert np.asarray(image_to_rgb(got[0])).std() > 10        # a rendered street
    finally:
        assert child.wait(timeout=30) == 0                        # ends after max_frames


def test_a_bad_source_stops_with_one_clear_line(tmp_path):
    out = subprocess.run([BIN, '--ros-args', '-p', 'source:=%s' % (tmp_path / 'none.mp4')],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert 'streamdeq_video_source: video file' in out.stderr and 'does not exist' in out.stderr
