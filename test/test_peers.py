"""Peers: torchvision's LR-ASPP and Faster R-CNN trained, saved, scored and timed by streamdeq."""
import json

import pytest
import torch

from streamdeq_ros.data.clips import street_clips
from streamdeq_ros.data.street import CLASSES
from streamdeq_ros.model.checkpoint import CheckpointError
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.tools.cli import main
from streamdeq_ros.tools.peers import build_peer, load_peer, peer_frame_ms, peer_scores


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('peers')
    for name in ('lraspp', 'fasterrcnn'):
        assert main(['train-peer', '--peer', name, '--steps', '3', '--val-every', '2',
                     '--val-clips', '2', '--train-clips', '64', '--threads', '1',
                     '--out', str(root / name)]) == 0
    return root


def test_training_writes_a_safe_checkpoint_and_resumes(trained):
    for name in ('lraspp', 'fasterrcnn'):
        blob = torch.load(trained / name / 'model.pt', weights_only=True)
        card = blob['card']
        assert card['peer'] == name and card['training']['steps'] == 3
        assert card['input'] == {'height': 96, 'width': 192, 'color': 'rgb'}
        assert card['training']['pretrained'] is False
        assert [h['step'] for h in card['metrics']['history']] == [2, 3]
    log = (trained / 'lraspp' / 'train_log.csv').read_text().splitlines()
    assert log[0] == 'step,loss,lr,seconds,val'
    assert main(['train-peer', '--peer', 'lraspp', '--steps', '4', '--val-every', '2',
                 '--val-clips', '2', '--train-clips', '64', '--threads', '1', '--resume',
                 '--out', str(trained / 'lraspp')]) == 0
    card = torch.load(trained / 'lraspp' / 'model.pt', weights_only=True)['card']
    assert card['training']['steps'] == 4


def test_a_peer_is_scored_and_timed_like_a_model(trained):
    clips = street_clips(2, 96, 192, split='val')
    seg = load_peer(str(trained / 'lraspp' / 'model.pt'))
    det = load_peer(str(trained / 'fasterrcnn' / 'model.pt'))
    assert seg.task == 'segmentation' and det.task == 'detection'
    s = peer_scores(seg, clips, CLASSES)
    assert 0.0 <= s['miou'] <= 1.0 and set(s['per_class_miou']) == set(CLASSES)
    d = peer_scores(det, clips, CLASSES)
    assert 0.0 <= d['map50'] <= 1.0 or d['map50'] != d['map50']        # NaN: nothing found
    assert peer_frame_ms(seg, clips[0], frames=2) > 0
    # a peer's weights go through torchvision's own model: they give the same logits
    fresh = build_peer('lraspp', 96, 192).eval()
    fresh.load_state_dict(seg.net.state_dict())
    x = torch.rand(1, 3, 96, 192)
    with torch.inference_mode():
        assert torch.equal(fresh(x)['out'], seg.net(x)['out'])


def test_wrong_checkpoints_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(CheckpointError, match='is not a peer checkpoint'):
        load_peer(bundled_checkpoint())
    with pytest.raises(CheckpointError, match='does not exist'):
        load_peer(str(tmp_path / 'none.pt'))
    with pytest.raises(ValueError, match='unknown peer'):
        build_peer('yolo', 96, 192)


def test_eval_puts_peers_beside_the_streamdeq_curve(trained, tmp_path):
    out = tmp_path / 'eval'
    assert main(['eval', '--model', 'MT=' + bundled_checkpoint('multi_tiny_sur'),
                 '--peer', 'LRASPP=%s' % (trained / 'lraspp' / 'model.pt'),
                 '--peer', 'FRCNN=%s' % (trained / 'fasterrcnn' / 'model.pt'),
                 '--clips', '2', '--iters', '1', '2', '--offsets', '0,3', '--fps-frames', '2',
                 '--fps-repeats', '1', '--threads', '1', '--out', str(out)]) == 0
    results = json.loads((out / 'results.json').read_text())
    assert set(results['peers']) == {'LRASPP', 'FRCNN'}
    assert results['peers']['LRASPP']['ms'] > 0 and 'miou' in results['peers']['LRASPP']
    assert 'fps_det_only' in results['models']['MT']
    table = (out / 'accuracy_cost.md').read_text()
    assert '| MT M=1 |' in table and 'LRASPP (lraspp, ' in table
    assert 'steps, single frame)' in table
    assert '| mAP@50 |' in table and (out / 'accuracy_vs_ms.png').stat().st_size > 0
    with pytest.raises(SystemExit, match='--peer needs NAME=PATH'):
        main(['eval', '--model', 'MT=' + bundled_checkpoint('multi_tiny_sur'), '--peer',
              'nothing', '--out', str(tmp_path / 'x')])


def test_eval_streaming_scores_peers_as_single_frame_models(trained, tmp_path):
    out = tmp_path / 'streaming'
    assert main(['eval-streaming', '--peer', 'SEG=%s' % (trained / 'lraspp' / 'model.pt'),
                 '--peer', 'DET=%s' % (trained / 'fasterrcnn' / 'model.pt'),
                 '--rates', '10', '--clips', '1', '--duration', '1', '--warmup', '0.3',
                 '--threads', '1', '--out', str(out)]) == 0
    models = json.loads((out / 'results.json').read_text())['models']
    seg, det = models['SEG (single-frame)'], models['DET (single-frame)']
    assert seg['input'] == det['input'] == [96, 192] and seg['runtime'] == 'torch'
    seg_run, det_run = seg['runs']['10.0'][0], det['runs']['10.0'][0]
    assert set(seg_run['stream']) == {'miou'} and set(det_run['stream']) == {'map50'}
    assert 0.0 <= seg_run['stream']['miou'] <= 1.0
    assert seg_run['frames'] == det_run['frames'] == 10 and seg_run['scored'] > 0
    assert '| SEG (single-frame) | 192×96 |' in (out / 'table.md').read_text()
