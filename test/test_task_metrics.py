"""mAP@50 (torchmetrics/pycocotools), PCKh@0.5 and the IoU tracker on known answers."""
import numpy as np
import pytest
import torch

from streamdeq_ros.runtime.tracking import IoUTracker
from streamdeq_ros.tools.metrics import DetectionScore, PoseScore

TRUTH = [{'boxes': torch.tensor([[10.0, 10.0, 30.0, 50.0], [60.0, 20.0, 100.0, 40.0]]),
          'labels': torch.tensor([1, 2])},
         {'boxes': torch.tensor([[5.0, 5.0, 25.0, 45.0]]), 'labels': torch.tensor([1])}]


def _pred(shift, scores=(0.9, 0.8)):
    out = []
    for t in TRUTH:
        b = t['boxes'].clone()
        b[:, [0, 2]] += shift
        out.append({'boxes': b, 'labels': t['labels'],
                    'scores': torch.tensor(scores[:len(b)])})
    return out


def test_map50_is_one_for_exact_boxes_and_zero_for_boxes_that_miss():
    exact = DetectionScore(['person', 'car'])
    exact.update(_pred(0.0), TRUTH)
    r = exact.compute()
    assert r['map50'] == pytest.approx(1.0) and r['per_class'] == {'person': 1.0, 'car': 1.0}
    # a 4 px shift of a 20 px wide person box: IoU 16/24 = 0.67 >= 0.5, still a hit
    near = DetectionScore(['person', 'car'])
    near.update(_pred(4.0), TRUTH)
    assert near.compute()['map50'] == pytest.approx(1.0)
    # 12 px: IoU 8/32 = 0.25 for the persons; the 40 px car keeps IoU 28/52 = 0.54
    far = DetectionScore(['person', 'car'])
    far.update(_pred(12.0), TRUTH)
    r = far.compute()
    assert r['per_class']['person'] == pytest.approx(0.0)
    assert r['per_class']['car'] == pytest.approx(1.0) and r['map50'] == pytest.approx(0.5)


def test_pckh_counts_joints_within_half_a_head_segment():
    truth = torch.zeros(2, 3, 3)
    truth[..., 2] = 2
    truth[1, 2, 2] = 0                                     # not annotated: not counted
    heads = torch.tensor([10.0, 20.0])
    pred = truth[..., :2].clone()
    pred[0, :, 0] += torch.tensor([4.9, 5.1, 0.0])        # limit 5 px for person 0
    pred[1, :, 1] += torch.tensor([9.0, 11.0, 50.0])      # limit 10 px; joint 2 not counted
    score = PoseScore(['a', 'b', 'c'])
    score.update(pred, truth, heads)
    r = score.compute()
    assert r['pckh'] == pytest.approx(3 / 5)
    assert r['per_class'] == {'a': 1.0, 'b': 0.0, 'c': 1.0}
    assert np.isnan(PoseScore(['a']).compute()['pckh'])   # nothing counted: not a number
    missed = PoseScore(['a', 'b', 'c'])                   # a person the detector missed
    missed.update(torch.full((2, 3, 3), float('nan')), truth, heads)
    assert missed.compute()['pckh'] == 0.0 and missed.total.sum() == 5


def test_tracker_keeps_ids_of_overlapping_boxes_of_the_same_class():
    tr = IoUTracker(iou_threshold=0.3)
    a = np.array([[0, 0, 10, 20], [50, 50, 70, 60]], np.float32)
    assert tr.assign(a, [1, 2]).tolist() == [1, 2]
    moved = a + [2, 0, 2, 0]
    # order changed, one box moved a little, a new car appeared, a person where a car was
    ids = tr.assign(np.vstack([moved[1], moved[0], [[100, 0, 120, 10]]]), [2, 1, 2])
    assert ids.tolist() == [2, 1, 3]
    # a partial result peeks: matched boxes get their ids, new ones 0, nothing is committed
    assert tr.assign(np.array([[100, 0, 120, 10], [52, 50, 72, 60]]), [1, 2],
                     commit=False).tolist() == [0, 2]
    assert tr.assign(np.array([[100, 0, 120, 10]]), [1]).tolist() == [4]
    tr.reset()
    assert tr.assign(np.array([[100, 0, 120, 10]]), [1]).tolist() == [5]   # never reused
    assert tr.assign(np.zeros((0, 4)), []).tolist() == []
