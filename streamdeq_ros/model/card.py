"""The model card's schema: what each field must hold, each problem said as one clause.

A card (``model_card.json``, or the ``card`` of a checkpoint) describes the network its weights
fit: ``config`` (a configuration name or the MDEQ numbers), ``heads`` (each head's classes and
widths), ``input`` (size and normalisation) and ``inference`` (the default solver). Everything
that builds a network or a pipeline from a card reads these fields, so they are checked here,
before anything is built: a card that would fail deep inside torch (a negative channel count, 0
groups, ``classes`` that is a number) is refused with the field's name and what it must be.
"""
from numbers import Number
from typing import Any, List, Mapping

from .solvers import DEFAULT_SOLVER, SOLVERS

#: head name -> the count field that sizes it and the name list that must match that count
HEAD_COUNTS = {'segmentation': ('num_classes', 'classes'), 'detection': ('num_classes', 'classes'),
               'pose': ('num_joints', 'joints')}


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, Number) and not isinstance(v, bool)


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + '...'


def _config_problems(cfg: Mapping) -> List[str]:
    out = []

    def positive_ints(key, lo=1, hi=None):
        v = cfg.get(key)
        if key not in cfg:
            return None
        if not isinstance(v, (list, tuple)) or not v or not all(_int(x) and x >= lo for x in v):
            out.append("config '%s' must be a non-empty list of integers of at least %d, got %s"
                       % (key, lo, _show(v)))
            return None
        if hi is not None and len(v) > hi:
            out.append("config '%s' has %d entries; at most %d branches exist"
                       % (key, len(v), hi))
        return v

    channels = positive_ints('num_channels', hi=4)
    blocks = positive_ints('num_blocks')
    if channels and blocks and len(channels) != len(blocks):
        out.append("config 'num_blocks' has %d entries but 'num_channels' has %d"
                   % (len(blocks), len(channels)))
    for key, lo in (('expansion', 1), ('num_groups', 1), ('f_thres', 1), ('num_layers', 1),
                    ('b_thres', 1), ('downsample_times', 0)):
        if key in cfg and not (_int(cfg[key]) and cfg[key] >= lo):
            out.append("config '%s' must be an integer of at least %d, got %s"
                       % (key, lo, _show(cfg[key])))
    groups = cfg.get('num_groups')
    if channels and _int(groups) and groups >= 1:
        bad = [c for c in channels if c % groups]
        if bad:
            out.append("config 'num_channels' %s are not divisible by 'num_groups' %d"
                       % (bad, groups))
    if 'downsample_times' in cfg and _int(cfg['downsample_times']) and cfg['downsample_times'] > 5:
        out.append("config 'downsample_times' must be at most 5, got %d" % cfg['downsample_times'])
    for key, lo, hi in (('dropout', 0.0, 0.99), ('bn_momentum', 0.0, 1.0)):
        if key in cfg and not (_num(cfg[key]) and lo <= cfg[key] <= hi):
            out.append("config '%s' must be a number from %g to %g, got %s"
                       % (key, lo, hi, _show(cfg[key])))
    if 'wnorm' in cfg and not isinstance(cfg['wnorm'], bool):
        out.append("config 'wnorm' must be true or false, got %s" % _show(cfg['wnorm']))
    return out


def _names(head: str, spec: Mapping, count_key: str, names_key: str) -> List[str]:
    out = []
    n = spec.get(count_key)
    if not (_int(n) and n >= 1):
        return ["heads.%s '%s' must be an integer of at least 1, got %s"
                % (head, count_key, _show(n))]
    names = spec.get(names_key)
    if names_key in spec and (not isinstance(names, list)
                              or not all(isinstance(x, str) for x in names)):
        out.append("heads.%s '%s' must be a list of %d names, got %s"
                   % (head, names_key, n, _show(names)))
    elif names_key in spec and len(names) != n:
        out.append("heads.%s '%s' lists %d names for %s %d"
                   % (head, names_key, len(names), count_key, n))
    return out


def _head_problems(heads: Mapping) -> List[str]:
    out = []
    for head, spec in heads.items():
        if head not in HEAD_COUNTS:
            out.append('it has an unknown head %r (known: %s)' % (head, ', '.join(HEAD_COUNTS)))
            continue
        if not isinstance(spec, Mapping):
            out.append('heads.%s must be a mapping of its settings, got %s' % (head, _show(spec)))
            continue
        out += _names(head, spec, *HEAD_COUNTS[head])
        for key in ('fpn_channels', 'representation', 'width'):
            if key in spec and not (_int(spec[key]) and spec[key] >= 1):
                out.append("heads.%s '%s' must be an integer of at least 1, got %s"
                           % (head, key, _show(spec[key])))
        if head == 'segmentation':
            pal = spec.get('palette')
            if pal is not None and (not isinstance(pal, list) or not all(
                    isinstance(c, list) and len(c) == 3 and all(_int(x) and 0 <= x <= 255
                                                                for x in c) for c in pal)):
                out.append("heads.segmentation 'palette' must be a list of [r, g, b] of "
                           'integers from 0 to 255, got %s' % _show(pal))
            if spec.get('final_conv_kernel', 1) not in (1, 3):
                out.append("heads.segmentation 'final_conv_kernel' must be 1 or 3, got %s"
                           % _show(spec['final_conv_kernel']))
    if 'pose' in heads and 'detection' not in heads:
        out.append('it has a pose head but no detection head to find the persons in')
    return out


def _input_problems(inp: Mapping) -> List[str]:
    out = []
    for key in ('height', 'width'):
        if key in inp and not (_int(inp[key]) and inp[key] > 0 and inp[key] % 32 == 0):
            out.append("input '%s' must be a positive multiple of 32, got %s"
                       % (key, _show(inp[key])))
    for key, positive in (('mean', False), ('std', True)):
        v = inp.get(key)
        if key in inp and not (isinstance(v, list) and len(v) == 3 and all(
                _num(x) and (x > 0 or not positive) for x in v)):
            out.append("input '%s' must be a list of 3 %snumbers (R, G, B), got %s"
                       % (key, 'positive ' if positive else '', _show(v)))
    if inp.get('color', 'rgb') not in ('rgb', 'bgr'):
        out.append("input 'color' must be 'rgb' or 'bgr', got %s" % _show(inp['color']))
    return out


def card_problems(card: Any) -> List[str]:
    """Return what is wrong with a model card, one clause per problem (empty: usable)."""
    if not isinstance(card, Mapping):
        return ['it is %s, not a mapping of fields' % _show(card)]
    if 'config' not in card:
        return ["it has no 'config' (the MDEQ configuration: a name or a dict)"]
    out = []
    cfg = card['config']
    if isinstance(cfg, Mapping):
        out += _config_problems(cfg)
    elif not isinstance(cfg, str):
        out.append("its 'config' is %s, not a configuration name or dict" % _show(cfg))
    heads = card.get('heads')
    if not isinstance(heads, Mapping) or not heads:
        out.append("it names no heads ('heads' must map head names to their settings)")
    else:
        out += _head_problems(heads)
    if 'input' in card:
        if isinstance(card['input'], Mapping):
            out += _input_problems(card['input'])
        else:
            out.append("its 'input' is %s, not a dict of size and normalisation"
                       % _show(card['input']))
    inference = card.get('inference', {})
    if not isinstance(inference, Mapping):
        out.append("its 'inference' is %s, not a dict" % _show(inference))
    elif inference.get('solver', DEFAULT_SOLVER) not in SOLVERS:
        out.append("inference 'solver' must be one of %s, got %s"
                   % (', '.join(repr(s) for s in SOLVERS), _show(inference['solver'])))
    return out


def card_solver(card: Mapping) -> str:
    """Return the solver the card's model runs by default (``inference.solver``)."""
    inference = card.get('inference')
    return (inference.get('solver') if isinstance(inference, Mapping) else None) or DEFAULT_SOLVER


def trained_on(card: Mapping) -> str:
    """Return what the card says its weights were trained on, in a few words."""
    if isinstance(card.get('trained_on'), str):
        return card['trained_on']
    training = card.get('training')
    data = training.get('data') if isinstance(training, Mapping) else None
    if data == 'street':
        return 'generated streets only (for the demo and tests, not for real cameras)'
    return str(data) if data else 'not stated in its card'


def describe(card: Mapping, input_size=None) -> str:
    """Return one line naming the model, its training data, its classes and its input size."""
    heads = card.get('heads') or {}
    parts = []
    for head, (count, names) in HEAD_COUNTS.items():
        spec = heads.get(head)
        if isinstance(spec, Mapping):
            listed = spec.get(names) or []
            shown = ', '.join(listed[:6]) + (', ...' if len(listed) > 6 else '')
            parts.append('%s %s %s%s' % (head, spec.get(count), 'joints' if head == 'pose'
                                         else 'classes', ' (%s)' % shown if shown else ''))
    inp = card.get('input') or {}
    h, w = input_size or (inp.get('height'), inp.get('width'))
    # height first, as input_size and the card give it (the camera is resized to it)
    return 'model %s, trained on %s: %s; input_size [%s, %s] (height, width)' % (
        card.get('name', 'unnamed'), trained_on(card), '; '.join(parts), h, w)
