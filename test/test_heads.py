"""Detection (torchvision Faster R-CNN + FPN) and pose heads on the MDEQ state; their targets."""
import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from streamdeq_ros.data import street
from streamdeq_ros.data.clips import DET_CLASSES, flip_targets, frame_targets, StreetStills
from streamdeq_ros.model.heads.common import finest_features
from streamdeq_ros.model.heads.detection import CachedAnchorGenerator, mdeq_to_fpn_levels
from streamdeq_ros.model.heads.pose import CROP_ASPECT, crop_boxes, decode_heatmaps, \
    gaussian_targets
from streamdeq_ros.model.heads.segmentation import class_ids
from streamdeq_ros.model.mdeq import get_config
from streamdeq_ros.model.network import StreamDEQNet
from streamdeq_ros.tools.objective import task_losses
from streamdeq_ros.tools.training import head_specs, HEAD_WIDTHS

TASKS = ['segmentation', 'detection', 'pose']


@pytest.fixture(scope='module')
def net():
    specs = head_specs(TASKS, street.CLASSES, street.PALETTE.tolist())
    return StreamDEQNet(get_config('tiny'), specs)


def _batch(net, n=2):
    items = [StreetStills(8, 96, 192, targets=True)[i] for i in (0, 2)][:n]
    x = net.normalize(torch.stack([it[0] for it in items]))
    return x, torch.stack([it[1] for it in items]), [it[2] for it in items]


def _state(net, x, iters=2):
    u = net.backbone.inject(x)
    z = net.backbone.zeros(u)
    for _ in range(iters):
        z = net.backbone.f(z, u)
    return z


def test_the_fpn_reads_every_mdeq_scale_in_order(net):
    z = _state(net.eval(), torch.randn(1, 3, 96, 192))
    levels = mdeq_to_fpn_levels(z)
    assert list(levels) == ['0', '1', '2', '3'] and levels['2'] is z[2]
    head = net.heads['detection']
    assert head.image_size(z) == (96, 192)
    # the FPN's input channels are MDEQ's (the paper's only change to Faster R-CNN + FPN)
    assert [b[0].in_channels for b in head.fpn.inner_blocks] == \
        list(get_config('tiny').num_channels)


def test_training_losses_reach_the_backbone_through_the_shared_state(net):
    net.train()
    x, masks, targets = _batch(net)
    assert sum(len(t['boxes']) for t in targets) > 0
    assert sum(len(t['person_boxes']) for t in targets) > 0
    z = _state(net, x)
    losses = task_losses(net, z, masks, targets, pose_weight=100.0)
    assert set(losses) == {'seg', 'loss_objectness', 'loss_rpn_box_reg', 'loss_classifier',
                           'loss_box_reg', 'pose'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    net.zero_grad()
    (losses['loss_classifier'] + losses['pose']).backward()
    grad = net.backbone.fullstage.parameters().__next__().grad
    assert grad is not None and grad.abs().sum() > 0
    assert net.heads['segmentation'].last_layer[0].weight.grad is None   # not in that sum
    net.eval()


def test_inference_gives_boxes_in_the_image_and_keypoints_per_person(net):
    net.eval()
    x, _, targets = _batch(net)
    with torch.inference_mode():
        z = _state(net, x)
        p = net.perceive(z, score_threshold=0.0)
        given = net.perceive(z, heads=['pose'], person_boxes=[t['person_boxes']
                                                              for t in targets])
    assert p.seg_logits.shape == (2, len(street.CLASSES), 24, 48)
    for d, keep in zip(p.detections, p.person_index):
        assert d['boxes'].shape[1] == 4 and len(d['boxes']) <= 20
        assert (d['boxes'][:, :2] >= 0).all() and (d['boxes'][:, 2] <= 192).all()
        assert set(d['labels'].tolist()) <= {1, 2}
        assert (d['labels'][keep] == net.person_label).all()
    assert [k.shape[0] for k in p.keypoints] == [len(k) for k in p.person_index]
    assert [k.shape for k in given.keypoints] == [(len(t['person_boxes']), 16, 3)
                                                  for t in targets]
    assert given.detections is None and given.seg_logits is None
    with pytest.raises(ValueError, match='person boxes'):
        net.perceive(z, heads=['pose'])


def test_heatmap_targets_decode_back_to_the_joints():
    boxes = torch.tensor([[20.0, 10.0, 34.0, 50.0], [100.0, 30.0, 112.0, 62.0]])
    crops = crop_boxes(boxes)
    w = crops[:, 2] - crops[:, 0]
    h = crops[:, 3] - crops[:, 1]
    assert torch.allclose(w / h, torch.full((2,), CROP_ASPECT))
    assert (crops[:, :2] <= boxes[:, :2]).all() and (crops[:, 2:] >= boxes[:, 2:]).all()
    g = torch.Generator().manual_seed(0)
    kp = torch.zeros(2, 16, 3)
    size = boxes[:, 2:] - boxes[:, :2]
    kp[..., :2] = boxes[:, None, :2] + torch.rand(2, 16, 2, generator=g) * size[:, None]
    kp[..., 2] = 2
    kp[0, 3, 2] = 0                                       # not annotated: weight 0
    heat, weight = gaussian_targets(kp, crops, (32, 24))
    assert heat.shape == (2, 16, 32, 24) and weight[0, 3] == 0 and weight.sum() == 31
    out = decode_heatmaps(heat, crops)
    cell = (w / 24)[:, None]
    err = (out[..., :2] - kp[..., :2]).norm(dim=-1)
    assert (err <= 0.5 * cell * 2 ** 0.5).all()            # within half a heatmap cell
    assert (out[..., 2] > 0.5).all()


def test_targets_follow_a_mirrored_frame():
    image, labels = street.StreetClip(4, 96, 192)[19]
    t = frame_targets(labels)
    assert DET_CLASSES == ('person', 'car')
    assert set(t['labels'].tolist()) <= {1, 2}
    assert len(t['person_boxes']) == len(t['keypoints']) == int((t['labels'] == 1).sum())
    f = flip_targets(t, 192)
    assert torch.allclose(f['boxes'][:, 0], 192 - t['boxes'][:, 2])
    ankle_r, ankle_l = street.JOINTS.index('r_ankle'), street.JOINTS.index('l_ankle')
    assert torch.allclose(f['keypoints'][:, ankle_l, 0], 192 - t['keypoints'][:, ankle_r, 0])
    back = flip_targets(f, 192)
    for key in ('boxes', 'person_boxes', 'keypoints'):
        assert torch.allclose(back[key], t[key])
    # the dataset mirrors image, mask and targets together
    ds = StreetStills(40, 96, 192, targets=True)
    flipped = next(i for i in range(40)
                   if not np.array_equal(ds[i][1].numpy(),
                                         StreetStills(40, 96, 192, flip=False)[i][1].numpy()))
    img, mask, tg = ds[flipped]
    plain = StreetStills(40, 96, 192, flip=False, targets=True)[flipped][2]
    assert torch.allclose(tg['boxes'], flip_targets(plain, 192)['boxes'])


def test_perceive_builds_the_shared_features_once_and_matches_each_head_alone(net, monkeypatch):
    import streamdeq_ros.model.network as network
    net.eval()
    x, _, targets = _batch(net)
    boxes = [t['person_boxes'] for t in targets]
    calls = []

    def counted(z):
        calls.append(1)
        return finest_features(z)

    monkeypatch.setattr(network, 'finest_features', counted)
    with torch.inference_mode():
        z = _state(net, x)
        p = net.perceive(z, heads=['segmentation', 'pose'], person_boxes=boxes)
        alone_seg = net.heads['segmentation'](z)
        alone_heat, crops = net.heads['pose'](z, boxes)
    assert len(calls) == 1
    assert torch.equal(p.seg_logits, alone_seg)
    size = (x.shape[-2], x.shape[-1])
    assert torch.equal(torch.cat(p.keypoints), decode_heatmaps(alone_heat, crops, size))


def test_keypoints_stay_inside_the_image_and_scores_in_0_1():
    # a person at the right and bottom edges: the crop reaches past the image, and heatmaps
    # peak outside it, above 1 (a trained head's maximum is not bounded)
    boxes = torch.tensor([[150.0, 40.0, 192.0, 96.0], [-10.0, -5.0, 20.0, 30.0]])
    crops = crop_boxes(boxes)
    heat = torch.zeros(2, 16, 32, 24)
    heat[0, :, 30, 22] = 1.17                          # near the crop's far corner
    heat[1, :, 0, 0] = -0.2                            # everything below 0
    heat[1, :, 1, 1] = -0.1
    free = decode_heatmaps(heat, crops)
    assert (free[0, :, 0] > 192).all() and (free[1, :, :2] < 0).all()   # outside, unclamped
    out = decode_heatmaps(heat, crops, (96, 192))
    assert (out[..., 0] >= 0).all() and (out[..., 0] < 192).all()
    assert (out[..., 1] >= 0).all() and (out[..., 1] < 96).all()
    assert (out[0, :, 2] == 1.0).all() and (out[1, :, 2] == 0.0).all()


def test_class_ids_are_the_first_maximal_class_at_the_requested_size():
    logits = torch.randn(2, 7, 12, 24)
    logits[:, 5] = logits[:, 2]                # ties: the first maximal class wins, as argmax
    ids = class_ids(logits, (48, 96))
    ref = torch.nn.functional.interpolate(logits, size=(48, 96), mode='bilinear',
                                          align_corners=False).argmax(1)
    assert ids.shape == (2, 48, 96) and torch.equal(ids, ref)
    assert (ids != 5).all()


def test_cached_anchors_equal_torchvisions_and_follow_the_frame_size():
    sizes, ratios = ((12,), (24,)), ((0.5, 1.0),) * 2
    cached, plain = CachedAnchorGenerator(sizes, ratios), AnchorGenerator(sizes, ratios)
    for h, w, n in ((96, 192, 2), (96, 192, 1), (64, 128, 3), (96, 192, 2)):
        images = ImageList(torch.zeros(n, 3, h, w), [(h, w)] * n)
        feats = [torch.zeros(n, 4, h // 4, w // 4), torch.zeros(n, 4, h // 8, w // 8)]
        got, want = cached(images, feats), plain(images, feats)
        assert len(got) == n and all(torch.equal(a, b) for a, b in zip(got, want))
    first = cached(images, feats)[0]
    assert cached(images, feats)[0] is first   # unchanged geometry: no recomputation


def test_head_widths_come_from_the_card_and_old_cards_keep_the_first_widths():
    cfg = get_config('tiny')
    specs = head_specs(TASKS, street.CLASSES, street.PALETTE.tolist(),
                       {'fpn_channels': 8, 'representation': 24, 'width': 12})
    heads = StreamDEQNet(cfg, specs).heads
    assert heads['detection'].fpn.layer_blocks[0][0].out_channels == 8
    assert heads['detection'].roi_heads.box_head.fc7.out_features == 24
    assert heads['pose'].final.in_channels == 12
    new = StreamDEQNet(cfg, head_specs(TASKS, street.CLASSES, street.PALETTE.tolist())).heads
    assert new['detection'].fpn.layer_blocks[0][0].out_channels == HEAD_WIDTHS['fpn_channels']
    assert new['pose'].final.in_channels == HEAD_WIDTHS['width']
    for spec in specs.values():               # a card written before the widths existed
        for key in ('fpn_channels', 'representation', 'width'):
            spec.pop(key, None)
    old = StreamDEQNet(cfg, specs).heads
    assert old['detection'].fpn.layer_blocks[0][0].out_channels == 32
    assert old['detection'].roi_heads.box_head.fc7.out_features == 128
    assert old['pose'].final.in_channels == 64
