"""The bundled models: safe loading, size, model card, and the streaming claims they carry."""
import os

import numpy as np
import pytest
import torch

from streamdeq_ros.data.clips import street_clips
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import bundled_checkpoint, bundled_models, DEFAULT_MODEL
from streamdeq_ros.tools.evaluate import stream_scores

EXPECTED = {'seg_tiny_sur': 'sur', 'seg_tiny_ur': 'ur', 'multi_tiny_sur': 'sur',
            'multi_tiny_ur': 'ur', 'multi_192_sur': 'sur'}
MULTI = ('multi_tiny_sur', 'multi_tiny_ur', 'multi_192_sur')
# what each was fine-tuned from (the 192x384 model from the 96x192 one)
INIT = {'multi_tiny_sur': 'seg_tiny_sur', 'multi_tiny_ur': 'seg_tiny_ur',
        'multi_192_sur': 'multi_tiny_sur'}


def test_the_models_are_bundled_and_the_default_has_three_heads():
    assert set(EXPECTED) <= set(bundled_models())
    assert DEFAULT_MODEL == 'multi_192_sur'
    net, card = load_net(bundled_checkpoint(DEFAULT_MODEL))
    assert list(net.heads) == ['segmentation', 'detection', 'pose']
    assert (card['input']['height'], card['input']['width']) == (192, 384)
    with pytest.raises(ValueError, match='bundled: multi_192_sur, multi_tiny_sur, multi_tiny_ur, '
                                         'seg_tiny_sur'):
        bundled_checkpoint('nope')


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_model_loads_safely_and_its_card_is_complete(name):
    path = bundled_checkpoint(name)
    assert os.path.getsize(path) <= (15 if name in MULTI else 10) * 1024 * 1024
    net, card = load_net(path)                       # weights_only=True inside
    assert card['variant'] == EXPECTED[name] and card['name'] == name
    assert card['training']['command'].startswith('streamdeq train --variant %s' % EXPECTED[name])
    assert card['heads']['segmentation']['classes'][0] == 'road'
    assert card['input']['height'] % 32 == 0 and card['input']['width'] % 32 == 0
    val = card['metrics']['val_single_frame']
    assert 0.5 < val['miou'] <= 1
    if name in MULTI:
        assert list(net.heads) == ['segmentation', 'detection', 'pose']
        assert card['training']['init'] == 'streamdeq_ros/models/%s/model.pt' % INIT[name]
        assert card['heads']['pose']['head_segment'] == [8, 9]
        assert val['map50'] > 0.5 and val['pckh'] > 0.5


@pytest.fixture(scope='module')
def held_out():
    return street_clips(8, 96, 192, seed=123, split='test')


def test_sur_streamed_with_two_iterations_keeps_its_single_frame_accuracy(held_out):
    net, _ = load_net(bundled_checkpoint('seg_tiny_sur'))
    out = stream_scores(net, held_out, [2], [19], 'unroll',
                        [str(i) for i in range(8)], baseline_iters=20, batch_size=8,
                        progress=False)
    assert out['curves']['2'][19] >= 0.9 * out['baseline']['miou']


@pytest.mark.parametrize('name', ['multi_tiny_sur', 'multi_192_sur'])
def test_multi_task_sur_streamed_with_two_iterations_keeps_its_detection_and_pose(name):
    """The issue's acceptance: M = 2 from offset 19 reaches 90 % of the single-frame N = 20."""
    net, card = load_net(bundled_checkpoint(name))
    size = card['input']['height'], card['input']['width']
    clips = street_clips(8, *size, seed=123, split='test')
    out = stream_scores(net, clips, [2], [19], 'unroll',
                        [str(i) for i in range(8)], baseline_iters=20, batch_size=8,
                        progress=False)
    for metric in ('map50', 'pckh', 'miou'):
        assert out['metrics'][metric]['curves']['2'][19] >= 0.9 * out['baseline'][metric]


def test_the_state_converges_when_streamed(held_out):
    """A trained model's f contracts: the warm residual falls far below the first frame's."""
    net, _ = load_net(bundled_checkpoint('seg_tiny_sur'))
    clip = held_out[0]
    from streamdeq_ros.runtime.stream import StreamSession
    session = StreamSession(net.backbone, solver='unroll')
    residuals = []
    for frame in clip.frames[:20]:
        x = net.normalize(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None])
        residuals.append(session.step(x, iters=2).final_residual)
    assert residuals[-1] < 0.5 * residuals[0]
