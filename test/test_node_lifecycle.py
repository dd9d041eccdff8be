"""The node's outputs are lifecycle publishers: quiet until active, quiet again when inactive.

The node runs in this process (the real StreamDEQNode over the real middleware), so the test can
drive its transitions one by one and look at its publishers; a client node subscribes over DDS.
"""
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from vision_msgs.msg import LabelInfo

from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.ros.node import StreamDEQNode

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


def _spin(executor, cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if cond():
            return True
    return cond()


def test_outputs_publish_only_while_active(ros):
    node = StreamDEQNode(parameter_overrides=[
        Parameter('cameras', value=['/lcp/cam']), Parameter('threads', value=1),
        Parameter('device', value='cpu')])
    client = Node('lcp_client')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(client)
    labels, status, diags = [], [], []
    client.create_subscription(LabelInfo, '/streamdeq/segmentation/label_info', labels.append,
                               LATCHED)
    client.create_subscription(String, '/streamdeq/status', status.append, 10)
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    cam = client.create_publisher(Image, '/lcp/cam', 10)
    frame = fill_image(Image(), StreetClip(5, 96, 192)[0][0], 'rgb8')
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        outputs = [p for cam_ in node.cams for p in cam_.pubs.values()]
        outputs += [p for p, _ in node.label_pubs] + [node.status_pub]
        assert outputs and all(isinstance(p, LifecyclePublisher) for p in outputs)
        assert not any(p.is_activated for p in outputs)
        assert not isinstance(node.diag_pub, LifecyclePublisher)
        # configured, not active: the latched labels are not out yet; diagnostics are
        assert _spin(executor, lambda: diags, 10)
        assert labels == []
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert all(p.is_activated for p in outputs)
        assert _spin(executor, lambda: labels, 10)            # published at activation
        assert 'road' in [c.class_name for c in labels[-1].class_map]

        def answered():
            cam.publish(frame)
            return bool(status)
        assert _spin(executor, answered, 60)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert not any(p.is_activated for p in outputs)
        # the frames in flight at deactivation went out before it finished; take them
        diags[:] = []
        assert _spin(executor, lambda: diags, 10)              # an inactive node still reports
        assert all(s.message == 'inactive' for s in diags[-1].status)
        seen, diags[:] = len(status), []

        def quiet():
            cam.publish(frame)
            return len(diags) >= 2
        assert _spin(executor, quiet, 10)                      # two more seconds of frames
        assert len(status) == seen                             # and not one answered
        # activated again: labels again (a late subscriber gets them), frames answered again
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        status[:] = []
        assert _spin(executor, answered, 60)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.frames is None and node.pipeline is None
    finally:
        executor.shutdown()
        client.destroy_node()
        node.destroy_node()
