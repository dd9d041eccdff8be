"""FramePipeline: camera frame -> class mask at input or network resolution, per-camera state."""
import numpy as np
import pytest

from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.model.network import build_net
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.runtime.pipeline import FramePipeline


@pytest.fixture(scope='module')
def pipeline():
    net, card = load_net(bundled_checkpoint())
    return FramePipeline(net, card)


def test_mask_at_input_and_network_resolution_with_partials(pipeline):
    frame, labels = StreetClip(7, 150, 300)[0]         # not a multiple of 32: resized
    session = pipeline.new_session('cam0')
    partials = []
    result, seg = pipeline.process(session, frame, iters=4, partial_at=[1, 2],
                                   on_partial=partials.append)
    assert seg.mask.shape == (150, 300) and seg.mask.dtype == np.uint8
    assert [p.iteration for p in partials] == [1, 2] and all(p.partial for p in partials)
    assert partials[0].mask.shape == (150, 300)
    assert result.iters == 4 and seg.iteration == 4 and not seg.partial
    assert (seg.mask == labels.mask).mean() > 0.7      # the bundled model segments the street
    _, net_seg = pipeline.process(session, frame, iters=1, mask_resolution='network')
    assert net_seg.mask.shape == pipeline.input_size
    colour = pipeline.colorize(seg.mask)
    assert colour.shape == (150, 300, 3)
    for k in np.unique(seg.mask):
        assert (colour[seg.mask == k] == pipeline.palette[k]).all()
    assert tuple(pipeline.palette[pipeline.classes.index('sky')]) == (70, 130, 180)
    assert pipeline.overlay(frame, net_seg).shape == frame.shape
    # the default model's other heads read the same state: boxes and joints in camera pixels
    assert net_seg.detections is not None and len(seg.detections.boxes) > 0
    assert (seg.detections.boxes[:, 2] <= 300).all() and (seg.detections.boxes[:, 3] <= 150).all()
    assert seg.keypoints.shape == (len(seg.persons.ids), 16, 3)
    assert set(seg.persons.labels.tolist()) <= {pipeline.det_classes.index('person') + 1}
    assert pipeline.overlay(frame, seg).shape == frame.shape


def test_a_read_only_frame_at_the_input_size_is_taken_without_a_warning(pipeline):
    import warnings
    frame = np.zeros(pipeline.input_size + (3,), np.uint8)
    frame.flags.writeable = False                      # as a view of a message's bytes is
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        x = pipeline.prepare(frame)
    assert x.shape == (1, 3) + pipeline.input_size


def test_cameras_keep_independent_states(pipeline):
    a, b = pipeline.new_session('a'), pipeline.new_session('b')
    clip_a, clip_b = StreetClip(1, 96, 192), StreetClip(2, 96, 192)
    res_b = []
    for t in range(3):
        pipeline.process(a, clip_a[t][0], iters=2)
        res_b.append(pipeline.process(b, clip_b[t][0], iters=2)[0].final_residual)
    fresh = pipeline.new_session('b2')
    alone = [pipeline.process(fresh, clip_b[t][0], iters=2)[0].final_residual for t in range(3)]
    assert res_b == pytest.approx(alone, rel=1e-5)


def test_a_pose_head_without_persons_to_read_is_refused_at_start(pipeline):
    card = dict(pipeline.card)
    card['heads'] = dict(card['heads'])
    card['heads']['pose'] = dict(card['heads']['pose'], person_class='cyclist')
    net = build_net(card)
    with pytest.raises(ValueError, match="no 'cyclist' class for the pose head"):
        FramePipeline(net, card)
    del card['heads']['detection']
    with pytest.raises(ValueError, match='pose head but no detection head'):
        FramePipeline(build_net(card), card)


def test_bad_settings_are_refused(pipeline):
    with pytest.raises(ValueError, match='multiples of 32'):
        FramePipeline(pipeline.net, pipeline.card, input_size=(100, 192))
    with pytest.raises(ValueError, match='mask_resolution'):
        pipeline.process(pipeline.new_session('x'), np.zeros((96, 192, 3), np.uint8),
                         mask_resolution='camera')


def test_only_the_named_heads_are_read_and_give_what_every_head_gives(pipeline):
    from streamdeq_ros.runtime.tracking import IoUTracker
    clip = StreetClip(11, 120, 240)
    every, some = pipeline.new_session('every'), pipeline.new_session('some')
    t_every, t_some = IoUTracker(), IoUTracker()
    assert pipeline.heads_for(['pose']) == ('detection', 'pose')     # pose reads the persons
    assert pipeline.heads_for([]) == ()
    with pytest.raises(ValueError, match='no optical_flow head'):
        pipeline.heads_for(['segmentation', 'optical_flow'])
    with pytest.raises(ValueError, match='no optical_flow head'):     # before the solve
        pipeline.process(some, clip[0][0], heads=['optical_flow'])
    assert some.stats.frames == 0
    ids = []
    for t, heads in enumerate([None, ['segmentation'], [], ['detection'], ['pose']]):
        partials = []
        _, full = pipeline.process(every, clip[t][0], iters=2, tracker=t_every)
        _, part = pipeline.process(some, clip[t][0], iters=2, tracker=t_some, heads=heads,
                                   partial_at=[1], partial_heads=['segmentation'],
                                   on_partial=partials.append)
        read = set(pipeline.heads_for(heads))
        assert (part.mask is not None) == ('segmentation' in read)
        assert (part.detections is not None) == ('detection' in read)
        assert (part.keypoints is not None) == ('pose' in read)
        assert partials[0].mask is not None and partials[0].detections is None
        if part.mask is not None:
            assert (part.mask == full.mask).all()
        if part.detections is not None:
            np.testing.assert_allclose(part.detections.boxes, full.detections.boxes, atol=1e-4)
            ids.append(part.detections.ids)
        if part.keypoints is not None:
            np.testing.assert_allclose(part.keypoints, full.keypoints, atol=1e-4)
    # frames 1 and 2 read no detections: the tracks of frame 0 were forgotten, and frame 3's
    # boxes got new ids (never one of frame 0's) while frame 4 kept frame 3's
    assert len(ids) == 3 and all(len(i) for i in ids)
    assert not set(ids[1].tolist()) & set(ids[0].tolist())
    assert set(ids[2].tolist()) <= set(ids[1].tolist())


def test_partial_detections_keep_ids_from_the_tracks_refined_frames_advance(pipeline):
    from streamdeq_ros.runtime.tracking import IoUTracker
    clip = StreetClip(11, 120, 240)
    session, tracker, partials = pipeline.new_session('p'), IoUTracker(), []
    for t in range(3):
        _, out = pipeline.process(session, clip[t][0], iters=2, tracker=tracker,
                                  heads=['segmentation'], partial_at=[1],
                                  partial_heads=['detection'], on_partial=partials.append)
        assert out.detections is not None and out.keypoints is None
    assert partials[-1].detections is not None and partials[-1].mask is None
    assert (partials[-1].detections.ids > 0).any()      # matched to the refined tracks
