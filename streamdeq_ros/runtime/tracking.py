"""Instance ids for a stream's detections: greedy IoU association with the previous frame.

A detection that overlaps a previous detection of the same class (IoU at least the threshold)
keeps its id; the others get new ids. Ids are positive and never reused within a tracker; 0
means "no id" (a partial result matched to nothing). Plain numpy and torchvision, no ROS.
"""
import numpy as np
import torch
from torchvision.ops import box_iou


class IoUTracker:
    """Stable instance ids across the frames of one camera."""

    def __init__(self, iou_threshold: float = 0.3):
        """Match boxes whose IoU with a previous box of the same class is >= the threshold."""
        self.iou_threshold = float(iou_threshold)
        self.next_id = 1
        self.reset()

    def reset(self):
        """Forget the previous frame (ids already given are not reused)."""
        self.boxes = np.zeros((0, 4), np.float32)
        self.labels = np.zeros(0, np.int64)
        self.ids = np.zeros(0, np.uint32)

    def assign(self, boxes: np.ndarray, labels: np.ndarray, commit: bool = True) -> np.ndarray:
        """Return ids (K,) uint32 for boxes (K, 4) x1 y1 x2 y2 with class ``labels`` (K,).

        With ``commit`` the boxes become the previous frame and unmatched boxes get new ids;
        without it (partial results) nothing changes and unmatched boxes get 0.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        ids = np.zeros(len(boxes), np.uint32)
        if len(boxes) and len(self.boxes):
            iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(self.boxes)).numpy()
            iou[labels[:, None] != self.labels[None, :]] = 0.0
            taken = np.zeros(len(self.boxes), bool)
            for flat in np.argsort(-iou, axis=None):
                i, j = divmod(int(flat), len(self.boxes))
                if iou[i, j] < self.iou_threshold:
                    break
                if ids[i] == 0 and not taken[j]:
                    ids[i], taken[j] = self.ids[j], True
        if commit:
            for i in np.flatnonzero(ids == 0):
                ids[i] = self.next_id
                self.next_id += 1
            self.boxes, self.labels, self.ids = boxes, labels, ids.copy()
        return ids
