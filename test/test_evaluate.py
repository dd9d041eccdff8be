"""The streaming evaluation protocol, the IoU metric, and the eval command's reports."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from streamdeq_ros.data.clips import street_clips
from streamdeq_ros.model.checkpoint import save_checkpoint
from streamdeq_ros.model.heads.segmentation import class_ids
from streamdeq_ros.model.mdeq import get_config
from streamdeq_ros.model.network import StreamDEQNet
from streamdeq_ros.model.solvers import unroll
from streamdeq_ros.tools.cli import main
from streamdeq_ros.tools.evaluate import parse_model_spec, stream_scores
from streamdeq_ros.tools.metrics import SegmentationScore
from streamdeq_ros.tools.reports import README_END, README_START


def test_iou_against_hand_computed_values():
    pred = torch.tensor([[0, 0, 1, 1, 2, 2]])
    true = torch.tensor([[0, 1, 1, 1, 255, 0]])
    s = SegmentationScore(4, ['a', 'b', 'c', 'd'])
    s.update(pred, true)
    r = s.compute()
    # pixel 4 is ignored (255); a: tp 1 (px 0), fn 1 (px 5), fp 1 (px 1)
    assert r['iou']['a'] == pytest.approx(1 / 3)
    assert r['iou']['b'] == pytest.approx(2 / 3)          # tp 2, fp 0, fn 1
    assert r['iou']['c'] == pytest.approx(0.0)            # predicted on a real 'a' only
    assert r['iou']['d'] is None                          # absent everywhere: not averaged
    assert r['miou'] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return StreamDEQNet(get_config('tiny'), {'segmentation': {'num_classes': 8}}).eval()


@pytest.fixture(scope='module')
def clips():
    return street_clips(3, 32, 64, split='val')


def _manual(net, clips, m, t):
    """Score the protocol written out: zeros at frame n - t, m unrolls per frame up to n."""
    score = SegmentationScore(8)
    target = torch.from_numpy(np.stack([c.mask for c in clips])).long()
    with torch.inference_mode():
        z = None
        for back in range(t, -1, -1):
            x = torch.from_numpy(np.stack([c.frames[c.labelled_index - back] for c in clips]))
            u = net.backbone.inject(net.normalize(x.permute(0, 3, 1, 2)))
            z = unroll(lambda s: net.backbone.f(s, u), z or net.backbone.zeros(u), m).z
        score.update(class_ids(net.heads['segmentation'](z), (32, 64)), target)
    return score.compute()['miou']


def test_protocol_matches_the_written_out_definition(net, clips):
    out = stream_scores(net, clips, [1, 2], [0, 3], 'unroll', [str(i) for i in range(8)],
                        baseline_iters=5, batch_size=2, progress=False)
    for m in (1, 2):
        for t in (0, 3):
            assert out['curves'][str(m)][t] == pytest.approx(_manual(net, clips, m, t), abs=1e-9)
    assert out['baseline']['miou'] == pytest.approx(_manual(net, clips, 5, 0), abs=1e-9)
    assert out['baseline']['iters'] == 5


def test_offset_larger_than_the_clip_is_refused(net, clips):
    with pytest.raises(ValueError, match='offset 25'):
        stream_scores(net, clips, [1], [25], 'unroll', list('abcdefgh'), 2, progress=False)


def test_model_spec_parsing():
    assert parse_model_spec('IL=a/b.pt:broyden:26') == ('IL', 'a/b.pt', 'broyden', 26)
    assert parse_model_spec('SUR=m.pt') == ('SUR', 'm.pt', None, None)
    for bad in ('m.pt', 'X=m.pt:newton', '=m.pt'):
        with pytest.raises(ValueError):
            parse_model_spec(bad)


def test_eval_command_writes_reports_and_updates_the_readme(tmp_path, net):
    ckpt = str(tmp_path / 'm.pt')
    save_checkpoint(ckpt, net, {'config': get_config('tiny').to_dict(),
                                'heads': {'segmentation': {'num_classes': 8}},
                                'input': {'height': 32, 'width': 64}, 'variant': 'ur',
                                'inference': {'solver': 'unroll', 'single_frame_iters': 4}})
    readme = tmp_path / 'README.md'
    readme.write_text('# x\n%s\nold\n%s\ntail\n' % (README_START, README_END))
    out = str(tmp_path / 'eval')
    code = main(['eval', '--model', 'UR=%s' % ckpt, '--model', 'IL=%s:broyden:3' % ckpt,
                 '--clips', '2', '--iters', '1', '2', '--offsets', '0,2', '--fps-frames', '2',
                 '--out', out, '--readme', str(readme), '--threads', '2'])
    assert code == 0
    with open(os.path.join(out, 'results.json')) as fh:
        res = json.load(fh)
    assert set(res['models']) == {'UR', 'IL'}
    assert res['models']['IL']['solver'] == 'broyden'
    assert res['models']['UR']['baseline']['iters'] == 4
    assert set(res['models']['UR']['fps']) == {'1', '2', 'baseline'}
    assert all(v > 0 for v in res['models']['UR']['fps'].values())
    with open(os.path.join(out, 'curves.csv')) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * (2 * 2 + 1)
    table = open(os.path.join(out, 'table.md')).read()
    assert '| UR | unroll |' in table and '| IL | broyden |' in table
    assert os.path.getsize(os.path.join(out, 'miou_vs_offset.png')) > 1000
    text = readme.read_text()
    assert 'old' not in text and '| UR | unroll |' in text and text.endswith('tail\n')
    assert 'streamdeq eval --model UR=' in text
