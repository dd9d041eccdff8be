"""Output messages: the keypoint PointCloud2 layout and Detection2DArray contents."""
import numpy as np
from sensor_msgs.msg import PointField
from std_msgs.msg import Header

from streamdeq_ros.ros.messages import detections_msg, keypoints_cloud, label_info

# What sensor_msgs_py.point_cloud2.read_points does: a numpy dtype from the field
# descriptors (name, offset, datatype) with itemsize point_step, over msg.data.
DATATYPES = {PointField.FLOAT32: '<f4', PointField.UINT32: '<u4', PointField.UINT16: '<u2'}


def read_points(msg):
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': [DATATYPES[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields], 'itemsize': msg.point_step})
    assert msg.row_step == msg.point_step * msg.width and not msg.is_bigendian
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


def _header():
    h = Header(frame_id='cam_optical')
    h.stamp.sec, h.stamp.nanosec = 7, 99
    return h


def test_keypoint_cloud_reads_back_field_by_field():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 16, 3)).astype(np.float32)
    msg = keypoints_cloud(kp, np.array([7, 12], np.uint32), _header())
    assert (msg.height, msg.width, msg.point_step) == (1, 32, 18)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('u', 0, 7, 1), ('v', 4, 7, 1), ('score', 8, 7, 1), ('instance_id', 12, 6, 1),
        ('keypoint_id', 16, 4, 1)]
    pts = read_points(msg)
    assert np.array_equal(pts['u'], kp[..., 0].ravel())
    assert np.array_equal(pts['v'], kp[..., 1].ravel())
    assert np.array_equal(pts['score'], kp[..., 2].ravel())
    assert pts['instance_id'].tolist() == [7] * 16 + [12] * 16
    assert pts['keypoint_id'].tolist() == list(range(16)) * 2
    assert msg.header.frame_id == 'cam_optical' and msg.header.stamp.nanosec == 99
    empty = keypoints_cloud(np.zeros((0, 16, 3), np.float32), np.zeros(0), _header())
    assert empty.width == 0 and len(empty.data) == 0 and len(empty.fields) == 5


def test_detections_carry_centre_size_class_score_id_and_the_header():
    msg = detections_msg(np.array([[10.0, 20.0, 30.0, 60.0]]), np.array([2]),
                         np.array([0.75]), np.array([0], np.uint32), _header())
    (d,) = msg.detections
    assert msg.header.frame_id == d.header.frame_id == 'cam_optical'
    assert (d.bbox.center.position.x, d.bbox.center.position.y) == (20.0, 40.0)
    assert (d.bbox.size_x, d.bbox.size_y) == (20.0, 40.0)
    assert d.results[0].hypothesis.class_id == '2' and d.results[0].hypothesis.score == 0.75
    assert d.id == ''                                              # 0: not tracked yet
    info = label_info(['person', 'car'], 1, _header())
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(1, 'person'), (2, 'car')]
