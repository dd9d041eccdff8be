"""Outputs as ROS messages: Detection2DArray, keypoint PointCloud2, LabelInfo.

Pure conversion (no model math). The keypoint cloud is unorganised (height 1), little-endian,
one point per person joint, with the fields of :data:`KEYPOINT_FIELDS` packed without padding
(point_step 18), which is how ``sensor_msgs_py.point_cloud2.create_cloud`` packs those fields,
so ``sensor_msgs_py.point_cloud2.read_points`` reads it on a distro.
"""
from typing import Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, LabelInfo,
                             ObjectHypothesisWithPose, VisionClass)

#: (name, PointField datatype, numpy type) of a keypoint, in memory order
KEYPOINT_FIELDS = (('u', PointField.FLOAT32, '<f4'), ('v', PointField.FLOAT32, '<f4'),
                   ('score', PointField.FLOAT32, '<f4'),
                   ('instance_id', PointField.UINT32, '<u4'),
                   ('keypoint_id', PointField.UINT16, '<u2'))
KEYPOINT_DTYPE = np.dtype([(name, fmt) for name, _, fmt in KEYPOINT_FIELDS])


def detections_msg(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                   ids: np.ndarray, header) -> Detection2DArray:
    """Return a Detection2DArray of boxes (K, 4) x1 y1 x2 y2 in pixels, all with ``header``.

    ``class_id`` is the label as a decimal string (decoded by the matching LabelInfo), ``id``
    the instance id as a decimal string ('' for 0: not tracked yet).
    """
    msg = Detection2DArray(header=header)
    rows = zip(boxes.tolist(), labels.tolist(), scores.tolist(), ids.tolist())
    for (x1, y1, x2, y2), label, score, ident in rows:
        det = Detection2D(header=header, id=str(ident) if ident else '')
        det.bbox = BoundingBox2D(size_x=x2 - x1, size_y=y2 - y1)
        det.bbox.center.position.x = (x1 + x2) / 2
        det.bbox.center.position.y = (y1 + y2) / 2
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(label)
        hyp.hypothesis.score = float(score)
        det.results = [hyp]
        msg.detections.append(det)
    return msg


def keypoints_cloud(keypoints: np.ndarray, ids: np.ndarray, header) -> PointCloud2:
    """Return an unorganised PointCloud2 of keypoints (P, J, 3) x, y, score of persons ``ids``."""
    p, j = keypoints.shape[:2]
    points = np.zeros(p * j, KEYPOINT_DTYPE)
    if p:
        points['u'] = keypoints[..., 0].reshape(-1)
        points['v'] = keypoints[..., 1].reshape(-1)
        points['score'] = keypoints[..., 2].reshape(-1)
        points['instance_id'] = np.repeat(np.asarray(ids, np.uint32), j)
        points['keypoint_id'] = np.tile(np.arange(j, dtype=np.uint16), p)
    msg = PointCloud2(header=header, height=1, width=p * j, is_bigendian=False,
                      point_step=KEYPOINT_DTYPE.itemsize, is_dense=True)
    msg.row_step = msg.point_step * msg.width
    msg.fields = [PointField(name=name, offset=KEYPOINT_DTYPE.fields[name][1], datatype=dt,
                             count=1) for name, dt, _ in KEYPOINT_FIELDS]
    msg.data = points.tobytes()
    return msg


def label_info(names: Sequence[str], first_id: int, header) -> LabelInfo:
    """Return a LabelInfo mapping ids ``first_id, first_id + 1, ...`` to ``names``."""
    return LabelInfo(header=header, class_map=[VisionClass(class_id=first_id + i, class_name=n)
                                               for i, n in enumerate(names)])
