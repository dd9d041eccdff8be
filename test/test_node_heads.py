"""Detections and keypoints from the node over DDS match the model's outputs for the same frames.

The node runs the bundled multi-task model as a real process; the test feeds it a clip one
frame at a time and runs the same frames through an in-process FramePipeline with the same
settings, then compares every published number. A segmentation-only checkpoint advertises no
detection or keypoint topics.
"""
import signal

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, LabelInfo

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.runtime.tracking import IoUTracker
from streamdeq_ros.tools.harness import start_node
from test_messages import read_points

CAM = '/heads_test/cam'
MULTI = bundled_checkpoint('multi_tiny_sur')
SETTINGS = {'iters': 2, 'partial_iters': 1, 'score_threshold': 0.3}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _node(checkpoint):
    return start_node([CAM], dict(SETTINGS, input_qos='reliable', checkpoint=checkpoint))


def _frame(rgb, sec):
    msg = fill_image(Image(), rgb, 'rgb8')
    msg.header.frame_id = 'cam_optical'
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 77
    return msg


@pytest.fixture(scope='module')
def client():
    rclpy.init()
    node = Node('heads_test_client')
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_detections_and_keypoints_match_the_model_with_the_input_header(client):
    proc = _node(MULTI)
    topics = {'det': (Detection2DArray, '/streamdeq/detections'),
              'persons': (Detection2DArray, '/streamdeq/keypoints/persons'),
              'kp': (PointCloud2, '/streamdeq/keypoints'),
              'pdet': (Detection2DArray, '/streamdeq/partial/detections'),
              'pkp': (PointCloud2, '/streamdeq/partial/keypoints'),
              'status': (String, '/streamdeq/status')}
    got = {k: {} for k in topics}
    for key, (kind, topic) in topics.items():
        client.create_subscription(
            kind, topic, lambda m, k=key: got[k].__setitem__(
                m.header.stamp.sec if k != 'status' else m.data, m), 50)
    pub = client.create_publisher(Image, CAM, 10)
    frames = [StreetClip(11, 120, 240)[t][0] for t in range(19, 25)]
    try:
        # warm up discovery (one frame a second until answered), let the node go idle, then
        # forget that frame: states and trackers start from scratch
        for _ in range(60):
            pub.publish(_frame(frames[0], 1))
            if spin_until(client, lambda: got['det'], timeout=1.0):
                break
        assert got['det']
        spin_until(client, lambda: False, timeout=2.0)
        reset = client.create_client(Trigger, '/streamdeq/reset')
        assert reset.wait_for_service(timeout_sec=20)
        fut = reset.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(client, fut, timeout_sec=20)
        assert fut.result().success
        for t, rgb in enumerate(frames):
            pub.publish(_frame(rgb, 100 + t))
            assert spin_until(client, lambda: all(100 + t in got[k] for k in
                                                  ('det', 'persons', 'kp', 'pdet', 'pkp')))
        labels = []
        client.create_subscription(LabelInfo, '/streamdeq/detections/label_info',
                                   labels.append, LATCHED)
        joints = []
        client.create_subscription(LabelInfo, '/streamdeq/keypoints/label_info',
                                   joints.append, LATCHED)
        assert spin_until(client, lambda: labels and joints, timeout=20)
    finally:
        _stop(proc)
    classes = [(c.class_id, c.class_name) for c in labels[0].class_map]
    assert classes == [(1, 'person'), (2, 'car')]
    assert joints[0].class_map[9].class_name == 'head_top'

    net, card = load_net(MULTI)
    pipeline = FramePipeline(net, card)
    session, tracker = pipeline.new_session('cam'), IoUTracker()
    # the warm-up frames the node answered gave out instance ids; the reset kept them used
    warmups = [s for s in got['status'] if '"stamp": [1, 77]' in s]
    assert warmups
    for _ in warmups:
        pipeline.process(session, frames[0], iters=SETTINGS['iters'], tracker=tracker,
                         score_threshold=SETTINGS['score_threshold'])
    session.reset()
    tracker.reset()
    found = 0
    for t, rgb in enumerate(frames):
        partials = []
        _, out = pipeline.process(session, rgb, iters=SETTINGS['iters'], partial_at=[1],
                                  on_partial=partials.append, tracker=tracker,
                                  score_threshold=SETTINGS['score_threshold'])
        det, persons, cloud = got['det'][100 + t], got['persons'][100 + t], got['kp'][100 + t]
        for msg in (det, persons, cloud, got['pdet'][100 + t], got['pkp'][100 + t]):
            assert msg.header.frame_id == 'cam_optical' and msg.header.stamp.nanosec == 77
        _same_detections(det, out.detections)
        _same_detections(persons, out.persons)
        _same_detections(got['pdet'][100 + t], partials[0].detections)
        pts = read_points(cloud)
        assert len(pts) == out.keypoints.shape[0] * 16
        np.testing.assert_allclose(pts['u'], out.keypoints[..., 0].ravel(), atol=0.05)
        np.testing.assert_allclose(pts['v'], out.keypoints[..., 1].ravel(), atol=0.05)
        np.testing.assert_allclose(pts['score'], out.keypoints[..., 2].ravel(), atol=1e-3)
        assert pts['instance_id'].tolist() == np.repeat(out.persons.ids, 16).tolist()
        assert [d.id for d in persons.detections] == [str(i) for i in out.persons.ids]
        found += len(det.detections) + len(persons.detections)
    assert found > 0                     # the trained detector finds the street's objects


def _same_detections(msg, dets):
    assert len(msg.detections) == len(dets.boxes)
    for d, box, label, score, ident in zip(msg.detections, dets.boxes, dets.labels,
                                           dets.scores, dets.ids):
        c = d.bbox.center.position
        np.testing.assert_allclose([c.x - d.bbox.size_x / 2, c.y - d.bbox.size_y / 2,
                                    c.x + d.bbox.size_x / 2, c.y + d.bbox.size_y / 2], box,
                                   atol=0.05)
        assert d.results[0].hypothesis.class_id == str(label)
        assert abs(d.results[0].hypothesis.score - score) < 1e-3
        assert d.id == (str(ident) if ident else '')


def test_a_checkpoint_without_heads_advertises_no_topics_for_them(client):
    proc = _node(bundled_checkpoint('seg_tiny_sur'))
    absent = ['/streamdeq/detections', '/streamdeq/keypoints', '/streamdeq/keypoints/persons',
              '/streamdeq/detections/label_info', '/streamdeq/keypoints/label_info',
              '/streamdeq/partial/detections', '/streamdeq/partial/keypoints']
    try:
        def published():           # topics someone publishes (this client subscribes to some)
            return {t for t in absent + ['/streamdeq/partial/segmentation/class_mask']
                    if client.count_publishers(t)}
        assert spin_until(client, lambda: published() == {
            '/streamdeq/partial/segmentation/class_mask'}, timeout=60), published()
    finally:
        _stop(proc)
