"""Outputs as ROS messages: 2D and 3D detections, keypoints, LabelInfo, camera_info, markers.

Pure conversion (no model math). The keypoint clouds are unorganised (height 1), little-endian,
one point per person joint, with the fields of :data:`KEYPOINT_FIELDS` (3D:
:data:`KEYPOINT_3D_FIELDS`) packed without padding (point_step 18; 30), which is how
``sensor_msgs_py.point_cloud2.create_cloud`` packs those fields, so
``sensor_msgs_py.point_cloud2.read_points`` reads them on a distro.
"""
from typing import Optional, Sequence

from geometry_msgs.msg import Point
import numpy as np
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import ColorRGBA
from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray,
                             Detection3D, Detection3DArray, LabelInfo,
                             ObjectHypothesisWithPose, VisionClass)
from visualization_msgs.msg import Marker, MarkerArray

#: (name, PointField datatype, numpy type) of a keypoint, in memory order
KEYPOINT_FIELDS = (('u', PointField.FLOAT32, '<f4'), ('v', PointField.FLOAT32, '<f4'),
                   ('score', PointField.FLOAT32, '<f4'),
                   ('instance_id', PointField.UINT32, '<u4'),
                   ('keypoint_id', PointField.UINT16, '<u2'))
KEYPOINT_DTYPE = np.dtype([(name, fmt) for name, _, fmt in KEYPOINT_FIELDS])
#: a keypoint in 3D: x, y, z (metres, the camera's optical frame; NaN without depth) first
KEYPOINT_3D_FIELDS = tuple((n, PointField.FLOAT32, '<f4') for n in 'xyz') + KEYPOINT_FIELDS
KEYPOINT_3D_DTYPE = np.dtype([(name, fmt) for name, _, fmt in KEYPOINT_3D_FIELDS])


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


def _cloud(points: np.ndarray, fields, header, dense: bool) -> PointCloud2:
    msg = PointCloud2(header=header, height=1, width=len(points), is_bigendian=False,
                      point_step=points.dtype.itemsize, is_dense=dense)
    msg.row_step = msg.point_step * msg.width
    msg.fields = [PointField(name=name, offset=points.dtype.fields[name][1], datatype=dt,
                             count=1) for name, dt, _ in fields]
    msg.data = points.tobytes()
    return msg


def _keypoint_points(keypoints: np.ndarray, ids: np.ndarray, dtype) -> np.ndarray:
    p, j = keypoints.shape[:2]
    points = np.zeros(p * j, dtype)
    if p:
        points['u'] = keypoints[..., 0].reshape(-1)
        points['v'] = keypoints[..., 1].reshape(-1)
        points['score'] = keypoints[..., 2].reshape(-1)
        points['instance_id'] = np.repeat(np.asarray(ids, np.uint32), j)
        points['keypoint_id'] = np.tile(np.arange(j, dtype=np.uint16), p)
    return points


def keypoints_cloud(keypoints: np.ndarray, ids: np.ndarray, header) -> PointCloud2:
    """Return an unorganised PointCloud2 of keypoints (P, J, 3) x, y, score of persons ``ids``."""
    return _cloud(_keypoint_points(keypoints, ids, KEYPOINT_DTYPE), KEYPOINT_FIELDS, header,
                  True)


def keypoints_3d_cloud(keypoints: np.ndarray, xyz: np.ndarray, ids: np.ndarray,
                       header) -> PointCloud2:
    """Return the 3D keypoint cloud: ``xyz`` (P, J, 3) metres (NaN: no depth) + the 2D fields."""
    points = _keypoint_points(keypoints, ids, KEYPOINT_3D_DTYPE)
    if len(points):
        for k, name in enumerate('xyz'):
            points[name] = xyz[..., k].reshape(-1)
    return _cloud(points, KEYPOINT_3D_FIELDS, header, not np.isnan(xyz).any())


def label_info(names: Sequence[str], first_id: int, header, threshold: float = 0.0) -> LabelInfo:
    """Return a LabelInfo mapping ids ``first_id, first_id + 1, ...`` to ``names``."""
    return LabelInfo(header=header, threshold=float(threshold),
                     class_map=[VisionClass(class_id=first_id + i, class_name=n)
                                for i, n in enumerate(names)])


def camera_info_msg(info: CameraInfo, header, k: Sequence[float], p: Sequence[float],
                    width: int, height: int) -> CameraInfo:
    """Return ``info`` for an image of ``width`` x ``height`` (camera matrix ``k``, ``p``).

    The distortion and rectification stay the camera's; binning and region of interest are
    those of the whole output image.
    """
    return CameraInfo(header=header, width=int(width), height=int(height),
                      distortion_model=info.distortion_model, d=list(info.d), r=list(info.r),
                      k=[float(v) for v in k], p=[float(v) for v in p])


def detections_3d_msg(centres: np.ndarray, sizes: np.ndarray, labels: np.ndarray,
                      scores: np.ndarray, ids: np.ndarray, header) -> Detection3DArray:
    """Return a Detection3DArray of the rows with a centre (rows of NaN have no depth).

    The class id, score and instance id are those of the matching 2D detection; the pose of
    the hypothesis is the box's centre (identity orientation, camera optical frame).
    """
    msg = Detection3DArray(header=header)
    rows = zip(centres.tolist(), sizes.tolist(), labels.tolist(), scores.tolist(), ids.tolist())
    for (x, y, z), (sx, sy, sz), label, score, ident in rows:
        if z != z:                      # NaN: no depth for this detection
            continue
        det = Detection3D(header=header, id=str(ident) if ident else '')
        det.bbox = BoundingBox3D()
        det.bbox.center.position.x, det.bbox.center.position.y = x, y
        det.bbox.center.position.z = z
        det.bbox.center.orientation.w = 1.0
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = sx, sy, sz
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(label)
        hyp.hypothesis.score = float(score)
        hyp.pose.pose = det.bbox.center
        det.results = [hyp]
        msg.detections.append(det)
    return msg


def _colour(rgb, alpha: float) -> ColorRGBA:
    return ColorRGBA(r=rgb[0] / 255.0, g=rgb[1] / 255.0, b=rgb[2] / 255.0, a=alpha)


def markers_msg(header, boxes: Optional[Detection3DArray], names: Sequence[str],
                colours: Sequence, skeletons: Sequence[np.ndarray],
                edges: Sequence) -> MarkerArray:
    """Return the RViz markers of one frame: a DELETEALL, boxes with labels, skeleton lines.

    ``names``/``colours`` per class id (index = the detection's label); ``skeletons``: per
    person (J, 3) metres (NaN without depth); ``edges``: the joint pairs that are drawn.
    """
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    for i, det in enumerate(boxes.detections if boxes is not None else []):
        label = int(det.results[0].hypothesis.class_id)
        colour = colours[label] if 0 <= label < len(colours) else (255, 255, 0)
        cube = Marker(header=header, ns='detections', id=i, type=Marker.CUBE,
                      action=Marker.ADD, pose=det.bbox.center, color=_colour(colour, 0.35))
        cube.scale.x, cube.scale.y = max(det.bbox.size.x, 0.02), max(det.bbox.size.y, 0.02)
        cube.scale.z = max(det.bbox.size.z, 0.02)
        text = Marker(header=header, ns='labels', id=i, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=_colour((255, 255, 255), 1.0))
        text.pose.position.x = det.bbox.center.position.x
        text.pose.position.y = det.bbox.center.position.y - det.bbox.size.y / 2 - 0.1
        text.pose.position.z = det.bbox.center.position.z
        text.pose.orientation.w = 1.0
        text.scale.z = 0.2
        name = names[label] if 0 <= label < len(names) else str(label)
        text.text = '%s %.2f%s' % (name, det.results[0].hypothesis.score,
                                   ' #' + det.id if det.id else '')
        out.markers += [cube, text]
    for i, joints in enumerate(skeletons):
        line = Marker(header=header, ns='skeletons', id=i, type=Marker.LINE_LIST,
                      action=Marker.ADD, color=_colour((0, 255, 0), 1.0))
        line.pose.orientation.w = 1.0
        line.scale.x = 0.03
        for a, b in edges:
            if not (np.isnan(joints[a]).any() or np.isnan(joints[b]).any()):
                line.points += [Point(x=float(joints[a][0]), y=float(joints[a][1]),
                                      z=float(joints[a][2])),
                                Point(x=float(joints[b][0]), y=float(joints[b][1]),
                                      z=float(joints[b][2]))]
        if line.points:
            out.markers.append(line)
    return out
