"""What the node publishes: the topics of each head, who listens, and one frame's messages.

Outputs are built only for the topics that have subscribers, and only the heads those topics
are read from are run (:func:`heads_for`). Every message carries the input frame's header.
With the camera's camera_info, the masks get theirs (``segmentation/camera_info``, scaled to
the mask's size) and the overlay its own (``camera_info``, the camera's); with an aligned depth
image too, detections and keypoints get metric 3D and RViz markers (refined outputs only).
"""
from dataclasses import dataclass
import time
from typing import Dict, Iterable, List, Optional

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from .image_conv import fill_image
from .messages import (camera_info_msg, detections_3d_msg, detections_msg, keypoints_3d_cloud,
                       keypoints_cloud, label_info, markers_msg)
from ..runtime.frame_output import only_classes
from ..runtime.geometry import detections_3d, Intrinsics, keypoints_3d, resized_projection

#: per head: (publisher key, message type, topic under ~/[partial/][camera/])
OUTPUTS = {'segmentation': [('class', Image, 'segmentation/class_mask'),
                            ('color', Image, 'segmentation/color_mask')],
           'detection': [('detections', Detection2DArray, 'detections')],
           'pose': [('keypoints', PointCloud2, 'keypoints'),
                    ('persons', Detection2DArray, 'keypoints/persons')]}
#: refined outputs only: (key, type, topic, needs depth); each exists when the model has one
#: of its heads (:data:`HEADS_OF`; none listed: always)
REFINED = [('overlay', Image, 'overlay', False),
           ('cam_info', CameraInfo, 'camera_info', False),
           ('seg_info', CameraInfo, 'segmentation/camera_info', False),
           ('detections_3d', Detection3DArray, 'detections_3d', True),
           ('keypoints_3d', PointCloud2, 'keypoints_3d', True),
           ('markers', MarkerArray, 'markers', True)]
#: every output key of a stage ('' or 'partial/'; the REFINED ones exist for '' only)
KEYS = ('class', 'color', 'detections', 'persons', 'keypoints') + tuple(r[0] for r in REFINED)
#: the outputs that need the class mask
MASK_USERS = {'class', 'color', 'overlay'}
#: the outputs that need camera_info; those that need depth too
INFO_USERS = {'cam_info', 'seg_info', 'detections_3d', 'keypoints_3d', 'markers'}
DEPTH_USERS = {r[0] for r in REFINED if r[3]}
#: per output key, the heads it is read from (persons are the boxes the keypoints belong to)
HEADS_OF = {'class': ('segmentation',), 'color': ('segmentation',),
            'detections': ('detection',), 'persons': ('pose',), 'keypoints': ('pose',),
            'overlay': ('segmentation', 'detection', 'pose'), 'cam_info': (),
            'seg_info': ('segmentation',), 'detections_3d': ('detection',),
            'keypoints_3d': ('pose',), 'markers': ('detection', 'pose')}
STAGES = ('', 'partial/')
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)


@dataclass
class FrameGeometry:
    """What a frame's camera_info (and depth image) give its outputs."""

    info: CameraInfo                     # the camera's, paired with the frame by stamp
    cam: Intrinsics                      # the same, at the camera image's size
    depth: Optional[np.ndarray] = None   # metres (NaN invalid), the camera image's size


def create_camera_publishers(node, prefix: str, tasks: Iterable[str],
                             depth: bool) -> Dict[str, object]:
    """Return a camera's publishers keyed ``stage + key``; a head the model lacks gets none.

    The 3D outputs exist only for a camera with a depth topic (``depth``).
    """
    tasks = list(tasks)
    pubs = {}
    for stage in STAGES:
        for task in tasks:
            for key, kind, name in OUTPUTS[task]:
                pubs[stage + key] = node.create_lifecycle_publisher(
                    kind, '~/' + stage + prefix + name, 5)
    for key, kind, name, needs_depth in REFINED:
        heads = HEADS_OF[key]
        if (not heads or any(h in tasks for h in heads)) and (depth or not needs_depth):
            pubs[key] = node.create_lifecycle_publisher(kind, '~/' + prefix + name, 5)
    return pubs


def create_label_publishers(node, pipeline) -> list:
    """Create the latched LabelInfo topics of the model's heads.

    Return (publisher, function of the score threshold that gives the message) pairs: lifecycle
    publishers, so the node publishes the messages once it is active (and again when the
    threshold changes). Detections and keypoints say ``score_threshold`` as their threshold;
    a class mask (an arg-max) has none (0).
    """
    pubs = []
    for task, topic, names, first, scored in (
            ('segmentation', 'segmentation/label_info', pipeline.classes, 0, False),
            ('detection', 'detections/label_info', pipeline.det_classes, 1, True),
            ('pose', 'keypoints/label_info', pipeline.joints, 0, True)):
        if task in pipeline.tasks:
            pubs.append((node.create_lifecycle_publisher(LabelInfo, '~/' + topic, LATCHED),
                         lambda threshold, n=names, f=first, s=scored: label_info(
                             n, f, Header(), threshold if s else 0.0)))
    return pubs


def class_filter(pipeline, names: List[str]):
    """Return (seg_keep, det_keep) for :func:`~streamdeq_ros.runtime.frame_output.only_classes`.

    ``names`` [''] keeps everything (None, None); otherwise ValueError names a class the model
    does not have, in one sentence.
    """
    if list(names) == ['']:
        return None, None
    known = list(pipeline.classes) + [c for c in pipeline.det_classes
                                      if c not in pipeline.classes]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError('classes: %s %s not a class of this model (its classes: %s)'
                         % (', '.join(repr(n) for n in unknown),
                            'is' if len(unknown) == 1 else 'are', ', '.join(known)))
    seg = np.array([c in names for c in pipeline.classes], bool)
    det = np.array([False] + [c in names for c in pipeline.det_classes], bool)
    return seg, det


def wanted(pubs: Dict[str, object], stage: str) -> set:
    """Return the output keys of ``stage`` ('' or 'partial/') someone subscribes to."""
    return {k for k in KEYS if stage + k in pubs
            and pubs[stage + k].get_subscription_count() > 0}


def heads_for(tasks: Iterable[str], keys: Iterable[str]) -> List[str]:
    """Return the heads among ``tasks`` that the output ``keys`` are read from."""
    keys = list(keys)
    return [h for h in tasks if any(h in HEADS_OF[k] for k in keys)]


def _geometry_msgs(pipeline, want: set, out, header, geo: FrameGeometry, mask_shape):
    """Return the camera_info and 3D messages ``want`` asks for, as (key, message)."""
    msgs = []
    if 'cam_info' in want:
        msgs.append(('cam_info', camera_info_msg(geo.info, header, geo.cam.k(), geo.info.p,
                                                 geo.cam.width, geo.cam.height)))
    if 'seg_info' in want and mask_shape is not None:
        h, w = mask_shape
        small = geo.cam.resized(w, h)
        sx, sy = geo.cam.scale(w, h)
        msgs.append(('seg_info', camera_info_msg(geo.info, header, small.k(),
                                                 resized_projection(geo.info.p, sx, sy), w, h)))
    if geo.depth is None or not want & DEPTH_USERS:
        return msgs
    boxes3d, skeletons = None, []
    if out.detections is not None and want & {'detections_3d', 'markers'}:
        d = out.detections
        names = pipeline.det_classes
        seg_ids = {i + 1: pipeline.classes.index(n) for i, n in enumerate(names)
                   if n in pipeline.classes}
        centres, sizes = detections_3d(geo.depth, d.boxes, d.labels, geo.cam, out.mask, seg_ids)
        boxes3d = detections_3d_msg(centres, sizes, d.labels, d.scores, d.ids, header)
        if 'detections_3d' in want:
            msgs.append(('detections_3d', boxes3d))
    if out.keypoints is not None and want & {'keypoints_3d', 'markers'}:
        xyz = keypoints_3d(geo.depth, out.keypoints, geo.cam)
        skeletons = list(xyz)
        if 'keypoints_3d' in want:
            msgs.append(('keypoints_3d', keypoints_3d_cloud(out.keypoints, xyz,
                                                            out.persons.ids, header)))
    if 'markers' in want:
        colours = [pipeline.palette[pipeline.classes.index(n)] if n in pipeline.classes
                   else (255, 255, 0) for n in [''] + list(pipeline.det_classes)]
        msgs.append(('markers', markers_msg(header, boxes3d, [''] + list(pipeline.det_classes),
                                            colours, skeletons, pipeline.skeleton)))
    return msgs


def publish_outputs(pipeline, pubs: Dict[str, object], stage: str, out, header, rgb,
                    times: Dict[str, float], geo: Optional[FrameGeometry] = None,
                    keep=(None, None)) -> List[str]:
    """Build and publish the outputs someone subscribes to; return their keys.

    The class mask is computed here (from the deferred logits) only when the class mask,
    colour mask or overlay is wanted. ``geo``: the frame's camera_info and depth (None: no
    camera_info or 3D outputs); ``keep``: the classes published (see :func:`class_filter`).
    ``times`` gets the milliseconds of the mask, of building messages and of publishing them.
    """
    want = wanted(pubs, stage)
    t0 = time.perf_counter()
    if want & MASK_USERS:
        pipeline.finish_mask(out)
    out = only_classes(out, keep[0], keep[1], pipeline.person_label)
    t1 = time.perf_counter()
    msgs = []
    if out.mask is not None:
        if 'class' in want:
            msgs.append(('class', fill_image(Image(), out.mask, 'mono8', header)))
        if 'color' in want:
            msgs.append(('color', fill_image(Image(), pipeline.colorize(out.mask), 'rgb8',
                                             header)))
    if out.detections is not None and 'detections' in want:
        d = out.detections
        msgs.append(('detections', detections_msg(d.boxes, d.labels, d.scores, d.ids, header)))
    if out.keypoints is not None:
        p = out.persons
        if 'persons' in want:
            msgs.append(('persons', detections_msg(p.boxes, p.labels, p.scores, p.ids, header)))
        if 'keypoints' in want:
            msgs.append(('keypoints', keypoints_cloud(out.keypoints, p.ids, header)))
    if 'overlay' in want:
        msgs.append(('overlay', fill_image(Image(), pipeline.overlay(rgb, out), 'rgb8', header)))
    if geo is not None:
        shown = out.mask.shape if out.mask is not None and {'class', 'color'} & want else None
        msgs += _geometry_msgs(pipeline, want, out, header, geo, shown)
    t2 = time.perf_counter()
    for key, msg in msgs:
        pubs[stage + key].publish(msg)
    t3 = time.perf_counter()
    for name, dt in (('mask', t1 - t0), ('messages', t2 - t1), ('publish', t3 - t2)):
        times[name] = times.get(name, 0.0) + dt * 1e3
    return [stage + k for k, _ in msgs]
