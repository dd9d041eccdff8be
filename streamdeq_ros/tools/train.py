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
backbone and head, say; ``official:FILE`` an official MDEQ checkpoint). Training uses still
frames only. Optimiser: Adam, or SGD with momentum (``--optimizer sgd``), with cosine decay.
Validation: the single-frame metrics (mIoU, mAP@50, PCKh) of the labelled frames of held-out
clips with N iterations from zeros. Checkpoints
(``last.pt``, resumable with ``--resume``) and the final ``model.pt`` hold only tensors and a
model card, and load with ``torch.load(weights_only=True)``.

Scale-out (:mod:`streamdeq_ros.tools.distributed`): ``torchrun --nproc_per_node N -m
streamdeq_ros.tools.train ...`` or ``--nproc N`` trains with DistributedDataParallel (NCCL on GPUs,
gloo on CPU). ``--batch-size`` is the global batch; each epoch is one DistributedSampler
permutation cut into whole global batches, so global batch t is the same for any number of
processes, and a checkpoint resumes at the exact batch under any world size. SUR's draw is a
function of (seed, step), the same on every process. Rank 0 alone logs, checkpoints and shows
progress; validation is sharded and its scores summed over the processes. ``--amp`` bf16/fp16
(autocast; fp16 with a gradient scaler), ``--channels-last``, ``--bn`` batch/sync/frozen.
Cityscapes (``--data cityscapes:ROOT``) follows the official recipe with ``--random-scale
0.5,2.0`` (random scale, crop of ``--height`` x ``--width``, flip; DataLoader ``--workers``)
and ``--val-size full`` (whole 1024x2048 frames).
"""
import argparse
import contextlib
import functools
import os
import shlex
import sys
from typing import Dict

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed, evaluate
from .metrics import METRIC_NAMES
from .objective import draw_unrolls, TrainStep, VARIANTS
from .training import (cosine_schedule, head_specs, HEAD_WIDTHS, head_widths, init_from,
                       open_train_log, resume_training, train_loop, write_model)
from ..data import cityscapes, street
from ..data.clips import ClipStills, DatasetFormatError, street_clips, StreetStills
from ..model.checkpoint import save_checkpoint
from ..model.mdeq import CONFIGS
from ..model.network import HEADS, IMAGENET_MEAN, IMAGENET_STD, StreamDEQNet


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
        scale = getattr(args, 'random_scale', ())
        val_size = getattr(args, 'val_size', '')          # None: full size
        try:
            train_clips = cityscapes.cityscapes_clips(root, 'train', None if scale else (h, w))
            val = cityscapes.cityscapes_clips(root, 'val', (h, w) if val_size in ('', ())
                                              else val_size, limit=args.val_clips)
        except DatasetFormatError as exc:
            raise SystemExit('streamdeq train: %s' % exc)
        augment = cityscapes.RandomScaleCrop((h, w), scale) if scale else None
        return (ClipStills(train_clips, augment), val, list(cityscapes.TRAIN_CLASSES),
                [list(c) for c in cityscapes.PALETTE])
    raise SystemExit('streamdeq train: --data must be street or cityscapes:ROOT, got %r'
                     % args.data)


#: head widths of new models: sized so the heads cost little next to a `tiny` backbone on a CPU
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


def _to(targets, device):
    if targets is None:
        return None
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


def device_batch(items, net: StreamDEQNet, device, channels_last: bool):
    """Stack ``items`` as normalised images, masks and targets (if any) on ``device``."""
    images = torch.stack([it[0] for it in items]).to(device, non_blocking=True)
    images = net.normalize(images)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.stack([it[1] for it in items]).to(device, non_blocking=True)
    targets = _to([it[2] for it in items], device) if len(items[0]) > 2 else None
    return images, masks, targets


def _bn_mode(net: StreamDEQNet, mode: str, d: distributed.Dist) -> StreamDEQNet:
    if mode == 'sync':
        if d.device.type != 'cuda':
            raise SystemExit('streamdeq train: --bn sync needs CUDA (torch runs SyncBatchNorm '
                             'on GPUs only); use --bn batch or --bn frozen on a CPU')
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net


def _freeze_bn(net: StreamDEQNet):
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _amp(args, d: distributed.Dist):
    """Return (autocast context factory, gradient scaler or None)."""
    if args.amp == 'off':
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if args.amp == 'bf16' else torch.float16
    scaler = torch.amp.GradScaler(d.device.type) if args.amp == 'fp16' else None
    return functools.partial(torch.autocast, device_type=d.device.type, dtype=dtype), scaler


def train(args) -> int:
    """Run training as configured by the parsed ``args`` (one process of a torchrun, or alone)."""
    return distributed.run_in_group('streamdeq train', args.device, _train, args)


def _train(args, d: distributed.Dist) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)                     # the same initial weights on every rank
    stills, val_clips, classes, palette = training_data(args)
    if d.world > len(val_clips):
        raise SystemExit('streamdeq train: %d processes need at least as many validation clips '
                         '(--val-clips %d)' % (d.world, len(val_clips)))
    h, w = args.height, args.width
    net = StreamDEQNet(CONFIGS[args.config],
                       head_specs(args.tasks, classes, palette, head_widths(args))).train()
    if args.init:
        msg = init_from(net, args.init)
        if d.main:
            print(msg)
    if args.optimizer == 'sgd':                      # the official MDEQ Cityscapes recipe
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = cosine_schedule(opt, args.steps)
    os.makedirs(args.out, exist_ok=True)
    last = os.path.join(args.out, 'last.pt')
    step = 0
    metrics = {'history': []}
    if args.resume and os.path.exists(last):
        step, metrics = resume_training(last, net, opt, sched, 'streamdeq train')
        if d.main:
            print('resumed from %s at step %d (%d process%s)'
                  % (last, step, d.world, 'es' if d.world > 1 else ''))
    net = _bn_mode(net, args.bn, d).to(d.device)
    for state in opt.state.values():                 # resumed moments follow the weights
        for k, v in state.items():
            if torch.is_tensor(v) and k != 'step':
                state[k] = v.to(d.device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = TrainStep(net, args.variant, args.f_thres, args.pose_weight)
    if d.world > 1:
        model = DDP(model, device_ids=[d.local_rank] if d.device.type == 'cuda' else None,
                    find_unused_parameters='pose' in args.tasks)
    autocast, scaler = _amp(args, d)
    try:
        sampler = distributed.ShardSampler(stills, d, args.batch_size, args.seed)
    except ValueError as exc:
        raise SystemExit('streamdeq train: %s' % exc)
    loader = DataLoader(stills, batch_size=sampler.local_batch, sampler=sampler,
                        num_workers=args.workers, collate_fn=list,
                        pin_memory=d.device.type == 'cuda')
    command = 'streamdeq train ' + ' '.join(shlex.quote(a) for a in args.argv)
    solver = 'broyden' if args.variant == 'il' else 'unroll'
    val_iters = args.f_thres if args.variant == 'il' else args.unroll
    writer = log = None
    if d.main:
        log, writer = open_train_log(args.out, step, ['step', 'loss', 'unrolls', 'lr',
                                                      'seconds', 'val_miou'])
    history = metrics['history']

    def batch_loss(items, step):
        images, masks, targets = device_batch(items, net, d.device, args.channels_last)
        # the same draw on every rank: a pure function of (seed, step)
        k = draw_unrolls(args.variant, step, args.seed, args.unroll)
        implicit = args.variant == 'il' and step >= args.pretrain_steps
        net.train()
        if args.bn == 'frozen':
            _freeze_bn(net)
        with autocast():
            terms = model(images, masks, targets, k, implicit)
            return sum(terms.values()), {'K': k}

    def checkpoint(step, running):
        v = validate(net, val_clips[d.rank::d.world], solver, val_iters, classes)
        scores = {key: v[key] for key in METRIC_NAMES if key in v}
        history.append(dict({'step': step, 'loss': running},
                            **{'val_' + key: x for key, x in scores.items()}))
        if d.main:
            tqdm.write('step %d: loss %.3f, single frame N=%d: %s' % (
                step, running, val_iters, ', '.join(
                    '%s %.3f' % (METRIC_NAMES[key], x) for key, x in scores.items())))
        metrics['val_single_frame'] = v
        if d.main:
            save_checkpoint(last, net, _card(args, classes, palette, h, w, step, metrics,
                                             command),
                            {'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(),
                             'step': step, 'world_size': d.world})
        distributed.barrier(d)
        return '%.4f' % v['miou'] if 'miou' in v else ''

    def log_row(step, running, extra, lr, seconds, shown):
        return [step, '%.4f' % running, extra['K'], '%.3g' % lr, '%.1f' % seconds, shown]

    stop_at = args.steps if not args.stop_after else min(args.steps, step + args.stop_after)
    step, seconds = train_loop('streamdeq train', step, stop_at, args.steps, sampler, loader,
                               opt, sched, net.parameters(), args.clip_grad, batch_loss,
                               checkpoint, args.val_every, log_row, log, writer, scaler,
                               lambda lv: distributed.mean_over_ranks(lv, d), d.main,
                               'train %s' % args.variant)
    if log is not None:
        log.close()
    if step < args.steps:
        if d.main:
            print('stopped at step %d of %d; continue with --resume' % (step, args.steps))
        return 0
    if d.main:
        card = _card(args, classes, palette, h, w, step, metrics, command)
        card['metrics']['train_seconds_this_run'] = round(seconds, 1)
        write_model(args.out, net, card)
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
    p.add_argument('--optimizer', choices=('adam', 'sgd'), default='adam',
                   help='adam, or sgd with --momentum (the official Cityscapes recipe)')
    p.add_argument('--lr', type=float, default=2e-3, help='initial learning rate (cosine decay)')
    p.add_argument('--momentum', type=float, default=0.9, help='sgd momentum')
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
    g = p.add_argument_group('scale-out and speed')
    g.add_argument('--nproc', type=int, default=1,
                   help='processes (one per GPU, or CPU processes with gloo): starts this '
                        'command N times through torch.distributed.run, as torchrun '
                        '--nproc_per_node N -m streamdeq_ros.tools.train would; --batch-size is '
                        'the global batch')
    g.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                   help="auto: this process's GPU when CUDA is available, else the CPU")
    g.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    g.add_argument('--amp', choices=('off', 'bf16', 'fp16'), default='off',
                   help='autocast precision (fp16 adds a gradient scaler)')
    g.add_argument('--channels-last', action='store_true',
                   help='channels-last memory format for the network and its input')
    g.add_argument('--bn', choices=('batch', 'sync', 'frozen'), default='batch',
                   help="the stem's BatchNorm: per-process batch statistics, SyncBatchNorm "
                        'across processes (CUDA only), or frozen running statistics')
    g.add_argument('--random-scale', default='',
                   help='cityscapes: LOW,HIGH (the official recipe: 0.5,2.0) trains on random '
                        'crops of --height x --width from full frames scaled by U(LOW, HIGH), '
                        'mirrored half the time; default: whole frames resized')
    g.add_argument('--val-size', default='',
                   help="cityscapes: validation frame size HxW, or 'full' (the official "
                        '1024x2048); default: --height x --width')


def run(args) -> int:
    """Entry point of ``streamdeq train`` (and of each process of a torchrun)."""
    code = distributed.relaunch(args, __spec__.name, 'streamdeq train')
    if code is not None:
        return code
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
    if args.random_scale or args.val_size:
        if not args.data.startswith('cityscapes:'):
            raise SystemExit('streamdeq train: --random-scale and --val-size are for '
                             '--data cityscapes:ROOT')
        try:
            args.random_scale = tuple(float(v) for v in args.random_scale.split(',')) \
                if args.random_scale else ()
            assert not args.random_scale or len(args.random_scale) == 2
            args.val_size = None if args.val_size == 'full' else () if not args.val_size \
                else tuple(int(v) for v in args.val_size.lower().split('x'))
            assert args.val_size is None or len(args.val_size) == 2
        except (ValueError, AssertionError):
            raise SystemExit('streamdeq train: --random-scale takes LOW,HIGH and --val-size '
                             'HxW or full') from None
    if min(args.unroll, args.f_thres, args.steps, args.batch_size, args.fpn_channels,
           args.box_representation, args.pose_width) < 1:
        raise SystemExit('streamdeq train: --unroll, --f-thres, --steps, --batch-size, '
                         '--fpn-channels, --box-representation and --pose-width must be >= 1')
    return train(args)


def main(argv=None) -> int:
    """``python -m streamdeq_ros.tools.train`` (what torchrun starts in each process)."""
    return distributed.module_main('streamdeq train', __doc__, add_arguments, run, argv)


if __name__ == '__main__':
    sys.exit(main())
