"""What training runs here share: the loop, schedule, resume, log, model folder; heads.

``streamdeq train`` and ``streamdeq train-peer`` both run :func:`train_loop` (optimiser steps
from a resumable position, gradient clipping, a stop on a non-finite loss, periodic validation
and checkpoints, the CSV log), decay the learning rate on a cosine to 0, resume from their last
checkpoint and write the final model folder
(``model.pt`` + ``model_card.json``) through these. :func:`head_specs` and :func:`init_from`
are what a StreamDEQ training run starts from: the heads' specifications and the weights of
another checkpoint (this package's or an official one).
"""
import csv
import json
import math
import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch
from tqdm import tqdm

from ..data import street
from ..data.clips import DET_CLASSES
from ..model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ..model.network import StreamDEQNet
from ..model.official import load_official


def cosine_schedule(opt: torch.optim.Optimizer, steps: int):
    """Return the cosine decay of ``opt``'s learning rate to 0 over ``steps`` (then flat)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def resume_training(path: str, net, opt, sched, prog: str) -> Tuple[int, Dict]:
    """Load the weights, optimiser and scheduler of checkpoint ``path``.

    Return (step, metrics with its ``history`` list); a file that does not fit stops ``prog``
    with one sentence.
    """
    try:
        blob = read_checkpoint(path)
        net.load_state_dict(blob['state_dict'])
        opt.load_state_dict(blob['optimizer'])
        sched.load_state_dict(blob['scheduler'])
    except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
        raise SystemExit('%s: cannot resume from %s: %s' % (prog, path, exc))
    metrics = dict(blob['card'].get('metrics', {}))
    metrics['history'] = list(metrics.get('history', []))
    return int(blob['step']), metrics


def open_train_log(out: str, step: int, header):
    """Open ``out``/train_log.csv: new (with ``header``) at step 0, else appended to."""
    path = os.path.join(out, 'train_log.csv')
    new = not os.path.exists(path) or step == 0
    fh = open(path, 'w' if new else 'a', newline='')
    writer = csv.writer(fh)
    if new:
        writer.writerow(header)
    return fh, writer


def write_model(out: str, net, card: Dict):
    """Write the final ``model.pt`` (weights + card) and ``model_card.json`` into ``out``."""
    path = os.path.join(out, 'model.pt')
    save_checkpoint(path, net.eval(), card)
    with open(os.path.join(out, 'model_card.json'), 'w') as fh:
        json.dump(card, fh, indent=1)
    print('wrote %s' % path)


def train_loop(prog: str, step: int, stop_at: int, total: int, sampler, loader, opt, sched,
               params, clip_grad: float, batch_loss: Callable, validate: Callable,
               val_every: int, log_row: Optional[Callable] = None, log=None, writer=None,
               scaler=None, mean: Callable[[float], float] = float, main: bool = True,
               desc: str = 'train') -> Tuple[int, float]:
    """Run optimiser steps from ``step`` until ``stop_at``; return (the step reached, seconds).

    ``sampler`` is positioned at each pass (``set_position``), so a resumed run sees the
    batches it would have seen. Per batch: ``batch_loss(items, step)`` gives (loss, the extra
    values shown beside it); backward (through ``scaler`` for mixed precision), the gradient
    norm of ``params`` clipped at ``clip_grad``, one optimiser and scheduler step. ``mean``
    turns the loss into what every process agrees on (the mean over ranks); a non-finite one
    stops ``prog`` with one sentence. Every ``val_every`` steps and at ``stop_at``,
    ``validate(step, running_loss)`` runs (and checkpoints) and returns what the log shows of
    it ('' for nothing); ``log_row(step, running_loss, extra, lr, seconds, shown)`` is the CSV
    row written every 10 steps and at each validation that showed something. ``total``: the
    bar's length (the run's ``--steps``); ``main``: whether this process shows the bar.
    """
    params = list(params)            # clipped at every step: an iterator would be spent at once
    t0 = time.time()
    bar = tqdm(total=total, initial=step, desc=desc, unit='step', disable=not main)
    running = None
    while step < stop_at:
        sampler.set_position(*divmod(step, sampler.batches))
        for items in loader:
            loss, extra = batch_loss(items, step)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            step += 1
            lv = mean(loss.detach().float().item())
            if not math.isfinite(lv):
                raise SystemExit('%s: loss became %r at step %d; lower --lr' % (prog, lv, step))
            running = lv if running is None else 0.98 * running + 0.02 * lv
            bar.update(1)
            bar.set_postfix(loss='%.3f' % running, **extra)
            shown = ''
            if step % val_every == 0 or step == stop_at:
                shown = validate(step, running)
            if writer is not None and (step % 10 == 0 or shown):
                writer.writerow(log_row(step, running, extra, sched.get_last_lr()[0],
                                        time.time() - t0, shown))
                log.flush()
            if step >= stop_at:
                break
    bar.close()
    return step, time.time() - t0


HEAD_WIDTHS = {'fpn_channels': 16, 'representation': 64, 'width': 32}
#: ``--init official:FILE``: an official MDEQ checkpoint
OFFICIAL = 'official:'


def head_specs(tasks, classes, palette, widths=None) -> Dict:
    """Return the model card's ``heads`` entry for ``tasks`` (the generator's label sets).

    ``widths`` (default :data:`HEAD_WIDTHS`) gives the detection head's ``fpn_channels`` and
    ``representation`` and the pose head's ``width``.
    """
    widths = dict(HEAD_WIDTHS, **(widths or {}))
    heads = {}
    if 'segmentation' in tasks:
        heads['segmentation'] = {'num_classes': len(classes), 'classes': list(classes),
                                 'palette': palette, 'ignore_index': street.IGNORE_INDEX}
    if 'detection' in tasks:
        heads['detection'] = {'num_classes': len(DET_CLASSES), 'classes': list(DET_CLASSES),
                              'fpn_channels': widths['fpn_channels'],
                              'representation': widths['representation']}
    if 'pose' in tasks:
        heads['pose'] = {'num_joints': len(street.JOINTS), 'joints': list(street.JOINTS),
                         'skeleton': [list(p) for p in street.SKELETON],
                         'head_segment': list(street.HEAD_SEGMENT),
                         'person_class': 'person', 'width': widths['width']}
    return heads


def head_widths(args) -> Dict[str, int]:
    """Return the head widths that the width options of ``streamdeq train`` ask for."""
    return {'fpn_channels': args.fpn_channels, 'representation': args.box_representation,
            'width': args.pose_width}


def init_from(net: StreamDEQNet, path: str) -> str:
    """Copy the tensors of checkpoint ``path`` that ``net`` has (same names, same shapes).

    Tensors of heads ``net`` lacks are skipped; a shared name with another shape (another
    ``--config`` or class count) is refused. ``official:FILE`` reads an official MDEQ
    checkpoint (any released layout, see :mod:`streamdeq_ros.model.official`) for ``net``'s
    config: its backbone strictly, and its segmentation head where the class count matches.
    """
    if path.startswith(OFFICIAL):
        try:
            src, sentence = load_official(path[len(OFFICIAL):], net.cfg)
        except CheckpointError as exc:
            raise SystemExit('streamdeq train: --init: %s' % exc)
        own = net.state_dict()
        state = src.state_dict()
        shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
        net.load_state_dict(shared, strict=False)
        return '%s; initialised %d of %d tensors%s' % (
            sentence, len(shared), len(own),
            "; kept this network's own %s (another class count)" % ', '.join(skipped)
            if skipped else '')
    try:
        state = read_checkpoint(path)['state_dict']
    except CheckpointError as exc:
        raise SystemExit('streamdeq train: --init: %s' % exc)
    own = net.state_dict()
    shared = {k: v for k, v in state.items() if k in own}
    wrong = [k for k, v in shared.items() if own[k].shape != v.shape]
    if wrong:
        raise SystemExit('streamdeq train: --init %s does not fit this network: %s has shape '
                         '%s here and %s there (another --config or class count?)'
                         % (path, wrong[0], tuple(own[wrong[0]].shape),
                            tuple(shared[wrong[0]].shape)))
    if not any(k.startswith('backbone.') for k in shared):
        raise SystemExit('streamdeq train: --init %s has no backbone weights' % path)
    net.load_state_dict(shared, strict=False)
    return 'initialised %d of %d tensors from %s' % (len(shared), len(own), path)
