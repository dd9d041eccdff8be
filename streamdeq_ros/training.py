"""What every training run here keeps the same way: schedule, resume, log, model folder.

``streamdeq train`` and ``streamdeq train-peer`` both decay the learning rate on a cosine to 0,
resume from their last checkpoint, log a CSV per step and write the final model folder
(``model.pt`` + ``model_card.json``) through these.
"""
import csv
import json
import math
import os
from typing import Dict, Tuple

import torch

from .model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint


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
