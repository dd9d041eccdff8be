"""The node's bytes, read with the real cv_bridge, sensor_msgs_py and official vision_msgs.

Outputs of the real node process (bundled three-head model) over DDS, decoded with the
libraries a ROS 2 user has.
"""
import signal
import subprocess
import time

from cv_bridge import CvBridge
import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from sensor_msgs_py import point_cloud2
import vision_msgs.msg
from vision_msgs.msg import Detection2DArray

from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime.executables import executable

CAM = '/decoder_test/cam'
TOPICS = {'class': (Image, '/streamdeq/segmentation/class_mask'),
          'color': (Image, '/streamdeq/segmentation/color_mask'),
          'overlay': (Image, '/streamdeq/overlay'),
          'kp': (PointCloud2, '/streamdeq/keypoints'),
          'persons': (Detection2DArray, '/streamdeq/keypoints/persons'),
          'det': (Detection2DArray, '/streamdeq/detections')}


@pytest.fixture(scope='module')
def outputs():
    proc = subprocess.Popen([executable('streamdeq_node'), '--ros-args',
                             '-p', 'cameras:=[%s]' % CAM, '-p', 'input_qos:=reliable',
                             '-p', 'score_threshold:=0.3'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    node = Node('decoder_test_client')
    got = {k: [] for k in TOPICS}
    for key, (kind, topic) in TOPICS.items():
        node.create_subscription(kind, topic, got[key].append, 20)
    pub = node.create_publisher(Image, CAM, 10)
    rgb = StreetClip(11, 120, 240)[19][0]
    try:
        deadline = time.monotonic() + 90
        sec = 0
        while time.monotonic() < deadline and not (all(got.values()) and any(
                m.width for m in got['kp'])):
            msg = fill_image(Image(), rgb, 'rgb8')
            sec += 1
            msg.header.stamp.sec = sec
            msg.header.frame_id = 'cam_optical'
            pub.publish(msg)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
        yield got, rgb
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_cv_bridge_reads_the_masks_and_the_overlay(outputs):
    got, rgb = outputs
    bridge = CvBridge()
    mask = bridge.imgmsg_to_cv2(got['class'][-1], desired_encoding='passthrough')
    assert mask.dtype == np.uint8 and mask.shape == rgb.shape[:2] and mask.max() < 8
    color = bridge.imgmsg_to_cv2(got['color'][-1], desired_encoding='bgr8')
    assert color.shape == rgb.shape
    overlay = bridge.imgmsg_to_cv2(got['overlay'][-1], desired_encoding='bgr8')
    assert overlay.shape == rgb.shape
    # cv_bridge's own writer and ours give the same message for the same pixels
    ours = got['color'][-1]
    theirs = bridge.cv2_to_imgmsg(bridge.imgmsg_to_cv2(ours, 'rgb8'), encoding='rgb8')
    assert (theirs.step, theirs.encoding, bytes(theirs.data)) == \
        (ours.step, ours.encoding, bytes(ours.data))


def test_sensor_msgs_py_reads_the_keypoints(outputs):
    got, rgb = outputs
    cloud = next(m for m in reversed(got['kp']) if m.width)
    names = ('u', 'v', 'score', 'instance_id', 'keypoint_id')
    points = point_cloud2.read_points(cloud, field_names=names)
    assert len(points) == cloud.width and len(points) % 16 == 0
    assert (points['u'] >= 0).all() and (points['u'] < rgb.shape[1]).all()
    assert (points['v'] >= 0).all() and (points['v'] < rgb.shape[0]).all()
    assert (points['score'] >= 0).all() and (points['score'] <= 1).all()
    assert sorted(set(points['keypoint_id'].tolist())) == list(range(16))


def test_detections_are_the_official_vision_msgs(outputs):
    got, _ = outputs
    # the official package, not the project's test-support copy (which has 2D messages only)
    assert hasattr(vision_msgs.msg, 'Detection3DArray')
    arr = got['det'][-1]
    assert isinstance(arr, vision_msgs.msg.Detection2DArray) and arr.detections
    det = arr.detections[0]
    assert det.results[0].hypothesis.class_id in ('1', '2')
    assert 0 <= det.results[0].hypothesis.score <= 1 and det.bbox.size_x > 0
    assert arr.header.frame_id == 'cam_optical'
