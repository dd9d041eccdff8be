"""Cityscapes video clips: ``leftImg8bit_sequence`` frames with the ``gtFine`` label.

Layout (as distributed)::

    ROOT/leftImg8bit_sequence/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png

Each labelled frame is the 20th of its 30-frame snippet, so the clip of a label with frame
number f is frames f-19 .. f (``labelled_index`` 19). Label ids map to the 19 train ids
(:data:`TRAIN_CLASSES`); everything else becomes 255 (ignore).
"""
import glob
import os
import re
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch

from .clips import DatasetFormatError, LabelledClip, LazyFrames

TRAIN_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                 'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
                 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
#: the official Cityscapes colours of the train ids (RGB)
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
           (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
           (0, 80, 100), (0, 0, 230), (119, 11, 32))
#: Cityscapes label id -> train id (ids not listed are ignored)
ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABELLED_INDEX = 19

_LABEL_RE = re.compile(r'^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$')


def label_lut() -> np.ndarray:
    """Return a 256-entry lookup table from label ids to train ids (255 = ignore)."""
    lut = np.full(256, 255, np.uint8)
    for k, v in ID_TO_TRAIN_ID.items():
        lut[k] = v
    return lut


def read_label(path: str) -> np.ndarray:
    """Read a ``*_gtFine_labelIds.png`` as train ids."""
    ids = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2:
        raise DatasetFormatError('cannot read a single-channel label image %s' % path)
    return label_lut()[ids.astype(np.uint8)]


def cityscapes_clips(root: str, split: str = 'val', size: Optional[Tuple[int, int]] = None,
                     limit: Optional[int] = None) -> List[LabelledClip]:
    """All labelled clips of ``split`` (frames read lazily, resized to ``size`` = (H, W))."""
    label_dir = os.path.join(root, 'gtFine', split)
    seq_dir = os.path.join(root, 'leftImg8bit_sequence', split)
    for d in (label_dir, seq_dir):
        if not os.path.isdir(d):
            raise DatasetFormatError('%s is not a Cityscapes root: %s is missing' % (root, d))
    labels = sorted(glob.glob(os.path.join(label_dir, '*', '*_gtFine_labelIds.png')))
    if not labels:
        raise DatasetFormatError('no *_gtFine_labelIds.png under %s' % label_dir)
    clips = []
    for path in labels[:limit]:
        m = _LABEL_RE.match(os.path.basename(path))
        if m is None:
            raise DatasetFormatError('unexpected label file name %s' % path)
        city, seq, frame = m.group('city'), m.group('seq'), int(m.group('frame'))
        frames = [os.path.join(seq_dir, city, '%s_%s_%06d_leftImg8bit.png' % (city, seq, f))
                  for f in range(frame - LABELLED_INDEX, frame + 1)]
        missing = [f for f in frames if not os.path.isfile(f)]
        if missing:
            raise DatasetFormatError('clip of %s misses %d sequence frames, first %s'
                                     % (path, len(missing), missing[0]))
        mask = read_label(path)
        if size is not None:
            mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        clips.append(LabelledClip('%s_%s_%06d' % (city, seq, frame), LazyFrames(frames, size),
                                  LABELLED_INDEX, mask, {'label_path': path}))
    return clips


class RandomScaleCrop:
    """The official MDEQ / HRNet Cityscapes training augmentation, on (image, mask) pairs.

    Scale the frame by a factor drawn uniformly from ``scale`` (bilinear image, nearest
    label), pad to at least ``crop`` (image 0, label 255 = ignore), take a random ``crop``
    (H, W) and mirror it with probability 0.5. Draws come from torch's generator, which the
    DataLoader seeds per worker from the run's seed.
    """

    def __init__(self, crop: Tuple[int, int], scale: Tuple[float, float] = (0.5, 2.0),
                 flip: bool = True, ignore_index: int = 255):
        """Crop to ``crop`` = (H, W) after scaling by U(``scale``)."""
        if not 0 < scale[0] <= scale[1]:
            raise ValueError('random scale range must be 0 < low <= high, got %s' % (scale,))
        self.crop, self.scale, self.flip, self.ignore = tuple(crop), tuple(scale), flip, \
            ignore_index

    def __call__(self, image: np.ndarray, mask: np.ndarray):
        """Return the augmented (image (H, W, 3) uint8, mask (H, W) uint8)."""
        lo, hi = self.scale
        s = lo + (hi - lo) * float(torch.rand(()))
        h, w = mask.shape
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT,
                                      value=self.ignore)
        y = int(torch.randint(0, image.shape[0] - ch + 1, ()))
        x = int(torch.randint(0, image.shape[1] - cw + 1, ()))
        image, mask = image[y:y + ch, x:x + cw], mask[y:y + ch, x:x + cw]
        if self.flip and float(torch.rand(())) < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)
