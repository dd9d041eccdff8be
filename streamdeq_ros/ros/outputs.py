"""What the node publishes: the topics of each head, who listens, and one frame's messages.

Outputs are built only for the topics that have subscribers, and only the heads those topics
are read from are run (:func:`heads_for`). Every message carries the input frame's header.
"""
import time
from typing import Dict, Iterable, List

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from .image_conv import fill_image
from .messages import detections_msg, keypoints_cloud, label_info

#: per head: (publisher key, message type, topic under ~/[partial/][camera/])
OUTPUTS = {'segmentation': [('class', Image, 'segmentation/class_mask'),
                            ('color', Image, 'segmentation/color_mask')],
           'detection': [('detections', Detection2DArray, 'detections')],
           'pose': [('keypoints', PointCloud2, 'keypoints'),
                    ('persons', Detection2DArray, 'keypoints/persons')]}
#: every output key of a stage ('' or 'partial/'; the overlay exists for '' only)
KEYS = ('class', 'color', 'detections', 'persons', 'keypoints', 'overlay')
#: the outputs that need the class mask
MASK_USERS = {'class', 'color', 'overlay'}
#: per output key, the heads it is read from (persons are the boxes the keypoints belong to)
HEADS_OF = {'class': ('segmentation',), 'color': ('segmentation',),
            'detections': ('detection',), 'persons': ('pose',), 'keypoints': ('pose',),
            'overlay': ('segmentation', 'detection', 'pose')}
STAGES = ('', 'partial/')
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     history=HistoryPolicy.KEEP_LAST)


def create_camera_publishers(node, prefix: str, tasks: Iterable[str]) -> Dict[str, object]:
    """Return a camera's publishers keyed ``stage + key``; a head the model lacks gets none."""
    pubs = {}
    for stage in STAGES:
        for task in tasks:
            for key, kind, name in OUTPUTS[task]:
                pubs[stage + key] = node.create_lifecycle_publisher(
                    kind, '~/' + stage + prefix + name, 5)
    pubs['overlay'] = node.create_lifecycle_publisher(Image, '~/' + prefix + 'overlay', 5)
    return pubs


def create_label_publishers(node, pipeline) -> list:
    """Create the latched LabelInfo topics of the model's heads.

    Return (publisher, message) pairs: lifecycle publishers, so the node publishes the
    messages once it is active.
    """
    pubs = []
    for task, topic, names, first in (
            ('segmentation', 'segmentation/label_info', pipeline.classes, 0),
            ('detection', 'detections/label_info', pipeline.det_classes, 1),
            ('pose', 'keypoints/label_info', pipeline.joints, 0)):
        if task in pipeline.tasks:
            pubs.append((node.create_lifecycle_publisher(LabelInfo, '~/' + topic, LATCHED),
                         label_info(names, first, Header())))
    return pubs


def wanted(pubs: Dict[str, object], stage: str) -> set:
    """Return the output keys of ``stage`` ('' or 'partial/') someone subscribes to."""
    return {k for k in KEYS if stage + k in pubs
            and pubs[stage + k].get_subscription_count() > 0}


def heads_for(tasks: Iterable[str], keys: Iterable[str]) -> List[str]:
    """Return the heads among ``tasks`` that the output ``keys`` are read from."""
    keys = list(keys)
    return [h for h in tasks if any(h in HEADS_OF[k] for k in keys)]


def publish_outputs(pipeline, pubs: Dict[str, object], stage: str, out, header, rgb,
                    times: Dict[str, float]) -> List[str]:
    """Build and publish the outputs someone subscribes to; return their keys.

    The class mask is computed here (from the deferred logits) only when the class mask,
    colour mask or overlay is wanted. ``times`` gets the milliseconds of the mask, of
    building messages and of publishing them.
    """
    want = wanted(pubs, stage)
    t0 = time.perf_counter()
    if want & MASK_USERS:
        pipeline.finish_mask(out)
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
    t2 = time.perf_counter()
    for key, msg in msgs:
        pubs[stage + key].publish(msg)
    t3 = time.perf_counter()
    for name, dt in (('mask', t1 - t0), ('messages', t2 - t1), ('publish', t3 - t2)):
        times[name] = times.get(name, 0.0) + dt * 1e3
    return [stage + k for k, _ in msgs]
