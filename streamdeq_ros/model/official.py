"""Official MDEQ checkpoints (``locuslab/mdeq``) as they are released, loaded strictly.

Three layouts exist, and :func:`load_official` takes each:

- **bare**: ``MDEQSegNet.state_dict()``. Next to the weights it holds ``fullstage_copy.*`` (a
  frozen copy of f, re-copied from ``fullstage`` before every forward) and ``deq.func.*`` /
  ``deq.func_copy.*`` (the solver wrapper's second names for ``fullstage`` and its copy): no
  weights of their own, dropped.
- **released**: saved from the training wrapper, every key prefixed ``model.``, plus the
  criterion's ``loss.*`` entries. The prefix is stripped and ``loss.*`` dropped.
- **ImageNet classification** (``MDEQClsNet``, the recommended initialisation for Cityscapes):
  the classification head (``incre_modules``, ``downsamp_modules``, ``final_layer``,
  ``classifier``) is dropped, and nothing else; there is no segmentation head.

Weight-normed convolutions (``weight_g``/``weight_v``) map to torch's weight-norm
parametrisation. After dropping, every remaining key must fit the network built for the
configuration: the backbone strictly, and the segmentation head strictly when the checkpoint
has one. A mismatch names the first keys. Files are read with ``weights_only=True``.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple, Union

import torch

from .checkpoint import CheckpointError, load_safely
from .mdeq import get_config, MDEQConfig
from .network import StreamDEQNet

#: (key prefix, why it is dropped), in the order they are reported
DROPPED = (
    ('loss.', "the training criterion's state"),
    ('deq.', "the solver wrapper's second names for fullstage and its copy"),
    ('fullstage_copy.', 'the frozen copy of f that the official code re-copies from '
                        'fullstage before every forward'),
    ('incre_modules.', 'the ImageNet classification head'),
    ('downsamp_modules.', 'the ImageNet classification head'),
    ('final_layer.', 'the ImageNet classification head'),
    ('classifier.', 'the ImageNet classification head'),
)
WRAPPER_PREFIX = 'model.'
_WNORM = {'weight_g': 'parametrizations.weight.original0',
          'weight_v': 'parametrizations.weight.original1'}
SEG_HEAD = 'last_layer.'


def official_to_native(state_dict: Mapping[str, torch.Tensor]
                       ) -> Tuple['OrderedDict[str, torch.Tensor]', Dict[str, int]]:
    """Map an official state dict to this package's names; return it and what was dropped.

    The second value counts the dropped keys per reason (and ``'model. prefix'`` when the
    released wrapper's prefix was stripped).
    """
    keys = list(state_dict)
    wrapped = bool(keys) and all(k.startswith(WRAPPER_PREFIX) or k.startswith('loss.')
                                 for k in keys) and any(k.startswith(WRAPPER_PREFIX)
                                                        for k in keys)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    dropped: Dict[str, int] = OrderedDict()
    if wrapped:
        dropped['model. prefix'] = sum(k.startswith(WRAPPER_PREFIX) for k in keys)
    for key, value in state_dict.items():
        if wrapped and key.startswith(WRAPPER_PREFIX):
            key = key[len(WRAPPER_PREFIX):]
        match = next((prefix for prefix, _ in DROPPED if key.startswith(prefix)), None)
        if match is not None:
            label = match.rstrip('.')
            dropped[label] = dropped.get(label, 0) + 1
            continue
        prefix, _, leaf = key.rpartition('.')
        if leaf in _WNORM:
            key = prefix + '.' + _WNORM[leaf]
        out[key] = value
    return out, dropped


def read_official(path: str) -> Mapping[str, torch.Tensor]:
    """Return the state dict of an official file (a training checkpoint's ``state_dict``)."""
    blob = load_safely(path, 'official checkpoint')
    if isinstance(blob, Mapping) and isinstance(blob.get('card'), Mapping):
        raise CheckpointError('%r is already a streamdeq_ros checkpoint (it has a model card): '
                              'use it as it is (checkpoint:=%s)' % (path, path))
    if isinstance(blob, Mapping) and isinstance(blob.get('state_dict'), Mapping):
        blob = blob['state_dict']             # a training checkpoint around the weights
    if not isinstance(blob, Mapping) or not blob or \
            not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError('official checkpoint %r is not a state dict of tensors' % path)
    return blob


def _first(keys: List[str], n: int = 3) -> str:
    return ', '.join(sorted(keys)[:n]) + (' (and %d more)' % (len(keys) - n)
                                          if len(keys) > n else '')


def load_official(path: str, config: Union[str, MDEQConfig] = 'small',
                  num_classes: int = 0) -> Tuple[StreamDEQNet, str]:
    """Build the network for ``config`` and load an official checkpoint into it strictly.

    Returns the network (eval mode, CPU) and one sentence saying what was kept, what was
    dropped and why. With a segmentation head in the file the network has one (its class
    count and FINAL_CONV_KERNEL read from the file); without (an ImageNet checkpoint) it gets
    a freshly initialised head of ``num_classes`` classes when ``num_classes`` > 0, else none.
    Raises CheckpointError naming the first mismatched keys.
    """
    cfg = get_config(config) if isinstance(config, str) else config
    native, dropped = official_to_native(read_official(path))
    head = {k[len(SEG_HEAD):]: v for k, v in native.items() if k.startswith(SEG_HEAD)}
    backbone = {k: v for k, v in native.items() if not k.startswith(SEG_HEAD)}
    heads = {}
    if head:
        final = head.get('3.weight')
        if final is None or final.dim() != 4:
            raise CheckpointError('official checkpoint %r has a segmentation head without its '
                                  'final convolution (last_layer.3.weight)' % path)
        heads['segmentation'] = {'num_classes': int(final.shape[0]),
                                 'final_conv_kernel': int(final.shape[-1])}
    elif num_classes > 0:
        heads['segmentation'] = {'num_classes': int(num_classes)}
    try:
        net = StreamDEQNet(cfg, heads)
    except ValueError as exc:
        raise CheckpointError('official checkpoint %r: %s' % (path, exc)) from None
    parts = [('backbone', net.backbone, backbone)]
    if head:
        parts.append(('segmentation head', net.heads['segmentation'], {
            'last_layer.' + k: v for k, v in head.items()}))
    for what, module, sd in parts:
        own = module.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if missing or unexpected:
            raise CheckpointError(
                'official checkpoint %r does not fit the %s of config %r: %s%s%s'
                % (path, what, cfg.name, 'missing %s' % _first(missing) if missing else '',
                   '; ' if missing and unexpected else '',
                   'unexpected %s' % _first(unexpected) if unexpected else ''))
        wrong = [k for k in own if own[k].shape != sd[k].shape]
        if wrong:
            k = wrong[0]
            raise CheckpointError('official checkpoint %r does not fit the %s of config %r: %s '
                                  'has shape %s there and %s here'
                                  % (path, what, cfg.name, k, tuple(sd[k].shape),
                                     tuple(own[k].shape)))
        module.load_state_dict(sd, strict=True)
    kept = len(backbone) + len(head)
    what = 'backbone and segmentation head (%d classes)' % heads['segmentation']['num_classes'] \
        if head else 'backbone' + (' (segmentation head of %d classes initialised fresh)'
                                   % num_classes if num_classes > 0 else '')
    reasons = {p.rstrip('.'): w for p, w in DROPPED}
    notes = []
    for label, count in dropped.items():
        if label == 'model. prefix':
            notes.append("stripped the training wrapper's 'model.' prefix from %d keys" % count)
        else:
            notes.append('dropped %d %s.* keys (%s)' % (count, label, reasons[label]))
    return net.eval(), 'loaded %s: kept %d tensors for the %s of config %r%s' % (
        path, kept, what, cfg.name, '; ' + '; '.join(notes) if notes else '')
