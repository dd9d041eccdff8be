"""Recorded bags: written with rosbags from generated frames, replayed by streamdeq_video_source.

The replay keeps the recorded header stamps and frame ids, publishes /clock, and the node runs
on it with use_sim_time; a damaged bag or one without camera topics is refused in one sentence.
"""
import json
import os
import signal
import subprocess

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection3DArray

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime.executables import executable
from streamdeq_ros.tools.harness import start_node

H, W = 120, 240
T0 = 1_700_000_000                       # the recording's first stamp (s)
PERIOD_NS = 100_000_000                  # 10 Hz


def write_bag(path, frames=8, storage='mcap', depth=True, frame_id='bag_cam'):
    """Write a bag of camera (rgb8), camera_info and depth (16UC1, a wall at 3 m) messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores
    store = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    clip = StreetClip(11, H, W)
    with Writer(path, version=9, storage_plugin=plugin) as bag:
        cam = bag.add_connection('/bag/color/image_raw', 'sensor_msgs/msg/Image',
                                 typestore=store)
        info = bag.add_connection('/bag/color/camera_info', 'sensor_msgs/msg/CameraInfo',
                                  typestore=store)
        dep = bag.add_connection('/bag/depth', 'sensor_msgs/msg/Image', typestore=store) \
            if depth else None
        for t in range(frames):
            ns = T0 * 10 ** 9 + t * PERIOD_NS
            image = fill_image(Image(), clip[19 + t % 6][0], 'rgb8')
            stamp = image.header.stamp
            stamp.sec, stamp.nanosec = divmod(ns, 10 ** 9)
            image.header.frame_id = frame_id
            ci = CameraInfo(header=image.header, width=W, height=H,
                            k=[150.0, 0, 119.5, 0, 150.0, 59.5, 0, 0, 1],
                            p=[150.0, 0, 119.5, 0, 0, 150.0, 59.5, 0, 0, 0, 1, 0])
            bag.write(info, ns, serialize_message(ci))
            if dep is not None:
                mm = np.full((H, W), 3000, '<u2')
                d = Image(header=image.header, height=H, width=W, encoding='16UC1', step=2 * W,
                          data=mm.tobytes())
                bag.write(dep, ns, serialize_message(d))
            bag.write(cam, ns, serialize_message(image))
    return path


def _source(source, *params):
    args = [executable('streamdeq_video_source'), '--ros-args', '-p', 'source:=%s' % source]
    for p in params:
        args += ['-p', p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope='module')
def client():
    rclpy.init()
    node = Node('bag_replay_client')
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def test_a_db3_bag_replays_its_stamps_frame_ids_and_clock(client, tmp_path):
    bag = write_bag(str(tmp_path / 'rec'), frames=6, storage='sqlite3', depth=False)
    db3 = os.path.join(bag, 'rec.db3')
    assert os.path.isfile(db3)
    images, clocks = [], []
    client.create_subscription(Image, '/bag/color/image_raw', images.append, 50)
    client.create_subscription(Clock, '/clock', clocks.append, 50)
    proc = _source(db3, 'loop:=false', 'wait_for_subscribers:=1', 'rate:=2.0')
    assert spin_until(client, lambda: len(images) == 6, 60)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert 'playing %s at 2x' % db3 in out
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images] == \
        [divmod(T0 * 10 ** 9 + t * PERIOD_NS, 10 ** 9) for t in range(6)]
    assert {m.header.frame_id for m in images} == {'bag_cam'}
    ticks = [c.clock.sec * 10 ** 9 + c.clock.nanosec for c in clocks]
    assert ticks == sorted(ticks) and ticks[0] == T0 * 10 ** 9


def test_the_node_runs_on_the_bag_time_with_use_sim_time(client, tmp_path):
    bag = write_bag(str(tmp_path / 'rgbd'), frames=30)
    node = start_node(['/bag/color/image_raw'], {
        'use_sim_time': 'true', 'depth_topics': '[/bag/depth]', 'iters': 1,
        'checkpoint': bundled_checkpoint('multi_tiny_sur'), 'score_threshold': 0.3,
        'input_qos': 'reliable', 'sync_tolerance_s': 0.0})
    status, det3 = [], []
    client.create_subscription(String, '/streamdeq/status',
                               lambda m: status.append(json.loads(m.data)), 100)
    client.create_subscription(Detection3DArray, '/streamdeq/detections_3d', det3.append, 100)
    try:
        assert spin_until(client, lambda: client.count_publishers('/streamdeq/status') > 0, 60)
        proc = _source(bag, 'loop:=false', 'wait_for_subscribers:=1')
        assert spin_until(client, lambda: proc.poll() is not None, 120)
        assert proc.returncode == 0, proc.communicate()[0].decode()
        spin_until(client, lambda: False, 3.0)                 # the last frames' outputs
        recorded = {divmod(T0 * 10 ** 9 + t * PERIOD_NS, 10 ** 9) for t in range(30)}
        assert status, 'the node answered no frame of the bag'
        assert {tuple(s['stamp']) for s in status} <= recorded
        assert {s['frame_id'] for s in status} == {'bag_cam'}
        # camera_info and depth paired by the recorded stamps: the wall at 3 m
        zs = [d.bbox.center.position.z for a in det3 for d in a.detections]
        assert {(a.header.stamp.sec, a.header.stamp.nanosec) for a in det3} <= recorded
        assert zs and np.allclose(zs, 3.0, atol=0.01)
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0


def test_damaged_and_empty_bags_are_refused_in_one_sentence(tmp_path):
    bag = write_bag(str(tmp_path / 'ok'), frames=3)
    mcap = os.path.join(bag, 'ok.mcap')
    damaged = tmp_path / 'damaged.mcap'
    damaged.write_bytes(open(mcap, 'rb').read()[:200])
    proc = _source(str(damaged))
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2
    assert 'streamdeq_video_source: cannot read the bag %s' % damaged in out
    assert 'Traceback' not in out
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores
    empty = str(tmp_path / 'no_camera')
    with Writer(empty, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection('/chatter', 'std_msgs/msg/String',
                             typestore=get_typestore(Stores.ROS2_KILTED))
        w.write(c, 1, serialize_message(String(data='hi')))
    proc = _source(empty)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2
    assert ('the bag %s has no image, compressed image or camera_info topic (it has: '
            '/chatter [std_msgs/msg/String])' % empty) in out


def test_an_out_of_range_rate_is_refused_in_one_line(tmp_path):
    proc = _source(write_bag(str(tmp_path / 'r'), frames=2), 'rate:=0.0')
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2 and 'Traceback' not in out
    assert 'Parameter rate out of range' in out
