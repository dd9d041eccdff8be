"""The environment is real: two processes exchange vision_msgs and sensor_msgs over DDS."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray
from vision_msgs.msg import ObjectHypothesisWithPose

HERE = os.path.dirname(os.path.abspath(__file__))


def _detections():
    msg = Detection2DArray()
    msg.header.frame_id = 'camera_optical'
    msg.header.stamp.sec, msg.header.stamp.nanosec = 17, 250
    det = Detection2D()
    det.header = msg.header
    det.id = '42'
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = '13'
    hyp.hypothesis.score = 0.875
    det.results.append(hyp)
    det.bbox = BoundingBox2D()
    det.bbox.center.position.x, det.bbox.center.position.y = 120.5, 64.25
    det.bbox.size_x, det.bbox.size_y = 30.0, 12.0
    msg.detections.append(det)
    return msg


def _image():
    img = Image()
    img.header.frame_id = 'camera_optical'
    img.header.stamp.sec = 17
    img.height, img.width, img.encoding, img.step = 48, 64, 'rgb8', 64 * 3
    pixels = (np.arange(48 * 64 * 3) % 251).astype(np.uint8)
    img.data = pixels.tobytes()
    return img, pixels


def test_two_processes_exchange_detections_and_images():
    child = subprocess.Popen([sys.executable, os.path.join(HERE, 'dds_echo.py')],
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert child.stdout.readline().strip() == 'ready'
        rclpy.init()
        node = Node('smoke_client')
        got = {}
        node.create_subscription(Image, '/smoke/out_image',
                                 lambda m: got.setdefault('img', m), 10)
        node.create_subscription(Detection2DArray, '/smoke/out_dets',
                                 lambda m: got.setdefault('det', m), 10)
        pub_img = node.create_publisher(Image, '/smoke/in_image', 10)
        pub_det = node.create_publisher(Detection2DArray, '/smoke/in_dets', 10)
        img, pixels = _image()
        dets = _detections()
        deadline = time.monotonic() + 30.0
        while len(got) < 2 and time.monotonic() < deadline:
            pub_img.publish(img)
            pub_det.publish(dets)
            rclpy.spin_once(node, timeout_sec=0.2)
        assert set(got) == {'img', 'det'}, 'no round trip over DDS within 30 s: %s' % got
        echoed = got['det'].detections[0]
        assert echoed.id == '42' and echoed.results[0].hypothesis.class_id == '13'
        assert echoed.results[0].hypothesis.score == pytest.approx(0.875)
        assert echoed.bbox.center.position.x == pytest.approx(120.5)
        assert got['det'].header.stamp.nanosec == 250
        back = got['img']
        assert (back.height, back.width, back.encoding, back.step) == (48, 64, 'rgb8', 192)
        assert np.array_equal(np.frombuffer(bytes(back.data), np.uint8), pixels)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
        child.terminate()
        t0 = time.monotonic()
        try:
            rc = child.wait(timeout=60)
        finally:
            print('echo exit took %.1f s' % (time.monotonic() - t0))
        assert rc == 0, 'echo process did not exit cleanly on SIGTERM'
