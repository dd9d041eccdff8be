"""MPII Human Pose with the unlabelled video frames that precede each annotated image.

Annotations are read from the JSON conversion of ``mpii_human_pose_v1_u12_1.mat`` that the
"simple baselines" / HRNet pose code uses (``annot/{split}.json``): a list of people, each
``{"image": "015601864.jpg", "center": [x, y], "scale": s, "joints": [[x, y] * 16],
"joints_vis": [0|1 * 16]}`` in MPII joint order (:data:`streamdeq_ros.data.street.JOINTS`),
optionally with ``"head_box": [x1, y1, x2, y2]`` (the MPII head rectangle). Frames::

    ROOT/images/{image}                       the annotated frame
    ROOT/frames/{image stem}/{k:03d}.jpg      k frames before it (k = 1 .. 19), from MPII's
                                              video sequences

A clip is the preceding frames (oldest first) followed by the annotated image; people of the
same image share one clip. The PCKh head size is 0.6 x the head-box diagonal when a head box
is given, else the upper-neck to head-top distance.
"""
import json
import os
from typing import Dict, List, Optional

import numpy as np

from .clips import DatasetFormatError, LabelledClip, LazyFrames

NUM_JOINTS = 16


def _person(entry: Dict, where: str) -> Dict:
    try:
        joints = np.asarray(entry['joints'], np.float32)
        vis = np.asarray(entry['joints_vis'], np.float32)
        center = np.asarray(entry['center'], np.float32)
        scale = float(entry['scale'])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError('%s: person entry lacks or has a bad field: %s'
                                 % (where, exc)) from None
    if joints.shape != (NUM_JOINTS, 2) or vis.shape != (NUM_JOINTS,) or center.shape != (2,):
        raise DatasetFormatError('%s: joints must be 16x2, joints_vis 16, center 2; got %s, %s, '
                                 '%s' % (where, joints.shape, vis.shape, center.shape))
    if 'head_box' in entry:
        x1, y1, x2, y2 = (float(v) for v in entry['head_box'])
        head = 0.6 * float(np.hypot(x2 - x1, y2 - y1))
    else:
        head = float(np.linalg.norm(joints[9] - joints[8]))
    kp = np.concatenate([joints, (vis > 0).astype(np.float32)[:, None] * 2], 1)
    return {'keypoints': kp, 'center': center, 'scale': scale, 'head_size': head}


def mpii_clips(root: str, split: str = 'valid', length: int = 20,
               limit: Optional[int] = None) -> List[LabelledClip]:
    """Clips of ``length`` frames ending at each annotated image of ``split``."""
    ann_path = os.path.join(root, 'annot', '%s.json' % split)
    try:
        with open(ann_path) as fh:
            entries = json.load(fh)
    except OSError:
        raise DatasetFormatError('%s is not an MPII root: %s is missing' % (root, ann_path)) \
            from None
    except json.JSONDecodeError as exc:
        raise DatasetFormatError('%s is not valid JSON: %s' % (ann_path, exc)) from None
    if not isinstance(entries, list):
        raise DatasetFormatError('%s must hold a list of people' % ann_path)
    by_image: Dict[str, List[Dict]] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or 'image' not in e:
            raise DatasetFormatError('%s: entry %d has no "image"' % (ann_path, i))
        by_image.setdefault(e['image'], []).append(_person(e, '%s[%d]' % (ann_path, i)))
    clips = []
    for image, people in sorted(by_image.items()):
        stem = os.path.splitext(image)[0]
        frames = [os.path.join(root, 'frames', stem, '%03d.jpg' % k)
                  for k in range(length - 1, 0, -1)] + [os.path.join(root, 'images', image)]
        missing = [p for p in frames if not os.path.isfile(p)]
        if missing:
            raise DatasetFormatError('MPII image %s misses %d of its %d frames, first %s'
                                     % (image, len(missing), length, missing[0]))
        clips.append(LabelledClip(stem, LazyFrames(frames), length - 1, None,
                                  {'keypoints': np.stack([p['keypoints'] for p in people]),
                                   'head_sizes': np.asarray([p['head_size'] for p in people],
                                                            np.float32),
                                   'centers': np.stack([p['center'] for p in people]),
                                   'scales': np.asarray([p['scale'] for p in people],
                                                        np.float32)}))
        if limit is not None and len(clips) >= limit:
            break
    return clips
