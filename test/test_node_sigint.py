"""Ctrl-C (SIGINT) with frames in flight: the node and the video source exit 0, silently."""
import signal
import subprocess
import threading
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime.executables import executable

BIN = executable('streamdeq_node')
SOURCE = executable('streamdeq_video_source')


def _frame(sec):
    msg = fill_image(Image(), StreetClip(5, 240, 320)[sec % 30][0], 'rgb8')
    msg.header.stamp.sec = sec
    return msg


def _flood(pub, stop):
    frames = [_frame(300 + k) for k in range(10)]
    k = 0
    while not stop.is_set():
        pub.publish(frames[k % len(frames)])
        k += 1
        time.sleep(0.005)


def test_sigint_with_frames_in_flight_is_silent_and_exits_0():
    cam = '/hardening_test/flood'
    rclpy.init()
    node = Node('flood_client')
    pub = node.create_publisher(Image, cam, 10)
    try:
        for cycle in range(3):
            proc = subprocess.Popen([BIN, '--ros-args', '-p', 'cameras:=[%s]' % cam,
                                     '-p', 'iters:=4'], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            status = []
            sub = node.create_subscription(String, '/streamdeq/status', status.append, 10)
            stop = threading.Event()
            flood = threading.Thread(target=_flood, args=(pub, stop))
            flood.start()
            try:
                assert spin_until(node, lambda: len(status) >= 3 + cycle, 90)
            finally:
                proc.send_signal(signal.SIGINT)     # while frames keep coming
                out, err = proc.communicate(timeout=60)
                stop.set()
                flood.join()
                node.destroy_subscription(sub)
            assert proc.returncode == 0, err
            text = out + err
            for bad in ('Traceback', 'frame dropped', 'context is invalid', 'RCLError',
                        'WARN', 'ERROR'):
                assert bad not in text, text
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def test_video_source_sigint_is_silent_and_exits_0():
    for cycle in range(8):
        proc = subprocess.Popen([SOURCE, '--ros-args', '-p', 'fps:=200.0',
                                 '-p', 'width:=640', '-p', 'height:=480',
                                 '-r', 'image:=/hardening_test/vs'],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        line = ''
        while 'publishing' not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()                # the INFO line once it runs
        time.sleep(0.3 + 0.07 * cycle)                    # mid-stream, at varying phases
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert 'Traceback' not in out + err and 'RCLError' not in out + err, out + err
