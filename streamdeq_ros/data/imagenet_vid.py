"""ImageNet-VID (ILSVRC2015 VID) snippets with their per-frame box annotations.

Layout (as distributed)::

    ROOT/Data/VID/{split}/{snippet}/{frame:06d}.JPEG
    ROOT/Annotations/VID/{split}/{snippet}/{frame:06d}.xml

``snippet`` may contain a sub-folder (``ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000``).
Each XML holds ``size/width``, ``size/height`` and per ``object``: ``trackid``, ``name`` (a
WordNet id of :data:`SYNSETS`), ``bndbox`` (xmin, ymin, xmax, ymax) and ``occluded``.
"""
import glob
import os
from typing import Dict, List, Optional
import xml.etree.ElementTree as ET

import numpy as np

from .clips import DatasetFormatError, LabelledClip, LazyFrames

CLASSES = ('airplane', 'antelope', 'bear', 'bicycle', 'bird', 'bus', 'car', 'cattle', 'dog',
           'domestic_cat', 'elephant', 'fox', 'giant_panda', 'hamster', 'horse', 'lion',
           'lizard', 'monkey', 'motorcycle', 'rabbit', 'red_panda', 'sheep', 'snake',
           'squirrel', 'tiger', 'train', 'turtle', 'watercraft', 'whale', 'zebra')
SYNSETS = ('n02691156', 'n02419796', 'n02131653', 'n02834778', 'n01503061', 'n02924116',
           'n02958343', 'n02402425', 'n02084071', 'n02121808', 'n02503517', 'n02118333',
           'n02510455', 'n02342885', 'n02374451', 'n02129165', 'n01674464', 'n02484322',
           'n03790512', 'n02324045', 'n02509815', 'n02411705', 'n01726692', 'n02355227',
           'n02129604', 'n04468005', 'n01662784', 'n04530566', 'n02062744', 'n02391049')
SYNSET_TO_ID = {s: i for i, s in enumerate(SYNSETS)}


def _num(node, tag, path) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DatasetFormatError('%s: <%s> is missing' % (path, tag))
    try:
        return float(child.text)
    except ValueError:
        raise DatasetFormatError('%s: <%s> is not a number: %r' % (path, tag, child.text)) \
            from None


def read_annotation(path: str) -> Dict:
    """Parse one VID XML into ``{'width', 'height', 'boxes', 'labels', 'track_ids', ...}``."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DatasetFormatError('%s is not valid XML: %s' % (path, exc)) from None
    size = root.find('size')
    if size is None:
        raise DatasetFormatError('%s: <size> is missing' % path)
    boxes, labels, tracks, occluded = [], [], [], []
    for obj in root.findall('object'):
        name = obj.findtext('name')
        if name not in SYNSET_TO_ID:
            raise DatasetFormatError('%s: unknown class %r' % (path, name))
        bb = obj.find('bndbox')
        if bb is None:
            raise DatasetFormatError('%s: an object has no <bndbox>' % path)
        boxes.append([_num(bb, t, path) for t in ('xmin', 'ymin', 'xmax', 'ymax')])
        labels.append(SYNSET_TO_ID[name])
        tracks.append(int(_num(obj, 'trackid', path)))
        occluded.append(int(obj.findtext('occluded') or 0))
    return {'width': int(_num(size, 'width', path)), 'height': int(_num(size, 'height', path)),
            'boxes': np.asarray(boxes, np.float32).reshape(-1, 4),
            'labels': np.asarray(labels, np.int64), 'track_ids': np.asarray(tracks, np.int64),
            'occluded': np.asarray(occluded, np.int64)}


def vid_snippets(root: str, split: str = 'val') -> List[str]:
    """Snippet paths (relative to ``Data/VID/{split}``) that have annotations."""
    ann = os.path.join(root, 'Annotations', 'VID', split)
    if not os.path.isdir(ann):
        raise DatasetFormatError('%s is not an ImageNet-VID root: %s is missing' % (root, ann))
    xmls = glob.glob(os.path.join(ann, '**', '*.xml'), recursive=True)
    return sorted({os.path.relpath(os.path.dirname(p), ann) for p in xmls})


def vid_clips(root: str, split: str = 'val', length: int = 20, stride: Optional[int] = None,
              limit: Optional[int] = None) -> List[LabelledClip]:
    """Clips of ``length`` frames labelled at their last frame, every ``stride`` frames."""
    stride = stride or length
    clips = []
    for snip in vid_snippets(root, split):
        ann_dir = os.path.join(root, 'Annotations', 'VID', split, snip)
        img_dir = os.path.join(root, 'Data', 'VID', split, snip)
        xmls = sorted(glob.glob(os.path.join(ann_dir, '*.xml')))
        images = [os.path.join(img_dir, os.path.basename(x)[:-4] + '.JPEG') for x in xmls]
        missing = [p for p in images if not os.path.isfile(p)]
        if missing:
            raise DatasetFormatError('snippet %s misses %d frames, first %s'
                                     % (snip, len(missing), missing[0]))
        for end in range(length - 1, len(xmls), stride):
            ann = read_annotation(xmls[end])
            clips.append(LabelledClip('%s/%06d' % (snip, end),
                                      LazyFrames(images[end - length + 1:end + 1]),
                                      length - 1, None, ann))
            if limit is not None and len(clips) >= limit:
                return clips
    return clips
