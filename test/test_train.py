"""Training: the IL/UR/SUR schedules, the 1-step implicit gradient, checkpoints and resume."""
import json
import os

import pytest
import torch

from dataset_fixtures import write_cityscapes
from streamdeq_ros.data import street
from streamdeq_ros.model.checkpoint import load_net, read_checkpoint
from streamdeq_ros.model.mdeq import get_config
from streamdeq_ros.model.network import StreamDEQNet
from streamdeq_ros.tools.cli import main
from streamdeq_ros.tools.objective import draw_unrolls, forward_train

SMALL = ['--height', '32', '--width', '64', '--batch-size', '2', '--val-clips', '2',
         '--train-clips', '16', '--unroll', '3', '--f-thres', '3', '--threads', '2']


def test_unroll_schedules():
    sur = [draw_unrolls('sur', s, 0, 20) for s in range(400)]
    assert min(sur) == 1 and max(sur) == 20 and len(set(sur)) == 20
    assert sur == [draw_unrolls('sur', s, 0, 20) for s in range(400)]      # reproducible
    assert sur != [draw_unrolls('sur', s, 1, 20) for s in range(400)]      # seeded
    assert {draw_unrolls('ur', s, 0, 20) for s in range(50)} == {20}


def test_implicit_step_backpropagates_through_one_application_of_f():
    net = StreamDEQNet(get_config('tiny'), {'segmentation': {'num_classes': 3}}).train()
    x = torch.randn(2, 3, 32, 32)
    z, n_f = forward_train(net, x, 'il', 0, 4, implicit=True)
    logits = net.heads['segmentation'](z)
    assert n_f == 6 and logits.shape == (2, 3, 8, 8)
    logits.sum().backward()
    grads = [p.grad for p in net.backbone.fullstage.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert net.backbone.downsample[0].weight.grad.abs().sum() > 0      # through u


@pytest.mark.parametrize('variant', ['sur', 'ur', 'il'])
def test_train_writes_a_loadable_model_with_a_card(tmp_path, variant):
    out = str(tmp_path / variant)
    code = main(['train', '--variant', variant, '--steps', '3', '--val-every', '2',
                 '--pretrain-steps', '1', '--out', out] + SMALL)
    assert code == 0
    net, card = load_net(os.path.join(out, 'model.pt'))
    assert card['variant'] == variant and card['task'] == 'segmentation'
    assert card['heads']['segmentation']['classes'] == list(street.CLASSES)
    assert card['training']['steps'] == 3 and card['training']['data_seed'] == 0
    assert card['training']['command'].startswith('streamdeq train --variant %s' % variant)
    assert [h['step'] for h in card['metrics']['history']] == [2, 3]
    assert 0 <= card['metrics']['val_single_frame']['miou'] <= 1
    assert card['inference']['solver'] == ('broyden' if variant == 'il' else 'unroll')
    with open(os.path.join(out, 'model_card.json')) as fh:
        assert json.load(fh)['variant'] == variant
    with open(os.path.join(out, 'train_log.csv')) as fh:
        assert fh.readline().startswith('step,loss,unrolls')
    assert not net.training


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    straight, pieces = str(tmp_path / 'a'), str(tmp_path / 'b')
    args = ['train', '--variant', 'sur', '--steps', '4', '--val-every', '10'] + SMALL
    assert main(args + ['--out', straight]) == 0
    assert main(args + ['--out', pieces, '--stop-after', '2']) == 0
    assert not os.path.exists(os.path.join(pieces, 'model.pt'))
    assert read_checkpoint(os.path.join(pieces, 'last.pt'))['step'] == 2
    assert main(args + ['--out', pieces, '--resume']) == 0
    a = read_checkpoint(os.path.join(straight, 'model.pt'))['state_dict']
    b = read_checkpoint(os.path.join(pieces, 'model.pt'))['state_dict']
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_on_a_cityscapes_layout(tmp_path):
    write_cityscapes(tmp_path / 'cs', 'train', seq='000001', frame=19)
    write_cityscapes(tmp_path / 'cs', 'train', seq='000002', frame=119)
    write_cityscapes(tmp_path / 'cs', 'val')
    out = str(tmp_path / 'm')
    assert main(['train', '--data', 'cityscapes:%s' % (tmp_path / 'cs'), '--steps', '2',
                 '--out', out] + SMALL) == 0
    net, card = load_net(os.path.join(out, 'model.pt'))
    assert card['heads']['segmentation']['classes'][:3] == ['road', 'sidewalk', 'building']
    assert net.heads['segmentation'].num_classes == 19
    assert len(card['heads']['segmentation']['palette']) == 19
    with pytest.raises(SystemExit, match='not a Cityscapes root'):
        main(['train', '--data', 'cityscapes:%s' % (tmp_path / 'none'), '--out', out] + SMALL)


def test_bad_sizes_are_refused():
    with pytest.raises(SystemExit, match='multiples of 32'):
        main(['train', '--height', '40', '--out', '/nonexistent'])
    with pytest.raises(SystemExit, match='--pose-width must be >= 1'):
        main(['train', '--pose-width', '0', '--out', '/nonexistent'])


def test_multi_task_training_from_a_segmentation_model_then_streaming_eval(tmp_path):
    seg = str(tmp_path / 'seg')
    assert main(['train', '--steps', '1', '--val-every', '5', '--out', seg] + SMALL) == 0
    out = str(tmp_path / 'multi')
    size = ['--height', '64', '--width', '128', '--val-clips', '8']
    assert main(['train', '--tasks', 'pose,segmentation,detection', '--init',
                 os.path.join(seg, 'model.pt'), '--steps', '2', '--val-every', '2',
                 '--pose-width', '8', '--out', out] + SMALL + size) == 0
    net, card = load_net(os.path.join(out, 'model.pt'))
    assert card['task'] == 'segmentation+detection+pose'
    assert card['heads']['pose']['width'] == 8 and net.heads['pose'].final.in_channels == 8
    assert list(net.heads) == ['segmentation', 'detection', 'pose']
    assert card['heads']['detection']['classes'] == ['person', 'car']
    assert card['heads']['pose']['joints'] == list(street.JOINTS)
    assert card['training']['init'] == os.path.join(seg, 'model.pt')
    val = card['metrics']['val_single_frame']
    assert all(0 <= val[k] <= 1 for k in ('miou', 'map50', 'pckh'))
    # the backbone started from the segmentation model: one step moved it, but not far
    a = read_checkpoint(os.path.join(seg, 'model.pt'))['state_dict']
    b = read_checkpoint(os.path.join(out, 'model.pt'))['state_dict']
    key = 'backbone.stage0.0.weight'
    assert (a[key] - b[key]).abs().max() < 0.05 * a[key].abs().max() + 1e-2

    ev = str(tmp_path / 'eval')
    assert main(['eval', '--model', 'MT=%s' % os.path.join(out, 'model.pt'), '--clips', '2',
                 '--iters', '1', '2', '--offsets', '0,2', '--fps-frames', '2',
                 '--fps-repeats', '1', '--out', ev, '--threads', '2', '--height', '64',
                 '--width', '128']) == 0
    with open(os.path.join(ev, 'results.json')) as fh:
        res = json.load(fh)['models']['MT']
    assert set(res['metrics']) == {'miou', 'map50', 'pckh', 'pckh_det'}
    assert set(res['metrics']['pckh']['curves']) == {'1', '2'}
    assert set(res['fps_seg_only']) == set(res['fps']) == {'1', '2', 'baseline'}
    table = open(os.path.join(ev, 'tasks_table.md')).read()
    assert '| MT | M=2 |' in table and 'PCKh@0.5' in table and 'mAP@50' in table
    for metric in ('map50', 'pckh'):
        assert os.path.getsize(os.path.join(ev, '%s_vs_offset.png' % metric)) > 1000


def test_bad_task_lists_are_refused(tmp_path):
    with pytest.raises(SystemExit, match='comma-separated subset'):
        main(['train', '--tasks', 'segmentation,depth', '--out', str(tmp_path)] + SMALL)
    with pytest.raises(SystemExit, match='--data street only'):
        main(['train', '--tasks', 'detection', '--data', 'cityscapes:/x',
              '--out', str(tmp_path)] + SMALL)
    with pytest.raises(SystemExit, match='does not fit this network: backbone'):
        other = str(tmp_path / 'small.pt')
        from streamdeq_ros.model.checkpoint import save_checkpoint
        save_checkpoint(other, StreamDEQNet(get_config('small'),
                                            {'segmentation': {'num_classes': 3}}), {})
        main(['train', '--init', other, '--steps', '1', '--out', str(tmp_path / 'x')] + SMALL)
