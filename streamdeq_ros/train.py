"""``streamdeq train``: train a StreamDEQ segmentation model on still frames (paper Sec. III-C).

Variants (how the fixed point is found while training; the network is the same):

- ``ur``  (Unrolled): z = f^K(0; x) with K = ``--unroll`` (20) fixed unrollings, back-propagated
  through all of them.
- ``sur`` (Stochastically Unrolled): as UR, but K is drawn uniformly from 1..``--unroll`` for
  each mini-batch, so the head learns to read the state after any number of iterations.
- ``il``  (Implicit): z* from Broyden (``--f-thres`` iterations, no graph), then the gradient of
  one more application z = f(z*; x) with z* held constant: the Jacobian-free ("phantom",
  1-step) backward of Fung et al. / Geng et al. We use it rather than the implicit-function-
  theorem backward because the IFT gradient needs a second Broyden solve per step with
  J_f(z*)^T (doubling the cost on 2 CPU cores) and is only correct at an exact fixed point,
  which a Broyden solve cut at ``--f-thres`` iterations of a model in training does not reach;
  the 1-step gradient is cheap, always defined and is a descent direction when f is
  contractive. Like the official MDEQ code, IL starts with ``--pretrain-steps`` of plain
  unrolled training (``--unroll`` steps) before switching to the implicit solve.

Tasks (``--tasks``): any of ``segmentation``, ``detection``, ``pose`` over one backbone; the
loss is the (weighted) sum of the task losses, and the number of unrollings (SUR's draw) is
shared by all heads of a mini-batch. Segmentation: cross-entropy with ignore index 255 on the
head's logits upsampled to the input size. Detection: torchvision's RPN and box-head losses.
Pose: the heatmap MSE of simple baselines over annotated joints, inside ground-truth person
boxes. ``--init`` starts from another checkpoint's matching weights (a segmentation model's
backbone and head, say). Training uses still frames only. Optimiser: Adam with cosine decay.
Validation: the single-frame metrics (mIoU, mAP@50, PCKh) of the labelled frames of held-out
clips with N iterations from zeros. Checkpoints
(``last.pt``, resumable with ``--resume``) and the final ``model.pt`` hold only tensors and a
model card, and load with ``torch.load(weights_only=True)``.
"""
import argparse
import csv
import functools
import json
import math
import os
import shlex
import time
from typing import Dict

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from tqdm import tqdm

from . import evaluate
from .data import cityscapes, street
from .data.clips import (ClipStills, DatasetFormatError, DET_CLASSES, street_clips,
                         StreetStills)
from .evaluate import METRIC_NAMES
from .model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .model.heads.common import finest_features
from .model.heads.pose import gaussian_targets
from .model.mdeq import CONFIGS
from .model.network import HEADS, IMAGENET_MEAN, IMAGENET_STD, StreamDEQNet
from .model.official import load_official
from .model.solvers import broyden, unroll

VARIANTS = ('sur', 'ur', 'il')


def draw_unrolls(variant: str, step: int, seed: int, max_unroll: int) -> int:
    """Unroll count of mini-batch ``step``: uniform 1..max for SUR, max for UR (deterministic)."""
    if variant != 'sur':
        return max_unroll
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return int(torch.randint(1, max_unroll + 1, (1,), generator=g))


def batch_indices(step: int, batch_size: int, size: int, seed: int):
    """Dataset indices of mini-batch ``step``: a seeded permutation per epoch (resumable)."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(pos, size)
        out.append(_permutation(size, seed, epoch)[i])
    return out


@functools.lru_cache(maxsize=4)
def _permutation(size: int, seed: int, epoch: int):
    g = torch.Generator().manual_seed(seed * 7919 + epoch)
    return torch.randperm(size, generator=g).tolist()


def forward_train(net: StreamDEQNet, images: torch.Tensor, variant: str, unrolls: int,
                  f_thres: int, implicit: bool):
    """Return the state of a training batch (graph kept) and the number of f evaluations."""
    bb = net.backbone
    u = bb.inject(images)
    z0 = bb.zeros(u)
    bb.fullstage.reset_dropout(z0)

    def f(z):
        return bb.f(z, u)

    if variant == 'il' and implicit:
        with torch.no_grad():
            z_star = broyden(f, z0, f_thres).z
        z = f([t.detach() for t in z_star])          # 1-step (Jacobian-free) gradient
        n_f = f_thres + 2
    else:
        z = unroll(f, z0, unrolls).z
        n_f = unrolls
    return z, n_f


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (ignore 255) of logits upsampled to the label size."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode='bilinear', align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=street.IGNORE_INDEX)


def pose_loss(net: StreamDEQNet, z, person_boxes, keypoints, features=None) -> torch.Tensor:
    """Heatmap MSE (simple baselines) over the annotated joints of the given person boxes."""
    if sum(len(b) for b in person_boxes) == 0:
        return z[0].new_zeros(())
    head = net.heads['pose']
    heat, crops = head(z, person_boxes, features)
    target, weight = gaussian_targets(torch.cat(list(keypoints)), crops, head.heatmap_size)
    err = (heat - target) ** 2 * weight[..., None, None]
    return err.mean()


def task_losses(net: StreamDEQNet, z, masks, targets, pose_weight: float) -> Dict:
    """Loss terms of every head of ``net`` on the state ``z`` (a dict; their sum is trained)."""
    losses = {}
    features = finest_features(z) if {'segmentation', 'pose'} & set(net.heads) else None
    if 'segmentation' in net.heads:
        losses['seg'] = seg_loss(net.heads['segmentation'](z, features), masks)
    if 'detection' in net.heads:
        _, det = net.heads['detection'](z, [{'boxes': t['boxes'], 'labels': t['labels']}
                                            for t in targets])
        losses.update(det)
    if 'pose' in net.heads:
        losses['pose'] = pose_weight * pose_loss(net, z, [t['person_boxes'] for t in targets],
                                                 [t['keypoints'] for t in targets], features)
    return losses


def validate(net: StreamDEQNet, clips, solver: str, iters: int, classes) -> Dict:
    """Single-frame mIoU of the labelled frames with ``iters`` iterations from zeros."""
    was = net.training
    net.eval()
    try:
        out = evaluate.stream_scores(net, clips, [iters], [0], solver, classes, iters,
                                     progress=False)
    finally:
        net.train(was)
    return dict(out['baseline'])


def training_data(args):
    """Return (still-frame dataset, validation clips, class names, palette) for ``--data``."""
    h, w = args.height, args.width
    if args.data == 'street':
        return (StreetStills(args.train_clips, h, w, seed=args.seed, split='train',
                             targets=args.tasks != ['segmentation']),
                street_clips(args.val_clips, h, w, seed=args.seed, split='val'),
                list(street.CLASSES), street.PALETTE.tolist())
    if args.data.startswith('cityscapes:'):
        root = args.data.split(':', 1)[1]
        try:
            train_clips = cityscapes.cityscapes_clips(root, 'train', (h, w))
            val = cityscapes.cityscapes_clips(root, 'val', (h, w), limit=args.val_clips)
        except DatasetFormatError as exc:
            raise SystemExit('streamdeq train: %s' % exc)
        return (ClipStills(train_clips), val, list(cityscapes.TRAIN_CLASSES),
                [list(c) for c in cityscapes.PALETTE])
    raise SystemExit('streamdeq train: --data must be street or cityscapes:ROOT, got %r'
                     % args.data)


#: head widths of new models: sized so the heads cost little next to a `tiny` backbone on a CPU
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


def _card(args, classes, palette, height, width, step, metrics, command) -> Dict:
    return {
        'name': os.path.basename(os.path.normpath(args.out)),
        'task': '+'.join(args.tasks),
        'variant': args.variant,
        'config': CONFIGS[args.config].to_dict(),
        'heads': head_specs(args.tasks, classes, palette, head_widths(args)),
        'input': {'height': height, 'width': width, 'mean': list(IMAGENET_MEAN),
                  'std': list(IMAGENET_STD), 'color': 'rgb'},
        'inference': {'solver': 'broyden' if args.variant == 'il' else 'unroll',
                      'single_frame_iters': (args.f_thres if args.variant == 'il'
                                             else args.unroll)},
        'training': {'command': command, 'data': args.data, 'data_seed': args.seed,
                     'steps': step, 'batch_size': args.batch_size, 'lr': args.lr,
                     'unroll': args.unroll, 'f_thres': args.f_thres,
                     'pretrain_steps': args.pretrain_steps, 'still_frames_only': True,
                     'train_clips': args.train_clips, 'init': args.init,
                     'pose_weight': args.pose_weight},
        'metrics': metrics,
    }


def train(args) -> int:
    """Run training as configured by the parsed ``args``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    stills, val_clips, classes, palette = training_data(args)
    h, w = args.height, args.width
    net = StreamDEQNet(CONFIGS[args.config],
                       head_specs(args.tasks, classes, palette, head_widths(args))).train()
    if args.init:
        print(init_from(net, args.init))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    os.makedirs(args.out, exist_ok=True)
    last = os.path.join(args.out, 'last.pt')
    step = 0
    metrics = {'history': []}
    if args.resume and os.path.exists(last):
        try:
            blob = read_checkpoint(last)
            net.load_state_dict(blob['state_dict'])
            opt.load_state_dict(blob['optimizer'])
            sched.load_state_dict(blob['scheduler'])
        except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
            raise SystemExit('streamdeq train: cannot resume from %s: %s' % (last, exc))
        step = int(blob['step'])
        metrics = dict(blob['card'].get('metrics', {}))
        metrics.setdefault('history', [])
        print('resumed from %s at step %d' % (last, step))
    command = 'streamdeq train ' + ' '.join(shlex.quote(a) for a in args.argv)
    solver = 'broyden' if args.variant == 'il' else 'unroll'
    val_iters = args.f_thres if args.variant == 'il' else args.unroll
    log_path = os.path.join(args.out, 'train_log.csv')
    log_new = not os.path.exists(log_path) or step == 0
    log = open(log_path, 'w' if log_new else 'a', newline='')
    writer = csv.writer(log)
    if log_new:
        writer.writerow(['step', 'loss', 'unrolls', 'lr', 'seconds', 'val_miou'])
    t_start = time.time()
    bar = tqdm(total=args.steps, initial=step, desc='train %s' % args.variant, unit='step')
    running = None
    history = metrics['history']
    stop_at = args.steps if not args.stop_after else min(args.steps, step + args.stop_after)
    while step < stop_at:
        idx = batch_indices(step, args.batch_size, len(stills), args.seed)
        items = [stills[i] for i in idx]
        images = net.normalize(torch.stack([it[0] for it in items]))
        target = torch.stack([it[1] for it in items])
        k = draw_unrolls(args.variant, step, args.seed, args.unroll)
        implicit = args.variant == 'il' and step >= args.pretrain_steps
        with parametrize.cached():
            z, _ = forward_train(net, images, args.variant, k, args.f_thres, implicit)
            terms = task_losses(net, z, target, [it[2] for it in items] if len(items[0]) > 2
                                else None, args.pose_weight)
            loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
        opt.step()
        sched.step()
        step += 1
        lv = loss.detach().item()
        if not math.isfinite(lv):
            raise SystemExit('streamdeq train: loss became %r at step %d; lower --lr' % (lv, step))
        running = lv if running is None else 0.98 * running + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss='%.3f' % running, K=k)
        val = ''
        if step % args.val_every == 0 or step == stop_at:
            v = validate(net, val_clips, solver, val_iters, classes)
            val = '%.4f' % v['miou'] if 'miou' in v else ''
            scores = {key: v[key] for key in METRIC_NAMES if key in v}
            history.append(dict({'step': step, 'loss': running},
                                **{'val_' + key: x for key, x in scores.items()}))
            bar.write('step %d: loss %.3f, single frame N=%d: %s' % (
                step, running, val_iters, ', '.join('%s %.3f' % (METRIC_NAMES[key], x)
                                                    for key, x in scores.items())))
            metrics['val_single_frame'] = v
            save_checkpoint(last, net, _card(args, classes, palette, h, w, step, metrics, command),
                            {'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(),
                             'step': step})
        if step % 10 == 0 or val:
            writer.writerow([step, '%.4f' % running, k, '%.3g' % sched.get_last_lr()[0],
                             '%.1f' % (time.time() - t_start), val])
            log.flush()
    bar.close()
    log.close()
    if step < args.steps:
        print('stopped at step %d of %d; continue with --resume' % (step, args.steps))
        return 0
    card = _card(args, classes, palette, h, w, step, metrics, command)
    card['metrics']['train_seconds_this_run'] = round(time.time() - t_start, 1)
    save_checkpoint(os.path.join(args.out, 'model.pt'), net.eval(), card)
    with open(os.path.join(args.out, 'model_card.json'), 'w') as fh:
        json.dump(card, fh, indent=1)
    print('wrote %s' % os.path.join(args.out, 'model.pt'))
    return 0


def add_arguments(p: argparse.ArgumentParser):
    """Add the ``train`` options to ``p``."""
    p.add_argument('--variant', choices=VARIANTS, default='sur', help='training variant')
    p.add_argument('--tasks', default='segmentation',
                   help='comma-separated heads over one backbone: segmentation, detection, pose '
                        '(detection and pose need --data street)')
    p.add_argument('--init', default='',
                   help='start from the matching weights of this checkpoint (e.g. a '
                        'segmentation model for a multi-task one), or official:FILE for an '
                        'official MDEQ checkpoint (bare, released or ImageNet classification) '
                        'of the same --config')
    p.add_argument('--pose-weight', type=float, default=100.0,
                   help='weight of the pose heatmap MSE in the summed loss')
    p.add_argument('--fpn-channels', type=int, default=HEAD_WIDTHS['fpn_channels'],
                   help='detection: FPN output channels')
    p.add_argument('--box-representation', type=int, default=HEAD_WIDTHS['representation'],
                   help='detection: width of the two-layer box head')
    p.add_argument('--pose-width', type=int, default=HEAD_WIDTHS['width'],
                   help='pose: channels of the conv and deconvolution layers')
    p.add_argument('--config', choices=sorted(CONFIGS), default='tiny', help='MDEQ size')
    p.add_argument('--data', default='street',
                   help='training data: street (the generator) or cityscapes:ROOT (the '
                        'labelled frames of leftImg8bit_sequence + gtFine, resized)')
    p.add_argument('--height', type=int, default=96, help='frame height (multiple of 32)')
    p.add_argument('--width', type=int, default=192, help='frame width (multiple of 32)')
    p.add_argument('--steps', type=int, default=3000, help='optimiser steps')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=2e-3, help='Adam learning rate (cosine decay)')
    p.add_argument('--weight-decay', type=float, default=0.0)
    p.add_argument('--clip-grad', type=float, default=5.0, help='gradient-norm clip')
    p.add_argument('--unroll', type=int, default=20,
                   help='UR: unrollings; SUR: maximum of the uniform draw; IL: pretraining')
    p.add_argument('--f-thres', type=int, default=26, help='IL: Broyden iterations')
    p.add_argument('--pretrain-steps', type=int, default=500,
                   help='IL: unrolled steps before the implicit solve')
    p.add_argument('--train-clips', type=int, default=20000,
                   help='street: distinct generated training clips')
    p.add_argument('--val-clips', type=int, default=16, help='held-out clips for validation')
    p.add_argument('--val-every', type=int, default=250, help='validate + checkpoint period')
    p.add_argument('--seed', type=int, default=0, help='data and initialisation seed')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--resume', action='store_true', help='continue from OUT/last.pt')
    p.add_argument('--stop-after', type=int, default=0,
                   help='stop this run after N steps (checkpointed; continue with --resume)')


def run(args) -> int:
    """Entry point of ``streamdeq train``."""
    for side in (args.height, args.width):
        if side <= 0 or side % 32:
            raise SystemExit('streamdeq train: --height and --width must be positive multiples '
                             'of 32, got %dx%d' % (args.width, args.height))
    args.tasks = [t.strip() for t in args.tasks.split(',') if t.strip()]
    unknown = sorted(set(args.tasks) - set(HEADS))
    if unknown or not args.tasks:
        raise SystemExit('streamdeq train: --tasks takes a comma-separated subset of %s, got %s'
                         % (', '.join(HEADS), ', '.join(unknown) or 'nothing'))
    args.tasks = [t for t in HEADS if t in args.tasks]
    if args.tasks != ['segmentation'] and args.data != 'street':
        raise SystemExit('streamdeq train: detection and pose train on --data street only (the '
                         'Cityscapes reader has segmentation labels)')
    if min(args.unroll, args.f_thres, args.steps, args.batch_size, args.fpn_channels,
           args.box_representation, args.pose_width) < 1:
        raise SystemExit('streamdeq train: --unroll, --f-thres, --steps, --batch-size, '
                         '--fpn-channels, --box-representation and --pose-width must be >= 1')
    return train(args)
