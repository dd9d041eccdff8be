"""Datasets over clips: still frames for training, labelled clips for streaming evaluation.

Every reader (generator, Cityscapes, ...) yields :class:`LabelledClip` objects: RGB uint8 frames
in time order, the index of the labelled frame and its label. Training uses still frames only
(as in the paper); evaluation streams the frames up to the labelled one.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from . import street

SPLITS = {'train': 0, 'val': 1, 'test': 2}


def derive_seed(base: int, split: str, index: int) -> int:
    """Return the generator seed of clip ``index`` of ``split`` (splits never share a clip)."""
    if split not in SPLITS:
        raise ValueError('unknown split %r (known: %s)' % (split, ', '.join(SPLITS)))
    return int(np.random.SeedSequence([base, SPLITS[split], index]).generate_state(1)[0])


@dataclass
class LabelledClip:
    """Frames (RGB uint8, H x W x 3) with a label on ``frames[labelled_index]``."""

    name: str
    frames: List[np.ndarray]
    labelled_index: int
    mask: Optional[np.ndarray] = None          # (H, W) uint8 train ids, 255 = ignore
    meta: Dict = field(default_factory=dict)   # task-specific labels (boxes, keypoints, ...)


def resize_pair(image: np.ndarray, mask: Optional[np.ndarray], height: int, width: int):
    """Resize an image (area/linear) and its label mask (nearest) to ``height`` x ``width``."""
    if image.shape[:2] != (height, width):
        shrink = image.shape[0] > height
        image = cv2.resize(image, (width, height),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if mask is not None and mask.shape[:2] != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, mask


def street_clips(count: int, height: int, width: int, seed: int = 0, split: str = 'val',
                 cut_at: Optional[int] = None,
                 length: int = street.CLIP_LENGTH) -> List[LabelledClip]:
    """``count`` generated clips of ``split`` with the label at frame 19 (as Cityscapes)."""
    clips = []
    for i in range(count):
        s = derive_seed(seed, split, i)
        clip = street.StreetClip(s, height, width, length=length, cut_at=cut_at)
        frames, labels = zip(*(clip[t] for t in range(length)))
        li = min(street.LABELLED_INDEX, length - 1)
        clips.append(LabelledClip('street-%s-%d' % (split, i), list(frames), li,
                                  labels[li].mask, {'labels': list(labels), 'seed': s}))
    return clips


#: detection labels of the generator's things: 0 is the background, i >= 1 is DET_CLASSES[i-1]
DET_CLASSES = tuple(street.CLASSES[c] for c in street.THING_CLASSES)
#: the joints that swap when an image is mirrored (MPII order)
FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def frame_targets(labels: street.FrameLabels) -> Dict[str, torch.Tensor]:
    """Return the detection and pose targets of one generated frame (pixels of the frame).

    ``boxes`` (K, 4) and ``labels`` (K,) in :data:`DET_CLASSES` numbering (1-based);
    ``person_boxes`` (P, 4), ``keypoints`` (P, 16, 3) and ``head_sizes`` (P,) row by row.
    """
    det = {c: i + 1 for i, c in enumerate(street.THING_CLASSES)}
    boxes = torch.from_numpy(labels.boxes).float()
    rows = {int(t): i for i, t in enumerate(labels.track_ids)}
    person_rows = [rows[int(p)] for p in labels.person_ids]
    return {'boxes': boxes,
            'labels': torch.tensor([det[int(c)] for c in labels.labels], dtype=torch.int64),
            'person_boxes': boxes[person_rows].reshape(-1, 4),
            'keypoints': torch.from_numpy(labels.keypoints).float(),
            'head_sizes': torch.from_numpy(labels.head_sizes).float()}


def flip_targets(targets: Dict[str, torch.Tensor], width: int) -> Dict[str, torch.Tensor]:
    """Mirror targets left-right in an image ``width`` pixels wide (left/right joints swap)."""
    out = dict(targets)
    for key in ('boxes', 'person_boxes'):
        b = targets[key].clone()
        b[:, 0], b[:, 2] = width - targets[key][:, 2], width - targets[key][:, 0]
        out[key] = b
    kp = targets['keypoints'].clone()
    kp[..., 0] = width - kp[..., 0]
    for a, b in FLIP_PAIRS:
        kp[:, [a, b]] = kp[:, [b, a]]
    out['keypoints'] = kp
    return out


class StreetStills(Dataset):
    """Still frames of generated clips: item i is a random frame of clip i of ``split``.

    Returns ``(image uint8 (3, H, W), mask int64 (H, W))``, and with ``targets`` a third item,
    the detection and pose targets of :func:`frame_targets`. With ``flip`` a deterministic half
    of the items is mirrored. Items are a pure function of (seed, split, index).
    """

    def __init__(self, count: int, height: int, width: int, seed: int = 0,
                 split: str = 'train', flip: bool = True, targets: bool = False):
        """Index ``count`` clips of ``split``."""
        self.count, self.height, self.width = count, height, width
        self.seed, self.split, self.flip = seed, split, flip
        self.targets = targets
        self.classes = street.CLASSES

    def __len__(self) -> int:
        """Return the number of items."""
        return self.count

    def __getitem__(self, index: int):
        """Render item ``index``."""
        s = derive_seed(self.seed, self.split, index % self.count)
        rng = np.random.default_rng(s)
        t = int(rng.integers(0, street.CLIP_LENGTH))
        image, labels = street.StreetClip(s, self.height, self.width)[t]
        mask = labels.mask
        targets = frame_targets(labels) if self.targets else None
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
            targets = flip_targets(targets, self.width) if targets is not None else None
        item = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(mask)).long())
        return item + (targets,) if self.targets else item


class ClipStills(Dataset):
    """The labelled frames of a list of clips as still images (real datasets' training)."""

    def __init__(self, clips: Sequence[LabelledClip],
                 transform: Optional[Callable] = None):
        """Wrap ``clips``."""
        self.clips = list(clips)
        self.transform = transform

    def __len__(self) -> int:
        """Return the number of labelled frames."""
        return len(self.clips)

    def __getitem__(self, index: int):
        """Return ``(image uint8 (3, H, W), mask int64 (H, W))`` of clip ``index``."""
        clip = self.clips[index]
        image, mask = clip.frames[clip.labelled_index], clip.mask
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(mask)).long())


class DatasetFormatError(ValueError):
    """A dataset directory or file does not have the expected layout or content."""


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as RGB uint8 (OpenCV); raise DatasetFormatError if unreadable."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError('cannot read image %s' % path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class LazyFrames(Sequence):
    """Frames read from image files on access (optionally resized to ``size`` = (H, W))."""

    def __init__(self, paths: Sequence[str], size: Optional[tuple] = None):
        """Wrap ``paths`` (time order)."""
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.paths)

    def __getitem__(self, i):
        """Read frame ``i`` as RGB uint8."""
        image = read_rgb(self.paths[i])
        if self.size is not None:
            image, _ = resize_pair(image, None, *self.size)
        return image
