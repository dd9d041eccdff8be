"""Checkpoints: round trip, weights_only safety, and one-sentence errors for bad files."""
import collections
import os

import pytest
import torch

from streamdeq_ros.model.checkpoint import (CheckpointError, load_net, read_checkpoint,
                                            save_checkpoint)
from streamdeq_ros.model.mdeq import get_config
from streamdeq_ros.model.network import StreamDEQNet

CARD = {'config': get_config('tiny').to_dict(), 'heads': {'segmentation': {'num_classes': 5}},
        'variant': 'sur'}


def _net():
    return StreamDEQNet(get_config('tiny'), CARD['heads'])


def test_round_trip_restores_identical_outputs(tmp_path):
    net = _net().eval()
    path = str(tmp_path / 'm.pt')
    save_checkpoint(path, net, CARD)
    loaded, card = load_net(path)
    assert card['variant'] == 'sur' and card['heads'] == CARD['heads']
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        u1, u2 = net.backbone.inject(x), loaded.backbone.inject(x)
        z1 = net.backbone.f(net.backbone.zeros(u1), u1)
        z2 = loaded.backbone.f(loaded.backbone.zeros(u2), u2)
        assert torch.equal(net.perceive(z1).seg_logits, loaded.perceive(z2).seg_logits)


class Payload:
    """An arbitrary class: unpickling it would run code."""


class Exploit:
    """Unpickling it would call os.system."""

    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_pickled_code_is_refused_saying_what_was_blocked(tmp_path):
    path = str(tmp_path / 'evil.pt')
    torch.save({'format': 'streamdeq_ros/checkpoint/1', 'card': CARD, 'obj': Payload()}, path)
    with pytest.raises(CheckpointError, match='loading it would run code .*Payload') as exc:
        read_checkpoint(path)
    assert '\n' not in str(exc.value)
    torch.save({'x': Exploit()}, path)
    with pytest.raises(CheckpointError, match=r'weights_only=True\): Trying to load '
                                              r'unsupported GLOBAL posix.system') as exc:
        read_checkpoint(path)
    assert '\n' not in str(exc.value) and len(str(exc.value)) < 300


@pytest.mark.parametrize('mutate, message', [
    (lambda b: b.update(format='other'), 'not a streamdeq_ros checkpoint'),
    (lambda b: b.pop('card'), 'no model card'),
    (lambda b: b['card'].update(heads={'segmentation': {'num_classes': 7}}), 'does not match'),
    (lambda b: b['card'].update(heads={'depth': {}}), 'invalid model card'),
    (lambda b: b.update(card={'name': 'bogus'}), "invalid model card: it has no 'config'"),
    (lambda b: b['card'].pop('heads'), 'invalid model card: it names no heads'),
    (lambda b: b['card'].update(config=7), "invalid model card: its 'config' is 7"),
    (lambda b: b['state_dict'].pop(next(iter(b['state_dict']))), 'does not match'),
    (lambda b: next(v for v in b['state_dict'].values() if v.is_floating_point()).fill_(
        float('nan')), 'non-finite'),
])
def test_bad_checkpoints_stop_with_one_sentence(tmp_path, mutate, message):
    path = str(tmp_path / 'm.pt')
    save_checkpoint(path, _net(), CARD)
    blob = torch.load(path, weights_only=True)
    blob['card'] = dict(blob['card'])
    blob['state_dict'] = collections.OrderedDict(blob['state_dict'])
    mutate(blob)
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match=message) as exc:
        load_net(path)
    assert '\n' not in str(exc.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        load_net(str(tmp_path / 'none.pt'))
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError, match='not a file written by torch.save'):
        load_net(str(junk))
    text = tmp_path / 'notes.pt'
    text.write_text('hello world\n')
    with pytest.raises(CheckpointError, match=r"not a file written by torch.save .*b'hello wo'"):
        load_net(str(text))
    (tmp_path / 'empty.pt').write_bytes(b'')
    with pytest.raises(CheckpointError, match='is an empty file'):
        load_net(str(tmp_path / 'empty.pt'))
    good = tmp_path / 'cut.pt'
    save_checkpoint(str(good), _net(), CARD)
    good.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match='damaged or truncated'):
        load_net(str(good))


@pytest.mark.parametrize('edit, sentence', [
    # the review's five cards, each of which used to end the node with exit 1 and no word
    (lambda c: c['config'].update(num_channels=[-8, 16, 32, 64]),
     "config 'num_channels' must be a non-empty list of integers of at least 1, got "
     '[-8, 16, 32, 64]'),
    (lambda c: c['config'].update(num_groups=0),
     "config 'num_groups' must be an integer of at least 1, got 0"),
    (lambda c: c['heads']['segmentation'].update(classes=5),
     "heads.segmentation 'classes' must be a list of 5 names, got 5"),
    (lambda c: c.update(input={'height': '96', 'width': 192}),
     "input 'height' must be a positive multiple of 32, got '96'"),
    (lambda c: c.update(input={'height': 96, 'width': 192, 'mean': [0.5, 0.5]}),
     "input 'mean' must be a list of 3 numbers (R, G, B), got [0.5, 0.5]"),
    # and their neighbours
    (lambda c: c['config'].update(num_groups=3),
     "config 'num_channels' [8, 16, 32, 64] are not divisible by 'num_groups' 3"),
    (lambda c: c['heads']['segmentation'].update(classes=['a', 'b']),
     "heads.segmentation 'classes' lists 2 names for num_classes 5"),
    (lambda c: c['heads'].update(pose={'num_joints': 16}),
     'it has a pose head but no detection head to find the persons in'),
    (lambda c: c.update(input={'height': 96, 'width': 192, 'std': [0.2, 0, 0.2]}),
     "input 'std' must be a list of 3 positive numbers (R, G, B), got [0.2, 0, 0.2]"),
    (lambda c: c.update(inference={'solver': 'newton'}),
     "inference 'solver' must be one of 'unroll', 'broyden', got 'newton'"),
    (lambda c: c['config'].update(dropout=1.5),
     "config 'dropout' must be a number from 0 to 0.99, got 1.5"),
])
def test_a_bad_model_card_is_refused_naming_the_field(tmp_path, edit, sentence):
    import copy
    card = copy.deepcopy(CARD)
    edit(card)
    path = str(tmp_path / 'm.pt')
    save_checkpoint(path, _net(), card)
    with pytest.raises(CheckpointError) as exc:
        load_net(path)
    text = str(exc.value)
    assert text == 'checkpoint %r has an invalid model card: %s' % (path, sentence), text


def test_long_failures_are_cut_at_a_word():
    from streamdeq_ros.model.checkpoint import clause
    text = clause('word ' * 100, limit=50)
    assert text.endswith(' ...') and len(text) <= 54 and 'wor ' not in text
    assert clause('a\n  b') == 'a b'
