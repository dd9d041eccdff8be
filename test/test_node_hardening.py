"""What a hostile review of the node found, each over DDS against the real node process.

Start-up refusals in one sentence, input_size settable, live refusals in words, integer syntax
for float parameters, partial_iters >= iters defined and reported, stale cameras, thread control,
and the pixel limit.
"""
import subprocess
import time

from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image

from node_harness import node_with_client, send_until_answered, spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.ros.params import usable_cores
from streamdeq_ros.runtime.executables import executable

BIN = executable('streamdeq_node')
CAM = '/hardening_test/cam'


@pytest.mark.parametrize('args, sentence', [
    (['iters:=0'], 'iters must be an integer from 1 to 100, got 0'),
    (['iters:=2.5'], 'iters must be an integer from 1 to 100, got 2.5 (a float)'),
    (['iters:=3.0'], 'iters must be an integer from 1 to 100, got 3.0 (a float)'),
    (['threads:=256'], 'threads must be an integer from 0 to the number of cores this process '
                       'may use (%d here), got 256' % usable_cores()),
    (['tol:=.nan'], 'tol must be a number from 0 to 1, got nan'),
    (['cameras:=[]'], 'cameras must be a non-empty list of distinct topic names, got no value '
                      "(an empty list [] reaches ROS 2 as 'not set')"),
    (['input_size:=[]'], 'input_size must be [height, width] in positive multiples of 32, or '
                         "[0, 0] for the model's size, got no value (an empty list [] reaches "
                         "ROS 2 as 'not set')"),
    (['input_size:=[100,192]', 'solver:=newton'],
     'input_size must be [height, width] in positive multiples of 32, or [0, 0] for the '
     "model's size, got [100, 192]\nstreamdeq_node: solver must be one of '', 'unroll', "
     "'broyden', got 'newton'"),
])
def test_bad_start_up_values_stop_with_one_sentence_each(args, sentence):
    cmd = [BIN, '--ros-args'] + [a for arg in args for a in ('-p', arg)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == 'streamdeq_node: ' + sentence
    assert 'Traceback' not in out.stdout + out.stderr


@pytest.fixture(scope='module')
def ros():
    params = {'input_size': '[128,256]', 'mask_resolution': 'network', 'stale_after_s': 1,
              'input_qos': 'reliable'}
    with node_with_client(CAM, params, 'hardening_client') as r:
        yield r


def _frame(sec, height=100, width=180):
    msg = fill_image(Image(), StreetClip(5, height, width)[sec % 30][0], 'rgb8')
    msg.header.stamp.sec = sec
    return msg


def _set(client, name, value):
    params = AsyncParameterClient(client, 'streamdeq')
    assert params.wait_for_services(timeout_sec=20)
    fut = params.set_parameters([Parameter(name, value=value)])
    rclpy.spin_until_future_complete(client, fut, timeout_sec=20)
    return fut.result().results[0]


def _diag(client, got, cond=lambda st: True, timeout=15.0):
    """Return the node's next diagnostics entry (level, message, values) meeting ``cond``."""
    found = []

    def check():
        for arr in got['diag']:
            for st in arr.status:
                if st.name.startswith('streamdeq') and cond(st):
                    found.append(st)
        got['diag'].clear()
        return found
    assert spin_until(client, check, timeout), 'no matching diagnostics'
    st = found[-1]
    return st.level, st.message, {kv.key: kv.value for kv in st.values}


def test_input_size_is_settable_at_start_up(ros):
    client, pub, got, _ = ros
    send_until_answered(client, pub, got, _frame(100))
    assert spin_until(client, lambda: any(m.header.stamp.sec == 100 for m in got['class']))
    m = next(m for m in got['class'] if m.header.stamp.sec == 100)
    assert (m.height, m.width) == (128, 256)                 # network size = input_size


def test_live_refusals_are_one_sentence_in_words(ros):
    client, _, _, _ = ros
    for value, given in ((0, '0'), (2.5, '2.5 (a float)'), (3.0, '3.0 (a float)'),
                         ('three', "'three' (a string)")):
        r = _set(client, 'iters', value)
        assert not r.successful
        assert r.reason == 'iters must be an integer from 1 to 100, got %s' % given
    r = _set(client, 'iter', 1)                              # undeclared: named, with a hint
    assert not r.successful and r.reason == "unknown parameter 'iter': the streamdeq node has " \
        "no such parameter (did you mean 'iters'?)"
    assert _set(client, 'use_sim_time', False).successful    # rclpy's own parameters pass
    r = _set(client, 'input_size', [64, 64])
    assert not r.successful and r.reason.startswith('input_size is read-only while the node runs')


def test_float_parameters_take_integer_syntax(ros):
    client, pub, got, _ = ros
    assert _set(client, 'deadline_ms', 5).successful        # ros2 param set ... deadline_ms 5
    assert 1 <= send_until_answered(client, pub, got, _frame(101))['iters'] <= 2
    assert _set(client, 'deadline_ms', 0).successful
    assert _set(client, 'score_threshold', 1).successful and \
        _set(client, 'score_threshold', 0.5).successful


def test_partial_iters_not_below_iters_is_defined_and_reported(ros):
    client, pub, got, _ = ros
    assert _set(client, 'iters', 1).successful               # partial_iters is 1
    before = len(got['partial'])
    status = send_until_answered(client, pub, got, _frame(102))
    assert status['iters'] == 1 and status['partials'] == []
    spin_until(client, lambda: False, 1.0)
    assert len(got['partial']) == before                     # no partial for that frame
    # diagnostics come once a second: wait for the entry that follows the change (a busy
    # machine may still deliver the one before it first)

    def partial_is(text):
        return lambda st: any(kv.key == 'partial' and kv.value == text for kv in st.values)
    _, _, values = _diag(client, got, partial_is('none: partial_iters 1 >= iters 1'))
    assert values['iters'] == '1'
    assert _set(client, 'iters', 3).successful
    assert send_until_answered(client, pub, got, _frame(103))['partials'] == [1]
    _, _, values = _diag(client, got, partial_is('after 1 iterations'))
    assert values['iters'] == '3'


def test_threads_and_pixel_limit_apply_live(ros):
    client, pub, got, _ = ros
    assert _set(client, 'threads', 1).successful
    send_until_answered(client, pub, got, _frame(104))
    _, _, values = _diag(client, got, lambda st: any(
        kv.key == 'threads' and kv.value == '1' for kv in st.values))
    assert values['threads'] == '1'
    assert _set(client, 'max_input_pixels', 100 * 180 - 1).successful
    _, _, before = _diag(client, got)
    for _ in range(3):
        pub.publish(_frame(105))
        spin_until(client, lambda: False, 0.3)
    level, message, after = _diag(client, got, lambda st: any(
        kv.key == 'rejected' and int(kv.value) > int(before['rejected']) for kv in st.values))
    assert level == DiagnosticStatus.WARN
    assert _set(client, 'max_input_pixels', 4096 * 4096).successful
    assert _set(client, 'threads', 0).successful
    send_until_answered(client, pub, got, _frame(106))


def _stream(client, pub, got, stamps, period, cond=None, timeout=None):
    """Publish a frame per stamp ``period`` s apart (as a camera does), spinning in between.

    With ``cond``, keep going with further stamps until a diagnostics entry meets it (or
    ``timeout``); return that entry's (level, message, values), else None.
    """
    found = []
    stamps = iter(stamps)
    end = None if timeout is None else time.monotonic() + timeout
    for stamp in stamps:
        msg = _frame(int(stamp))
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(stamp % 1 * 1e9)
        pub.publish(msg)
        spin_until(client, lambda: False, period)
        if cond is not None:
            for arr in got['diag']:
                found += [st for st in arr.status
                          if st.name.startswith('streamdeq') and cond(st)]
            got['diag'].clear()
            if found or time.monotonic() > end:
                break
    if not found:
        return None
    return found[-1].level, found[-1].message, {kv.key: kv.value for kv in found[-1].values}


def _values(st):
    return {kv.key: kv.value for kv in st.values}


def test_frames_lost_before_the_node_are_reported(ros):
    client, pub, got, _ = ros
    send_until_answered(client, pub, got, _frame(390))       # connected (a 10 s pause before)
    period = 0.5                                             # a 2 Hz camera
    _stream(client, pub, got, [400 + k * period for k in range(8)], period)
    _, _, before = _diag(client, got)
    time.sleep(3 * period)                                   # 3 frames never arrive
    _stream(client, pub, got, [400 + k * period for k in range(11, 13)], period)
    _, _, after = _diag(client, got, lambda st: int(_values(st)['lost_before_node'])
                        > int(before['lost_before_node']))
    assert int(after['lost_before_node']) - int(before['lost_before_node']) == 3
    assert float(after['lost_before_node_pct']) > 0


def test_a_bad_stamp_or_a_rejected_frame_warns_only_while_recent(ros):
    client, pub, got, _ = ros
    period = 0.4
    stamps = [800 + k * period for k in range(1000)]
    # frames stamped an hour ahead, and stamped zero: a few of each, so that one arrives even
    # when a busy machine lets a newer frame replace one in the subscription's queue
    for k in (8, 14, 20):
        stamps[k] += 3600
    for k in (4, 11, 17):
        stamps[k] = 0.0
    _, _, before = _diag(client, got)
    level, message, values = _stream(
        client, pub, got, stamps, period, lambda st: 'bad header stamp' in st.message
        and int(_values(st)['stamp_faults']) >= int(before['stamp_faults']) + 2, timeout=30)
    assert level == DiagnosticStatus.WARN
    assert int(values['zero_stamps']) > int(before['zero_stamps'])
    assert values['lost_before_node'] == before['lost_before_node']   # not 14400 lost
    ok = _stream(client, pub, got, stamps[20:], period,
                 lambda st: st.level == DiagnosticStatus.OK, timeout=40)
    assert ok is not None, 'the stamp warning did not clear'
    assert _set(client, 'max_input_pixels', 100).successful
    level, message, values = _stream(client, pub, got, stamps[200:], period,
                                     lambda st: 'rejected' in st.message, timeout=20)
    assert level == DiagnosticStatus.WARN and 'frames rejected in the last 10 s' in message
    assert _set(client, 'max_input_pixels', 4096 * 4096).successful
    ok = _stream(client, pub, got, stamps[300:], period,
                 lambda st: st.level == DiagnosticStatus.OK, timeout=40)
    assert ok is not None, 'the rejection warning did not clear'
    assert ok[2]['rejected_recent'] == '0' and ok[2]['rejected'] == values['rejected']   # total


def test_a_silent_camera_goes_stale_and_its_rate_falls_to_zero(ros):
    client, pub, got, _ = ros
    for k in range(10):
        send_until_answered(client, pub, got, _frame(200 + k))
    _, _, busy = _diag(client, got, lambda st: float(
        {kv.key: kv.value for kv in st.values}['fps']) > 0)
    level, message, values = _diag(client, got, lambda st: st.message.startswith('no frame'),
                                   timeout=20)
    assert level == DiagnosticStatus.WARN and message.startswith('no frame for ')
    silent = float(values['silent_s'])
    assert silent > 1.0
    # fps is counted over a window: it falls once the window holds no frame
    _, _, later = _diag(client, got, lambda st: float(
        {kv.key: kv.value for kv in st.values}['fps']) == 0.0, timeout=20)
    assert later['fps'] == '0.00' and later['input_fps'] == '0.00'


def test_an_inactive_node_reports_ok_whatever_it_warned_before(ros):
    client, pub, got, _ = ros
    assert _set(client, 'max_input_pixels', 100).successful
    _stream(client, pub, got, [900 + k * 0.25 for k in range(4)], 0.25)
    level, _, _ = _diag(client, got, lambda st: 'rejected' in st.message)
    assert level == DiagnosticStatus.WARN
    assert _set(client, 'max_input_pixels', 4096 * 4096).successful
    change = client.create_client(ChangeState, '/streamdeq/change_state')
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE):
        assert change.wait_for_service(timeout_sec=20)
        fut = change.call_async(ChangeState.Request(transition=Transition(id=transition)))
        rclpy.spin_until_future_complete(client, fut, timeout_sec=30)
        assert fut.result().success
        if transition == Transition.TRANSITION_DEACTIVATE:
            level, message, values = _diag(client, got, lambda st: st.message == 'inactive')
            assert level == DiagnosticStatus.OK and values['active'] == 'False'
    send_until_answered(client, pub, got, _frame(950))       # active again, and serving


def _tiny_checkpoint(path, edit_card=None, edit_net=None):
    import copy

    import torch

    from streamdeq_ros.model.checkpoint import save_checkpoint
    from streamdeq_ros.model.mdeq import get_config
    from streamdeq_ros.model.network import StreamDEQNet
    card = {'config': get_config('tiny').to_dict(), 'heads': {'segmentation': {
        'num_classes': 5}}, 'input': {'height': 64, 'width': 128}}
    net = StreamDEQNet(get_config('tiny'), card['heads'])
    card = copy.deepcopy(card)
    if edit_card:
        edit_card(card)
    if edit_net:
        with torch.no_grad():
            edit_net(net)
    save_checkpoint(str(path), net, card)
    return str(path)


def _huge_stem(net):
    next(net.backbone.parameters()).mul_(1e30)     # finite weights, an infinite state


@pytest.mark.parametrize('edit_card, edit_net, sentence', [
    (lambda c: c['config'].update(num_channels=[-8, 16, 32, 64]), None,
     "invalid model card: config 'num_channels' must be a non-empty list of integers"),
    (lambda c: c['config'].update(num_groups=0), None,
     "invalid model card: config 'num_groups' must be an integer of at least 1, got 0"),
    (lambda c: c['heads']['segmentation'].update(classes=5), None,
     "invalid model card: heads.segmentation 'classes' must be a list of 5 names, got 5"),
    (lambda c: c['input'].update(height='64'), None,
     "invalid model card: input 'height' must be a positive multiple of 32, got '64'"),
    (lambda c: c['input'].update(mean=[0.5]), None,
     "invalid model card: input 'mean' must be a list of 3 numbers (R, G, B), got [0.5]"),
    (None, _huge_stem, 'the model gives a non-finite state on a plain grey 128x64 frame even '
                       'from zeros: its weights are unusable'),
])
def test_every_bad_model_stops_start_up_with_one_sentence(tmp_path, edit_card, edit_net,
                                                          sentence):
    path = _tiny_checkpoint(tmp_path / 'm.pt', edit_card, edit_net)
    out = subprocess.run([BIN, '--ros-args', '-p', 'checkpoint:=%s' % path], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    text = out.stdout + out.stderr
    lines = [ln for ln in text.splitlines() if 'cannot configure' in ln]
    assert len(lines) == 1 and sentence in lines[0], text
    assert 'Traceback' not in text
