"""The node with two cameras, the reset service, the lifecycle round trip, compressed input."""
import json
import signal
import subprocess
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime.executables import executable

BIN = executable('streamdeq_node')


def _start(args):
    return subprocess.Popen([BIN, '--ros-args'] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _call(node, client, request):
    assert client.wait_for_service(timeout_sec=30)
    fut = client.call_async(request)
    rclpy.spin_until_future_complete(node, fut, timeout_sec=30)
    return fut.result()


class _Client:

    def __init__(self, name):
        self.node = Node(name)
        self.status = []
        self.node.create_subscription(String, '/streamdeq/status',
                                      lambda m: self.status.append(json.loads(m.data)), 100)

    def send(self, pub, msg, timeout=30.0, expect=True):
        key = [msg.header.stamp.sec, msg.header.stamp.nanosec]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.publish(msg)
            if spin_until(self.node, lambda: any(s['stamp'] == key for s in self.status),
                          1.5 if expect else timeout):
                return next(s for s in self.status if s['stamp'] == key)
            if not expect:
                return None
        raise AssertionError('no answer for %s' % key)


def _img(clip, t, sec):
    msg = fill_image(Image(), clip[t][0], 'rgb8')
    msg.header.stamp.sec = sec
    return msg


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_two_cameras_keep_independent_states_and_reset(ros):
    proc = _start(['-p', 'cameras:=[/mc/a, /mc/b]', '-p', 'iters:=1',
                   '-p', 'publish_partial:=false'])
    c = _Client('mc_client')
    try:
        pa = c.node.create_publisher(Image, '/mc/a', 10)
        pb = c.node.create_publisher(Image, '/mc/b', 10)
        cut_a = StreetClip(11, 96, 192, cut_at=2)
        smooth_b = StreetClip(12, 96, 192)
        trace_with_a = []
        for t in range(5):
            c.send(pa, _img(cut_a, t, 1000 + t))
            trace_with_a.append(c.send(pb, _img(smooth_b, t, 2000 + t))['final_residual'])
        reset = _call(c.node, c.node.create_client(Trigger, '/streamdeq/reset'),
                      Trigger.Request())
        assert reset.success and 'reset 2' in reset.message
        trace_alone = [c.send(pb, _img(smooth_b, t, 3000 + t))['final_residual']
                       for t in range(5)]
        assert trace_alone == pytest.approx(trace_with_a, rel=1e-4)
        cams = {s['camera'] for s in c.status}
        assert cams == {'/mc/a', '/mc/b'}
        # both cameras far faster than the node: served in turn, neither starves. 8 iterations
        # keep the node slower than the publishers (no one subscribes to an output here, so
        # no head is read: at 1 iteration the node keeps up with this loop)
        params = AsyncParameterClient(c.node, 'streamdeq')
        assert params.wait_for_services(timeout_sec=20)
        fut = params.set_parameters([Parameter('iters', value=8)])
        rclpy.spin_until_future_complete(c.node, fut, timeout_sec=20)
        assert fut.result().results[0].successful
        before = len(c.status)
        end = time.monotonic() + 4.0
        k = 0
        while time.monotonic() < end:
            k += 1
            pa.publish(_img(cut_a, 0, 5000 + k))
            pb.publish(_img(smooth_b, 0, 6000 + k))
            rclpy.spin_once(c.node, timeout_sec=0.002)
        spin_until(c.node, lambda: False, 1.0)
        served = [s['camera'] for s in c.status[before:]]
        assert k > 2 * len(served)                            # the node could not keep up
        assert served.count('/mc/a') >= 3 and served.count('/mc/b') >= 3, served
    finally:
        c.node.destroy_node()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_lifecycle_round_trip_and_compressed_input(ros):
    proc = _start(['-p', 'cameras:=[/lc/cam]', '-p', 'input_transport:=compressed'])
    c = _Client('lc_client')
    try:
        pub = c.node.create_publisher(CompressedImage, '/lc/cam/compressed', 10)
        ok, jpg = cv2.imencode('.jpg', StreetClip(3, 96, 192)[0][0][..., ::-1])
        assert ok
        m = CompressedImage(format='jpeg', data=jpg.tobytes())
        m.header.frame_id, m.header.stamp.sec = 'lc', 10
        assert c.send(pub, m)['frame_id'] == 'lc'
        corrupt = CompressedImage(format='jpeg', data=jpg.tobytes()[:200] + b'\x00' * 50)
        corrupt.header.stamp.sec = 9
        pub.publish(corrupt)
        spin_until(c.node, lambda: False, 0.5)
        m.header.stamp.sec = 13
        assert c.send(pub, m)['frame_id'] == 'lc'                     # still alive
        assert not any(s['stamp'][0] == 9 for s in c.status)         # the corrupt one dropped
        diags = []
        c.node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
        assert spin_until(c.node, lambda: diags, 10)
        assert {kv.key: kv.value for kv in diags[-1].status[0].values}['rejected'] == '1'
        change = c.node.create_client(ChangeState, '/streamdeq/change_state')
        get = c.node.create_client(GetState, '/streamdeq/get_state')
        deact = ChangeState.Request()
        deact.transition.id = Transition.TRANSITION_DEACTIVATE
        assert _call(c.node, change, deact).success
        assert _call(c.node, get, GetState.Request()).current_state.id == \
            State.PRIMARY_STATE_INACTIVE
        m.header.stamp.sec = 11
        assert c.send(pub, m, timeout=3.0, expect=False) is None     # inactive: no answer
        act = ChangeState.Request()
        act.transition.id = Transition.TRANSITION_ACTIVATE
        assert _call(c.node, change, act).success
        m.header.stamp.sec = 12
        status = c.send(pub, m)
        assert status['warm'] is False            # the state was freed on deactivate
    finally:
        c.node.destroy_node()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
