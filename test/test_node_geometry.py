"""camera_info in and out, 3D from an aligned depth image, markers, classes, LabelInfo threshold.

The node runs the bundled multi-task model as a real process; the client publishes generated
frames with a camera_info and a depth image of known geometry (a wall at a known distance, with
holes and zeros) under the same stamp, and reads the node's outputs over DDS.
"""
import json
import signal
import subprocess
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.tools.harness import start_node
from test_messages import read_points

H, W = 120, 240
FX, FY, CX, CY = 150.0, 140.0, 119.5, 59.5
WALL = 4.0
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
FRAMES = [StreetClip(11, H, W)[t][0] for t in range(19, 25)]


def _header(msg, sec):
    msg.header.frame_id = 'cam_optical'
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 5
    return msg


def _info(sec, width=W, height=H):
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob',
                      d=[0.0] * 5, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0],
                      r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                      p=[FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0])
    return _header(info, sec)


def _depth(sec, encoding='16UC1', size=(H, W)):
    rng = np.random.default_rng(sec)
    metres = np.full(size, WALL, np.float32)
    metres[rng.random(size) < 0.25] = np.nan           # holes
    metres[rng.random(size) < 0.05] = 0.0              # no return
    if encoding == '16UC1':
        image = np.nan_to_num(metres * 1000).astype('<u2')
    elif encoding == '32FC1':
        image = metres.astype('<f4')
    else:
        image = np.zeros(size + (3,), np.uint8)
    msg = Image(height=size[0], width=size[1], encoding=encoding, is_bigendian=0,
                step=image.strides[0], data=image.tobytes())
    return _header(msg, sec)


class _Client:

    def __init__(self, name, prefix='/streamdeq'):
        self.node = Node(name)
        self.got = {}
        for key, kind, topic, qos in (
                ('det', Detection2DArray, 'detections', 50),
                ('det3', Detection3DArray, 'detections_3d', 50),
                ('kp3', PointCloud2, 'keypoints_3d', 50),
                ('seg_info', CameraInfo, 'segmentation/camera_info', 50),
                ('cam_info', CameraInfo, 'camera_info', 50),
                ('mask', Image, 'segmentation/class_mask', 50),
                ('markers', MarkerArray, 'markers', 50),
                ('labels', LabelInfo, 'detections/label_info', LATCHED)):
            self.got[key] = {}
            self.node.create_subscription(
                kind, prefix + '/' + topic,
                lambda m, k=key: self.got[k].__setitem__(m.header.stamp.sec, m) if k != 'markers'
                else self.got[k].__setitem__(m.markers[0].header.stamp.sec, m), qos)
        self.status, self.diag = {}, []
        self.node.create_subscription(String, prefix + '/status', self._status, 50)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diag.append, 50)

    def _status(self, msg):
        status = json.loads(msg.data)
        self.status[status['stamp'][0]] = status

    def diag_values(self):
        return {kv.key: kv.value for kv in self.diag[-1].status[0].values} if self.diag else {}


@pytest.fixture(scope='module')
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def _send(c, pubs, sec, frame, info=True, depth='16UC1', depth_size=(H, W), info_size=(W, H),
          until=('status',), timeout=60.0):
    """Publish (camera_info, depth, frame) at ``sec`` until the ``until`` outputs have it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if info:
            pubs['info'].publish(_info(sec, *info_size))
        if depth:
            pubs['depth'].publish(_depth(sec, depth, depth_size))
        pubs['cam'].publish(_header(fill_image(Image(), frame, 'rgb8'), sec))
        if spin_until(c.node, lambda: all(sec in (c.status if k == 'status' else c.got[k])
                                          for k in until), 2.0):
            return
    raise AssertionError('no %s for frame %d' % (', '.join(until), sec))


def test_3d_detections_keypoints_and_camera_info_from_a_known_wall(ros):
    proc = start_node(['/geo/cam'], {'depth_topics': '[/geo/depth]', 'checkpoint':
                                     bundled_checkpoint('multi_tiny_sur'), 'iters': 2,
                                     'score_threshold': 0.3, 'mask_resolution': 'network',
                                     'input_qos': 'reliable'})
    c = _Client('geo_client')
    pubs = {'cam': c.node.create_publisher(Image, '/geo/cam', 10),
            'info': c.node.create_publisher(CameraInfo, '/geo/camera_info', 10),
            'depth': c.node.create_publisher(Image, '/geo/depth', 10)}
    try:
        found = None
        for t, frame in enumerate(FRAMES * 3):
            sec = 100 + t
            _send(c, pubs, sec, frame, until=('status', 'det3', 'det', 'kp3', 'markers'))
            if c.got['det3'][sec].detections:
                found = sec
                break
        assert found is not None, 'no detection in %d frames' % len(FRAMES * 3)
        det3, det2 = c.got['det3'][found], c.got['det'][found]
        assert (det3.header.frame_id, det3.header.stamp.sec, det3.header.stamp.nanosec) == \
            ('cam_optical', found, 5)
        by_id = {d.id: d for d in det2.detections}
        for d in det3.detections:
            z = d.bbox.center.position.z
            assert z == pytest.approx(WALL, abs=0.01)           # holes and zeros ignored
            assert d.bbox.size.z == pytest.approx(0.0, abs=0.02)  # a flat wall
            two = by_id[d.id] if d.id else det2.detections[det3.detections.index(d)]
            assert d.results[0].hypothesis.class_id == two.results[0].hypothesis.class_id
            u, v = two.bbox.center.position.x, two.bbox.center.position.y
            assert d.bbox.center.position.x == pytest.approx((u - CX) * WALL / FX, abs=1e-3)
            assert d.bbox.center.position.y == pytest.approx((v - CY) * WALL / FY, abs=1e-3)
            assert d.bbox.size.x == pytest.approx(two.bbox.size_x * WALL / FX, abs=1e-3)
        pts = read_points(c.got['kp3'][found])
        assert [f.name for f in c.got['kp3'][found].fields][:3] == ['x', 'y', 'z']
        z = pts['z'][np.isfinite(pts['z'])]
        assert np.allclose(z, WALL, atol=0.01)
        markers = c.got['markers'][found].markers
        assert markers[0].action == Marker.DELETEALL
        assert sum(m.type == Marker.CUBE for m in markers) == len(det3.detections)
        # the masks at the network's size get their own intrinsics; the overlay's are the camera's
        _send(c, pubs, 200, FRAMES[0], until=('status', 'seg_info', 'cam_info', 'mask'))
        seg, mask, cam = c.got['seg_info'][200], c.got['mask'][200], c.got['cam_info'][200]
        assert (seg.width, seg.height) == (mask.width, mask.height) != (W, H)
        sx, sy = mask.width / W, mask.height / H
        assert seg.k[0] == pytest.approx(FX * sx) and seg.k[4] == pytest.approx(FY * sy)
        assert seg.k[2] == pytest.approx((CX + 0.5) * sx - 0.5)
        assert seg.p[0] == pytest.approx(FX * sx) and seg.header.frame_id == 'cam_optical'
        assert list(cam.k) == [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
        assert (cam.width, cam.height, cam.header.stamp.sec) == (W, H, 200)
        # LabelInfo says the score threshold, and says it again when it changes
        assert spin_until(c.node, lambda: c.got['labels'], 10)
        assert next(iter(c.got['labels'].values())).threshold == pytest.approx(0.3)
        params = AsyncParameterClient(c.node, 'streamdeq')
        assert params.wait_for_services(timeout_sec=30)
        c.got['labels'].clear()
        fut = params.set_parameters([Parameter('score_threshold', value=0.4)])
        rclpy.spin_until_future_complete(c.node, fut, timeout_sec=30)
        assert fut.result().results[0].successful
        assert spin_until(c.node, lambda: any(abs(m.threshold - 0.4) < 1e-6
                                              for m in c.got['labels'].values()), 10)
    finally:
        c.node.destroy_node()
        _stop(proc)


def test_missing_or_wrong_geometry_is_said_and_the_node_keeps_serving(ros):
    proc = start_node(['/geob/cam'], {'depth_topics': '[/geob/depth]', 'checkpoint':
                                      bundled_checkpoint('multi_tiny_sur'), 'iters': 1,
                                      'input_qos': 'reliable', 'score_threshold': 0.3})
    c = _Client('geob_client')
    pubs = {'cam': c.node.create_publisher(Image, '/geob/cam', 10),
            'info': c.node.create_publisher(CameraInfo, '/geob/camera_info', 10),
            'depth': c.node.create_publisher(Image, '/geob/depth', 10)}

    def fault(words):
        return spin_until(c.node, lambda: words in c.diag_values().get('geometry_fault', ''),
                          10)
    try:
        # no camera_info yet: the frame is answered, no 3D, diagnostics say why
        _send(c, pubs, 10, FRAMES[0], info=False, depth=False, until=('status', 'det'))
        assert fault('no camera_info received on /geob/camera_info')
        assert c.diag_values()['camera_info'] == 'none yet' and 10 not in c.got['det3']
        # a camera_info for another image size
        _send(c, pubs, 11, FRAMES[0], info_size=(640, 480), until=('status',))
        assert fault('is for 640x480 images, the frame is 240x120')
        # a depth image of the wrong size, then of the wrong encoding
        _send(c, pubs, 12, FRAMES[0], depth_size=(60, 120), until=('status',))
        assert fault('registered to the colour image')
        _send(c, pubs, 13, FRAMES[0], depth='rgb8', until=('status',))
        assert fault("depth image rejected: encoding 'rgb8'")
        assert int(c.diag_values()['depth_rejected']) >= 2
        # no depth at all for a frame (none within sync_tolerance_s)
        _send(c, pubs, 14, FRAMES[0], depth=False, until=('status',))
        assert fault('no depth image on /geob/depth within sync_tolerance_s')
        for sec in (11, 12, 13, 14):
            assert sec not in c.got['det3'] or not c.got['det3'][sec].detections
        # and good input is served in 3D again
        _send(c, pubs, 15, FRAMES[0], depth='32FC1', until=('status', 'det3'))
        assert proc.poll() is None
    finally:
        c.node.destroy_node()
        _stop(proc)


def test_classes_limit_what_is_published_and_unknown_names_are_refused(ros):
    proc = start_node(['/cls/cam'], {'checkpoint': bundled_checkpoint('multi_tiny_sur'),
                                     'iters': 1, 'input_qos': 'reliable', 'score_threshold': 0.2,
                                     'classes': '[car, road]'})
    c = _Client('cls_client')
    pubs = {'cam': c.node.create_publisher(Image, '/cls/cam', 10),
            'info': c.node.create_publisher(CameraInfo, '/cls/camera_info', 10)}
    try:
        labels = set()
        for t, frame in enumerate(FRAMES):
            _send(c, pubs, 30 + t, frame, depth=False, until=('status', 'det', 'mask'))
            labels |= {d.results[0].hypothesis.class_id for d in c.got['det'][30 + t].detections}
            mask = np.frombuffer(bytes(c.got['mask'][30 + t].data), np.uint8)
            assert set(np.unique(mask)) <= {0, 6, 255}       # road, car; the rest unlabelled
        assert labels <= {'2'}                               # cars only (1 = person)
        params = AsyncParameterClient(c.node, 'streamdeq')
        assert params.wait_for_services(timeout_sec=30)
        fut = params.set_parameters([Parameter('classes', value=['car', 'bicycle'])])
        rclpy.spin_until_future_complete(c.node, fut, timeout_sec=30)
        res = fut.result().results[0]
        assert not res.successful
        assert "classes: 'bicycle' is not a class of this model (its classes: road" in res.reason
    finally:
        c.node.destroy_node()
        _stop(proc)
    # at start-up an unknown class stops configure with one sentence
    bad = start_node(['/cls/cam'], {'classes': '[truck]'}, log=subprocess.PIPE)
    out = b''.join(bad.communicate(timeout=120)).decode()
    assert bad.returncode == 1
    assert "cannot configure: classes: 'truck' is not a class of this model" in out


def test_a_bad_topic_name_stops_configure_in_one_sentence():
    bad = start_node(['/geot/cam'], {'depth_topics': "['1bad']"}, log=subprocess.PIPE)
    out = b''.join(bad.communicate(timeout=120)).decode()
    assert bad.returncode == 1 and 'Traceback' not in out
    assert "cannot configure: topic name '1bad' is invalid" in out, out
