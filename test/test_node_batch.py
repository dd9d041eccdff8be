"""The node solving several cameras in one batch, over DDS, against separate sessions in-process.

Three cameras (the third joins late, a reset comes mid-stream) go through the node with
``max_batch`` 3; the same frames go through three separate :class:`FramePipeline` sessions here.
Masks, detections, partial masks and residuals must agree. Then ``max_batch`` drops to 2 live
and three cameras sending faster than the node still each get their turn.
"""
import json
import signal
import time

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image, image_view
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.runtime.tracking import IoUTracker
from streamdeq_ros.tools.harness import start_node

CAMS = ['/nb/a', '/nb/b', '/nb/c']
MODEL = bundled_checkpoint('multi_tiny_sur')
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


class _Client:

    def __init__(self):
        self.node = Node('node_batch_client')
        self.status, self.masks, self.partials, self.dets = [], {}, {}, {}
        self.node.create_subscription(String, '/streamdeq/status',
                                      lambda m: self.status.append(json.loads(m.data)), 100)
        self.subs = []
        for cam in CAMS:
            name = cam.strip('/').replace('/', '_')
            for prefix, store in (('', self.masks), ('partial/', self.partials)):
                self.subs.append(self.node.create_subscription(
                    Image, '/streamdeq/%s%s/segmentation/class_mask' % (prefix, name),
                    lambda m, c=cam, s=store: s.__setitem__(
                        (c, m.header.stamp.sec), np.array(image_view(m))), RELIABLE))
            self.subs.append(self.node.create_subscription(
                Detection2DArray, '/streamdeq/%s/detections' % name,
                lambda m, c=cam: self.dets.__setitem__((c, m.header.stamp.sec), m), RELIABLE))
        self.pubs = {c: self.node.create_publisher(Image, c, RELIABLE) for c in CAMS}

    def answered(self, keys):
        seen = {(s['camera'], s['stamp'][0]) for s in self.status}
        return all(k in seen and k in self.masks and k in self.dets for k in keys)


def _frame(clip, t, sec):
    msg = fill_image(Image(), clip[t][0], 'rgb8')
    msg.header.stamp.sec = sec
    return msg


def _boxes(msg):
    return np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x,
                      d.bbox.size_y] for d in msg.detections]).reshape(-1, 4)


def _call_reset(node):
    client = node.create_client(Trigger, '/streamdeq/reset')
    assert client.wait_for_service(timeout_sec=30)
    fut = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, fut, timeout_sec=30)
    assert fut.result().success


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_batched_cameras_match_separate_sessions_and_keep_their_turns(ros):
    proc = start_node(CAMS, {'checkpoint': MODEL, 'input_qos': 'reliable', 'iters': 2,
                             'max_batch': 3, 'batch_wait_ms': 400})
    c = _Client()
    net, card = load_net(MODEL)
    pipeline = FramePipeline(net, card)
    sessions = {cam: pipeline.new_session(cam) for cam in CAMS}
    trackers = {cam: IoUTracker() for cam in CAMS}
    clips = {cam: StreetClip(20 + k, 100, 180) for k, cam in enumerate(CAMS)}
    try:
        assert spin_until(c.node, lambda: all(p.get_subscription_count() for p in
                                              c.pubs.values())
                          and all(s.get_publisher_count() for s in c.subs), 60)
        for t in range(8):
            active = CAMS[:2] if t < 3 else CAMS          # the third camera joins at frame 3
            if t == 5:                                     # a reset mid-stream
                _call_reset(c.node)
                for cam in CAMS:
                    sessions[cam].reset()
                    trackers[cam].reset()
            sec = 100 + t
            for cam in active:
                c.pubs[cam].publish(_frame(clips[cam], t, sec))
            keys = [(cam, sec) for cam in active]
            assert spin_until(c.node, lambda: c.answered(keys), 60), (t, keys)
            spin_until(c.node, lambda: all(k in c.partials for k in keys), 2)
            for cam in active:
                partials = []
                result, ref = pipeline.process(
                    sessions[cam], clips[cam][t][0], iters=2, partial_at=[1],
                    on_partial=partials.append, tracker=trackers[cam])
                status = next(s for s in c.status
                              if (s['camera'], s['stamp'][0]) == (cam, sec))
                assert status['final_residual'] == pytest.approx(result.final_residual,
                                                                 rel=1e-4)
                assert status['warm'] == result.warm and status['iters'] == 2
                assert (c.masks[cam, sec] == ref.mask).mean() > 0.999
                assert (c.partials[cam, sec] == partials[0].mask).mean() > 0.999
                got = _boxes(c.dets[cam, sec])
                b = ref.detections.boxes
                want = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                                 b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).reshape(-1, 4)
                assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-3)
                assert [d.id for d in c.dets[cam, sec].detections] == \
                    [str(i) if i else '' for i in ref.detections.ids]
        batches = {(s['camera'], s['stamp'][0]): s['batch'] for s in c.status}
        assert batches[CAMS[0], 101] == 2 and batches[CAMS[2], 106] == 3, batches
        assert not next(s for s in c.status if s['stamp'][0] == 105)['warm']   # the reset

        # fewer batch places than cameras, all sending faster than the node: each gets turns
        params = AsyncParameterClient(c.node, 'streamdeq')
        assert params.wait_for_services(timeout_sec=30)
        fut = params.set_parameters([Parameter('max_batch', value=2),
                                     Parameter('batch_wait_ms', value=0.0)])
        rclpy.spin_until_future_complete(c.node, fut, timeout_sec=30)
        assert all(r.successful for r in fut.result().results)
        before = len(c.status)
        end, k = time.monotonic() + 4.0, 0
        while time.monotonic() < end:
            k += 1
            for cam in CAMS:
                c.pubs[cam].publish(_frame(clips[cam], 0, 1000 + k))
            rclpy.spin_once(c.node, timeout_sec=0.002)
        spin_until(c.node, lambda: False, 1.0)
        served = c.status[before:]
        assert k > len(served) // 3 + 2                    # the node could not keep up
        assert all(s['batch'] <= 2 for s in served)
        for cam in CAMS:
            assert sum(s['camera'] == cam for s in served) >= 3, [s['camera'] for s in served]
    finally:
        c.node.destroy_node()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
