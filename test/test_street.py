"""The procedural street-scene generator: determinism, label consistency, motion and cuts."""
import numpy as np
import pytest

from streamdeq_ros.data import street
from streamdeq_ros.data.clips import derive_seed, street_clips, StreetStills


def test_same_seed_same_clip_and_different_seed_different_clip():
    a, b, c = street.StreetClip(5, 64, 128), street.StreetClip(5, 64, 128), \
        street.StreetClip(6, 64, 128)
    for t in (0, 19):
        (ia, la), (ib, lb), (ic, _) = a[t], b[t], c[t]
        assert np.array_equal(ia, ib) and np.array_equal(la.mask, lb.mask)
        assert np.array_equal(la.boxes, lb.boxes) and np.array_equal(la.keypoints, lb.keypoints)
        assert np.abs(ia.astype(int) - ic.astype(int)).mean() > 10


def test_scene_is_the_same_at_two_resolutions():
    _, small = street.StreetClip(3, 64, 128)[10]
    _, large = street.StreetClip(3, 128, 256)[10]
    down = large.mask[::2, ::2]
    assert (down == small.mask).mean() > 0.9


def test_labels_agree_with_the_mask_and_instances():
    clip = street.StreetClip(11, 96, 192)
    seen = set()
    for t in range(0, 30, 3):
        image, lab = clip[t]
        assert image.shape == (96, 192, 3) and image.dtype == np.uint8
        assert lab.mask.shape == (96, 192) and lab.mask.max() < len(street.CLASSES)
        seen |= set(np.unique(lab.mask).tolist())
        for box, cls, track in zip(lab.boxes, lab.labels, lab.track_ids):
            ys, xs = np.nonzero(lab.instances == track + 1)
            assert len(xs) > 0
            # the object's visible pixels have its class and lie inside its box
            assert (lab.mask[ys, xs] == cls).all()
            assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
            assert ys.min() >= box[1] - 1 and ys.max() <= box[3] + 1
        for kp, pid, head in zip(lab.keypoints, lab.person_ids, lab.head_sizes):
            assert pid in lab.track_ids and head > 0
            for x, y, v in kp:
                if v == 2:      # visible joints are on the person's own pixels
                    yi, xi = int(y), int(x)
                    win = lab.instances[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2]
                    assert (win == pid + 1).any()
                if v == 0:
                    assert not (0 <= x < 192 and 0 <= y < 96)
    assert {street.ROAD, street.SKY, street.BUILDING} <= seen


def test_consecutive_frames_change_little_and_tracks_persist():
    clip = street.StreetClip(2, 96, 192)
    (_, l0), (_, l1) = clip[18], clip[19]
    assert (l0.mask == l1.mask).mean() > 0.85
    assert set(l0.track_ids.tolist()) & set(l1.track_ids.tolist())


def test_hard_cut_switches_the_scene():
    clip = street.StreetClip(4, 96, 192, cut_at=10)
    (a, la), (b, lb), (c, lc) = clip[8], clip[9], clip[10]
    assert (la.scene, lb.scene, lc.scene) == (0, 0, 1)
    step = np.abs(a.astype(int) - b.astype(int)).mean()
    cut = np.abs(b.astype(int) - c.astype(int)).mean()
    assert cut > 3 * step
    assert not set(lb.track_ids.tolist()) & set(lc.track_ids.tolist())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='cut_at'):
        street.StreetClip(0, 64, 64, cut_at=30)
    with pytest.raises(ValueError, match='16x16'):
        street.StreetClip(0, 8, 64)
    with pytest.raises(IndexError):
        street.StreetClip(0, 64, 64)[30]
    with pytest.raises(ValueError, match='split'):
        derive_seed(0, 'holdout', 1)


def test_splits_do_not_share_clips_and_stills_are_deterministic():
    train = {derive_seed(0, 'train', i) for i in range(200)}
    val = {derive_seed(0, 'val', i) for i in range(200)}
    assert not train & val
    ds = StreetStills(10, 64, 128, seed=1)
    (x1, m1), (x2, m2) = ds[3], ds[3]
    assert x1.shape == (3, 64, 128) and m1.shape == (64, 128)
    assert (x1 == x2).all() and (m1 == m2).all()
    clips = street_clips(2, 64, 128, split='val')
    assert len(clips[0].frames) == 30 and clips[0].labelled_index == 19
    assert np.array_equal(clips[0].mask, clips[0].meta['labels'][19].mask)
