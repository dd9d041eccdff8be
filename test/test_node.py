"""The streamdeq node as a real process over DDS: outputs, live parameters, bad frames, exit."""
import signal

import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from node_harness import node_with_client, send_until_answered, spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image, image_view
from streamdeq_ros.runtime.executables import executable

BIN = executable('streamdeq_node')
_card = load_net(bundled_checkpoint())[1]['input']
DEFAULT_INPUT = (_card['height'], _card['width'])       # the default model's network input
CAM = '/node_test/cam'


@pytest.fixture(scope='module')
def ros():
    with node_with_client(CAM, {'partial_iters': 1, 'iters': 3}, 'node_test_client') as r:
        yield r


def _frame(t, sec):
    rgb = StreetClip(5, 100, 180)[t][0]
    msg = fill_image(Image(), rgb, 'rgb8')
    msg.header.frame_id = 'cam_optical'
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 123
    return msg


def test_frames_give_partial_and_refined_masks_with_the_input_header(ros):
    client, pub, got, _ = ros
    for t in range(3):
        status = send_until_answered(client, pub, got, _frame(t, 100 + t))
        assert status['iters'] == 3 and status['partials'] == [1]
    assert spin_until(client, lambda: len(got['partial']) >= 3 and len(got['class']) >= 3)
    for stream in ('class', 'partial'):
        for t in range(3):
            m = next(x for x in got[stream] if x.header.stamp.sec == 100 + t)
            assert m.header.frame_id == 'cam_optical' and m.header.stamp.nanosec == 123
            assert (m.encoding, m.height, m.width, m.step) == ('mono8', 100, 180, 180)
            assert image_view(m).max() < 8
    # only the outputs someone subscribes to are built: here the class masks, and only the
    # segmentation head is read (status: null counts for the heads not read)
    assert sorted(status['published']) == ['class', 'partial/class']
    assert status['detections'] is None and status['persons'] is None
    assert set(status['stages_ms']) >= {'wait', 'convert', 'prepare', 'solve', 'partials',
                                        'heads', 'messages', 'publish'}
    colours = []
    client.create_subscription(Image, '/streamdeq/segmentation/color_mask', colours.append, 5)
    for k in range(20):                  # from the frame after the subscription is matched
        status = send_until_answered(client, pub, got, _frame(3, 110 + k))
        if 'color' in status['published']:
            break
    assert sorted(status['published']) == ['class', 'color', 'partial/class']
    assert spin_until(client, lambda: colours) and colours[-1].encoding == 'rgb8'
    # a detections subscriber: the detection head is read from then on, not the pose head
    dets = []
    client.create_subscription(Detection2DArray, '/streamdeq/detections', dets.append, 5)
    for k in range(20):
        status = send_until_answered(client, pub, got, _frame(3, 130 + k))
        if 'detections' in status['published']:
            break
    assert sorted(status['published']) == ['class', 'color', 'detections', 'partial/class']
    assert isinstance(status['detections'], int) and status['persons'] is None
    assert spin_until(client, lambda: dets) and len(dets[-1].detections) == status['detections']
    # a subscriber that arrives late still gets the class map (transient local)
    labels = []
    client.create_subscription(LabelInfo, '/streamdeq/segmentation/label_info', labels.append,
                               QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                          durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert spin_until(client, lambda: labels, timeout=20)
    assert [c.class_name for c in labels[0].class_map][:2] == ['road', 'sidewalk']


def test_iters_changes_live_and_invalid_values_are_refused(ros):
    client, pub, got, _ = ros
    params = AsyncParameterClient(client, 'streamdeq')
    assert params.wait_for_services(timeout_sec=20)

    def set_(name, value):
        fut = params.set_parameters([Parameter(name, value=value)])
        rclpy.spin_until_future_complete(client, fut, timeout_sec=20)
        return fut.result().results[0]

    assert set_('iters', 1).successful
    assert send_until_answered(client, pub, got, _frame(5, 200))['iters'] == 1
    bad = set_('iters', 0)
    assert not bad.successful and bad.reason == 'iters must be an integer from 1 to 100, got 0'
    bad = set_('solver', 'newton')
    assert not bad.successful and \
        bad.reason == "solver must be one of '', 'unroll', 'broyden', got 'newton'"
    ro = set_('checkpoint', 'other.pt')
    assert not ro.successful and 'read-only' in ro.reason
    assert send_until_answered(client, pub, got, _frame(6, 201))['iters'] == 1


def _set(client, **values):
    params = AsyncParameterClient(client, 'streamdeq')
    assert params.wait_for_services(timeout_sec=20)
    fut = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    rclpy.spin_until_future_complete(client, fut, timeout_sec=20)
    assert all(r.successful for r in fut.result().results), fut.result().results


def test_tolerance_deadline_and_mask_resolution_apply_from_the_next_frame(ros):
    client, pub, got, _ = ros
    _set(client, iters=60, tol=0.3)
    early = send_until_answered(client, pub, got, _frame(8, 400))
    assert early['iters'] < 60 and early['final_residual'] < 0.3
    _set(client, tol=0.0, deadline_ms=1.0)
    timed = send_until_answered(client, pub, got, _frame(9, 401))
    assert 1 <= timed['iters'] < 60
    _set(client, deadline_ms=0.0, iters=2, mask_resolution='network')
    assert send_until_answered(client, pub, got, _frame(10, 402))['iters'] == 2
    assert spin_until(client, lambda: any(m.header.stamp.sec == 402 for m in got['class']))
    m = next(m for m in got['class'] if m.header.stamp.sec == 402)
    assert (m.height, m.width) == DEFAULT_INPUT              # the network's input size
    _set(client, mask_resolution='input', iters=1)


def test_a_hard_cut_restarts_the_camera_and_the_deadline_rule_changes_live(ros):
    client, pub, got, _ = ros
    _set(client, iters=2)
    other = StreetClip(77, 100, 180)                         # another street: a hard cut
    for t in range(4):
        status = send_until_answered(client, pub, got, _frame(13 + t, 700 + t))
        assert status['cut'] is False and status['over_deadline'] is False
    msg = fill_image(Image(), other[0][0], 'rgb8')
    msg.header.stamp.sec = 710
    status = send_until_answered(client, pub, got, msg)
    assert status['cut'] is True and status['warm'] is False
    got['diag'].clear()
    assert spin_until(client, lambda: got['diag'], timeout=10)
    values = {kv.key: kv.value for kv in got['diag'][-1].status[0].values}
    assert int(values['cut_resets']) >= 1 and 'over_deadline' in values
    _set(client, reset_on_cut=False)                         # the warm start runs across it
    msg = fill_image(Image(), StreetClip(5, 100, 180)[0][0], 'rgb8')
    msg.header.stamp.sec = 711
    status = send_until_answered(client, pub, got, msg)
    assert status['cut'] is False and status['warm'] is True
    _set(client, reset_on_cut=True)
    params = AsyncParameterClient(client, 'streamdeq')
    fut = params.set_parameters([Parameter('deadline_rule', value='hopeful')])
    rclpy.spin_until_future_complete(client, fut, timeout_sec=20)
    assert fut.result().results[0].reason == \
        "deadline_rule must be one of 'predictive', 'reactive', got 'hopeful'"
    # a deadline that is gone before the frame starts: both rules still run one iteration,
    # and the frame is reported over its deadline
    for rule in ('reactive', 'predictive'):
        _set(client, deadline_rule=rule, deadline_ms=0.001, iters=5)
        status = send_until_answered(client, pub, got, _frame(20, 720))
        assert status['iters'] == 1 and status['over_deadline'] is True
    _set(client, deadline_ms=0.0, iters=1, deadline_rule='predictive')


def test_a_fast_camera_builds_no_backlog(ros):
    client, pub, got, _ = ros
    before = len(got['status'])
    for k in range(60):                                      # far faster than the node
        pub.publish(_frame(11, 500 + k))
    last = send_until_answered(client, pub, got, _frame(12, 600))
    answered = [s for s in got['status'][before:] if 500 <= s['stamp'][0] < 560]
    assert last['iters'] == 1 and len(answered) < 60
    got['diag'].clear()
    assert spin_until(client, lambda: got['diag'], timeout=10)
    values = {kv.key: kv.value for kv in got['diag'][-1].status[0].values}
    assert int(values['skipped']) > 0


def test_bad_frames_are_dropped_and_counted_and_good_ones_answered(ros):
    client, pub, got, proc = ros
    good = _frame(7, 300)
    bads = []
    for mutate in (lambda m: setattr(m, 'encoding', '32FC1'),
                   lambda m: setattr(m, 'step', 10),
                   lambda m: setattr(m, 'data', bytes(m.data)[:100]),
                   lambda m: (setattr(m, 'width', 0), setattr(m, 'data', b'')),
                   lambda m: (setattr(m, 'width', 100000), setattr(m, 'height', 100000))):
        m = _frame(7, 0)
        mutate(m)
        bads.append(m)
    for i, bad in enumerate(bads):
        pub.publish(bad)
        spin_until(client, lambda: False, timeout=0.3)
        good.header.stamp.sec = 300 + i
        send_until_answered(client, pub, got, good)
    assert proc.poll() is None
    got['diag'].clear()
    assert spin_until(client, lambda: got['diag'], timeout=10)
    values = {kv.key: kv.value for kv in got['diag'][-1].status[0].values}
    assert int(values['rejected']) == 5
    assert int(values['processed']) == len(got['status'])         # every good frame answered


def test_sigint_exits_cleanly(ros):
    _, _, _, proc = ros
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
