"""``ros2 launch`` obeys the user's params file; a launch argument wins only when it is given.

Each test starts the real ``ros2 launch streamdeq_ros perception.launch.py`` with a params file,
sends JPEG frames on the cameras the node should watch, and reads what the node says it runs
with from ``~/status`` (camera, input transport, iterations, device).
"""
import json
import os
import signal
import subprocess
import time

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

FILE = """/**:
  ros__parameters:
    cameras: ['/front/image', '/rear/image']
    input_transport: compressed
    iters: 1
    device: {device}
    checkpoint: {checkpoint}
    score_threshold: 0.25
"""


def _launch(*args):
    return subprocess.Popen(['ros2', 'launch', 'streamdeq_ros', 'perception.launch.py'] +
                            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop(proc):
    """Stop the launch as Ctrl-C does (SIGKILL to the group after 60 s); return its output."""
    if not hasattr(proc, 'text'):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.text, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.text, _ = proc.communicate(timeout=60)
    return proc.text


def _frames(node, topics, compressed, status, want, timeout=120):
    """Publish frames on ``topics`` until ``want(status)`` holds; return whether it did."""
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    if compressed:
        msg = CompressedImage(format='jpeg', data=cv2.imencode('.jpg', rgb)[1].tobytes())
        pubs = [node.create_publisher(CompressedImage, t + '/compressed',
                                      qos_profile_sensor_data) for t in topics]
    else:
        msg = Image(height=240, width=320, encoding='rgb8', step=960, data=rgb.tobytes())
        pubs = [node.create_publisher(Image, t, qos_profile_sensor_data) for t in topics]
    deadline = time.monotonic() + timeout
    k = 0
    while not want(status) and time.monotonic() < deadline:
        k += 1
        msg.header.stamp.sec = k
        for pub in pubs:
            pub.publish(msg)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    return want(status)


def _client():
    rclpy.init()
    node = Node('launch_params_client')
    status = []
    node.create_subscription(String, '/streamdeq/status',
                             lambda m: status.append(json.loads(m.data)), 100)
    return node, status


def test_the_params_file_alone_decides_and_no_video_source_starts(tmp_path):
    params = tmp_path / 'robot.yaml'
    params.write_text(FILE.format(device='cpu', checkpoint="''"))
    proc = _launch('params_file:=%s' % params)
    node, status = _client()
    try:
        cams = {'/front/image', '/rear/image'}
        assert _frames(node, sorted(cams), True, status,
                       lambda s: {x['camera'] for x in s} >= cams), _stop(proc)
        assert {x['camera'] for x in status} == cams
        assert {(x['input_transport'], x['iters'], x['device']) for x in status} == \
            {('compressed', 1, 'cpu')}
        assert 'streamdeq_video_source' not in node.get_node_names()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        out = _stop(proc)
    assert 'streamdeq_video_source' not in out, out
    assert 'cameras /front/image, /rear/image' in out, out


def test_each_argument_given_on_the_command_line_wins_over_the_file(tmp_path):
    # the file alone could not even start: a GPU this machine lacks and a missing checkpoint
    params = tmp_path / 'robot.yaml'
    params.write_text(FILE.format(device="'cuda:7'", checkpoint='/nonexistent/model.pt'))
    proc = _launch('params_file:=%s' % params, 'cameras:=[/side/image]',
                   'input_transport:=raw', 'iters:=3', 'device:=cpu',
                   'checkpoint:=multi_tiny_sur')
    node, status = _client()
    try:
        assert _frames(node, ['/side/image'], False, status, lambda s: len(s) >= 2), \
            _stop(proc)
        assert {(x['camera'], x['input_transport'], x['iters'], x['device'])
                for x in status} == {('/side/image', 'raw', 3, 'cpu')}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        out = _stop(proc)
    assert 'multi_tiny_sur' in out and 'streamdeq_video_source' not in out, out


def test_image_topic_and_a_bad_params_file_are_told_in_one_line(tmp_path):
    missing = tmp_path / 'missing.yaml'
    got = subprocess.run(['ros2', 'launch', 'streamdeq_ros', 'perception.launch.py',
                          'params_file:=%s' % missing], capture_output=True, text=True,
                         timeout=120)
    assert got.returncode != 0
    assert "params_file '%s' does not exist or is not a file" % missing in got.stdout + \
        got.stderr, got
    both = subprocess.run(['ros2', 'launch', 'streamdeq_ros', 'perception.launch.py',
                           'image_topic:=/a', 'cameras:=[/b]'], capture_output=True, text=True,
                          timeout=120)
    assert both.returncode != 0
    assert 'give cameras or image_topic, not both' in both.stdout + both.stderr, both


def test_rviz_true_without_rviz2_says_so_and_the_node_runs(tmp_path):
    proc = _launch('cameras:=[/rv/image]', 'depth_topics:=[/rv/depth]', 'rviz:=true',
                   'checkpoint:=multi_tiny_sur', 'device:=cpu')
    node, status = _client()
    try:
        assert _frames(node, ['/rv/image'], False, status, lambda s: len(s) >= 1), _stop(proc)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        out = _stop(proc)
    assert 'rviz:=true: rviz2 is not installed' in out, out
