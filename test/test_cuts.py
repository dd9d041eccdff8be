"""Hard cuts: the detector on generated clips, and the pipeline restarting a camera at one."""
import numpy as np
import pytest
import torch

from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.runtime.cuts import CutDetector, THUMB, thumbnail
from streamdeq_ros.runtime.pipeline import FramePipeline


def test_detector_fires_at_the_cut_and_nowhere_else():
    fired_at = []
    for seed in range(6):
        clip = StreetClip(seed, 96, 192, cut_at=12)
        det = CutDetector()
        fired_at.append([t for t in range(len(clip)) if det.update(clip[t][0])])
    assert fired_at == [[12]] * 6
    for seed in range(6, 12):                    # clips without a cut: no firing at all
        clip = StreetClip(seed, 96, 192)
        det = CutDetector()
        assert not any(det.update(clip[t][0]) for t in range(len(clip)))
        assert det.cuts == 0 and np.isfinite(det.last_score)


def test_detector_history_and_validation():
    det = CutDetector(threshold=3.0, window=4)
    still = np.full((480, 640, 3), 100, np.uint8)
    assert thumbnail(still).shape == (THUMB[1], THUMB[0])
    assert not det.update(still) and np.isnan(det.last_score)   # no previous frame
    for _ in range(3):
        assert not det.update(still)
    # a still camera's tiny changes are floored: a small change is not a cut ...
    assert not det.update(still + 3)
    # ... a change to another picture is
    assert det.update(np.full((480, 640, 3), 220, np.uint8)) and det.cuts == 1
    det.reset()
    assert det.previous is None and len(det.history) == 0
    for bad in ({'threshold': 1.0}, {'window': 0}, {'floor': 0.0}, {'min_history': 9}):
        with pytest.raises(ValueError):
            CutDetector(**bad)


@pytest.fixture(scope='module')
def pipeline():
    net, card = load_net(bundled_checkpoint())
    return FramePipeline(net, card)


def test_pipeline_restarts_a_camera_at_a_cut_and_only_that_camera(pipeline):
    h, w = pipeline.input_size
    cut_clip, calm = StreetClip(3, h, w, cut_at=6), StreetClip(4, h, w)
    cams = [pipeline.new_session('cut'), pipeline.new_session('calm')]
    detectors = [CutDetector(), CutDetector()]
    for t in range(8):
        outs = pipeline.process_batch(cams, [cut_clip[t][0], calm[t][0]], iters=2,
                                      cut_detectors=detectors)
        assert [o.cut for _, o in outs] == [t == 6, False]
        if t == 6:
            cut_state = [z.clone() for z in cams[0].state]
    assert cams[0].stats.cut_resets == 1 and cams[1].stats.cut_resets == 0
    # at the cut the camera solved from zeros: the state a fresh session gets on that frame
    fresh = pipeline.new_session('fresh')
    pipeline.process(fresh, cut_clip[6][0], iters=2)
    for a, b in zip(cut_state, fresh.state):
        assert torch.allclose(a, b, atol=1e-5)
    # without detectors nothing restarts (today's warm start across the cut)
    warm = pipeline.new_session('warm')
    for t in range(7):
        _, out = pipeline.process(warm, cut_clip[t][0], iters=2)
    assert not out.cut and warm.stats.cut_resets == 0
    assert not torch.allclose(warm.state[0], fresh.state[0], atol=1e-3)
