"""``streamdeq train-peer``: train a standard efficient torchvision model to compare against.

Peers are single-frame models from torchvision, built from scratch (no pretrained weights) and
trained on the same generated stills, input size, batch, optimiser and schedule as the bundled
StreamDEQ models (``streamdeq train``: Adam, cosine decay, gradient-norm clip, the same data
order for the same ``--seed``):

- ``lraspp``: LR-ASPP MobileNetV3-Large (torchvision's ``lraspp_mobilenet_v3_large``),
  segmentation with the generator's classes; cross-entropy, ignore index 255.
- ``fasterrcnn``: Faster R-CNN MobileNetV3-Large-FPN, torchvision's low-resolution build
  (``fasterrcnn_mobilenet_v3_large_320_fpn``) with its resize set to the training size (so it
  is not scaled up to 320 pixels) and 128 sampled RoIs per image, as the StreamDEQ detection
  head samples; everything else (anchors, RPN, box head, losses) as torchvision builds it.

``model.pt`` / ``last.pt`` hold tensors and a card (``peer``, ``task``, ``input``, classes,
the training command) and load with ``torch.load(weights_only=True)``; ``--resume`` continues
from ``last.pt``. ``streamdeq eval --peer NAME=PATH`` scores a peer with the same clips and
metric code as the StreamDEQ models and times it in the same interleaved run.
"""
import argparse
import os
import shlex
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .metrics import DetectionScore, METRIC_NAMES, seconds_per_frame, SegmentationScore
from .training import cosine_schedule, open_train_log, resume_training, train_loop, write_model
from ..data import street
from ..data.clips import DET_CLASSES, frame_targets, LabelledClip, street_clips, StreetStills
from ..model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ..model.heads.segmentation import class_ids
from ..model.network import IMAGENET_MEAN, IMAGENET_STD

#: peer name -> the task it is scored on
PEERS = {'lraspp': 'segmentation', 'fasterrcnn': 'detection'}
#: RoIs sampled per image in training (the StreamDEQ detection head's number)
ROI_SAMPLES = 128


def build_peer(name: str, height: int, width: int) -> torch.nn.Module:
    """Return torchvision's model ``name`` (see :data:`PEERS`) with fresh weights."""
    if name == 'lraspp':
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large
        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                         num_classes=len(street.CLASSES))
    if name == 'fasterrcnn':
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
        return fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=len(DET_CLASSES) + 1,
            min_size=min(height, width), max_size=max(height, width),
            box_batch_size_per_image=ROI_SAMPLES)
    raise ValueError('unknown peer %r; known: %s' % (name, ', '.join(sorted(PEERS))))


class Peer:
    """A trained peer for evaluation: uint8 frames in, the task's output out."""

    def __init__(self, name: str, net: torch.nn.Module, card: Dict, device='cpu'):
        """Wrap ``net`` (eval mode) described by ``card``."""
        self.name, self.card = name, card
        self.task = PEERS[card['peer']]
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> Dict:
        """Run on uint8 (N, 3, H, W) frames; return ``seg_logits`` or ``detections``."""
        x = images.to(self.device).float() / 255.0
        with torch.inference_mode():
            if self.task == 'segmentation':
                return {'seg_logits': self.net((x - self.mean) / self.std)['out']}
            return {'detections': self.net(list(x))}     # torchvision normalises itself


def load_peer(path: str, name: str = '', device: str = 'cpu') -> Peer:
    """Load a peer checkpoint; CheckpointError says what is wrong with it."""
    blob = read_checkpoint(path)
    card = blob['card']
    if card.get('peer') not in PEERS:
        raise CheckpointError('%s is not a peer checkpoint (its card names no peer of %s; '
                              'StreamDEQ models go to --model)' % (path, ', '.join(sorted(PEERS))))
    size = card['input']
    net = build_peer(card['peer'], size['height'], size['width'])
    try:
        net.load_state_dict(blob['state_dict'])
    except RuntimeError as exc:
        raise CheckpointError('%s does not fit torchvision %s: %s'
                              % (path, card['peer'], str(exc).splitlines()[0]))
    return Peer(name or card['peer'], net, card, device)


def peer_scores(peer: Peer, clips: Sequence[LabelledClip], class_names: Sequence[str],
                batch_size: int = 16) -> Dict:
    """Score ``peer`` on the labelled frame of each clip (single-frame by nature)."""
    if peer.task == 'segmentation':
        score = SegmentationScore(len(class_names), class_names)
        key = 'miou'
    else:
        if not all('labels' in c.meta for c in clips):
            raise ValueError("detection peers need clips with boxes (the generator's)")
        score = DetectionScore(DET_CLASSES)
        key = 'map50'
    for i in range(0, len(clips), batch_size):
        batch = clips[i:i + batch_size]
        images = torch.from_numpy(np.stack([c.frames[c.labelled_index] for c in batch]))
        out = peer(images.permute(0, 3, 1, 2))
        if key == 'miou':
            score.update(class_ids(out['seg_logits'], batch[0].frames[0].shape[:2]).cpu(),
                         torch.from_numpy(np.stack([c.mask for c in batch])))
        else:
            score.update(out['detections'],
                         [frame_targets(c.meta['labels'][c.labelled_index]) for c in batch])
    r = score.compute()
    return {key: r[key], 'per_class_' + key: r.get('per_class', r.get('iou'))}


def peer_frame_ms(peer: Peer, clip: LabelledClip, frames: int = 20) -> float:
    """Milliseconds per frame of ``peer`` on one stream (batch 1), read-out included."""
    size = clip.frames[0].shape[:2]

    def one(img):
        out = peer(img)
        if 'seg_logits' in out:
            class_ids(out['seg_logits'], size)

    return 1000.0 * seconds_per_frame(one, clip, frames, peer.device)


def peer_loss(name: str, net: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor,
              targets: Optional[List[Dict]]) -> Dict[str, torch.Tensor]:
    """Return the loss terms of one training batch (uint8 images)."""
    x = images.float() / 255.0
    if name == 'lraspp':
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        logits = net((x - mean) / std)['out']
        return {'seg': F.cross_entropy(logits, masks, ignore_index=street.IGNORE_INDEX)}
    return net(list(x), [{'boxes': t['boxes'], 'labels': t['labels']} for t in targets])


def _card(args, step: int, metrics: Dict, command: str) -> Dict:
    from torchvision import __version__ as torchvision_version
    return {
        'name': os.path.basename(os.path.normpath(args.out)),
        'peer': args.peer, 'task': PEERS[args.peer],
        'torchvision': torchvision_version,
        'input': {'height': args.height, 'width': args.width, 'color': 'rgb'},
        'classes': (list(street.CLASSES) if args.peer == 'lraspp' else list(DET_CLASSES)),
        'training': {'command': command, 'data': 'street', 'data_seed': args.seed,
                     'steps': step, 'batch_size': args.batch_size, 'lr': args.lr,
                     'optimizer': 'adam, cosine decay, grad-norm clip %g' % args.clip_grad,
                     'train_clips': args.train_clips, 'pretrained': False,
                     'roi_samples': ROI_SAMPLES if args.peer == 'fasterrcnn' else None},
        'metrics': metrics,
    }


def run(args) -> int:
    """Entry point of ``streamdeq train-peer``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.height % 32 or args.width % 32:
        raise SystemExit('streamdeq train-peer: --height and --width must be multiples of 32')
    torch.manual_seed(args.seed)
    device = torch.device('cuda' if args.device != 'cpu' and torch.cuda.is_available()
                          else 'cpu')
    net = build_peer(args.peer, args.height, args.width).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = cosine_schedule(opt, args.steps)
    os.makedirs(args.out, exist_ok=True)
    last = os.path.join(args.out, 'last.pt')
    step, metrics = 0, {'history': []}
    if args.resume and os.path.exists(last):
        step, metrics = resume_training(last, net, opt, sched, 'streamdeq train-peer')
        print('resumed from %s at step %d' % (last, step))
    stills = StreetStills(args.train_clips, args.height, args.width, seed=args.seed,
                          split='train', targets=args.peer == 'fasterrcnn')
    val = street_clips(args.val_clips, args.height, args.width, seed=args.seed, split='val')
    single = distributed.Dist(0, 1, 0, device, None)
    sampler = distributed.ShardSampler(stills, single, args.batch_size, args.seed)
    loader = DataLoader(stills, batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.workers, collate_fn=list)
    command = 'streamdeq train-peer ' + ' '.join(shlex.quote(a) for a in args.argv)
    log, writer = open_train_log(args.out, step, ['step', 'loss', 'lr', 'seconds', 'val'])

    def batch_loss(items, step):
        images = torch.stack([it[0] for it in items]).to(device)
        masks = torch.stack([it[1] for it in items]).to(device)
        targets = ([{k: v.to(device) for k, v in it[2].items()} for it in items]
                   if args.peer == 'fasterrcnn' else None)
        net.train()
        return sum(peer_loss(args.peer, net, images, masks, targets).values()), {}

    def validate(step, running):
        net.eval()
        v = peer_scores(Peer(args.peer, net, {'peer': args.peer}, device), val,
                        list(street.CLASSES))
        key = 'miou' if 'miou' in v else 'map50'
        metrics['history'].append({'step': step, 'loss': running, 'val_' + key: v[key]})
        metrics['val_single_frame'] = v
        tqdm.write('step %d: loss %.3f, %s %.3f' % (step, running, METRIC_NAMES[key], v[key]))
        save_checkpoint(last, net, _card(args, step, metrics, command),
                        {'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(),
                         'step': step})
        return '%.4f' % v[key]

    def log_row(step, running, extra, lr, seconds, shown):
        return [step, '%.4f' % running, '%.3g' % lr, '%.1f' % seconds, shown]

    stop_at = args.steps if not args.stop_after else min(args.steps, step + args.stop_after)
    step, _ = train_loop('streamdeq train-peer', step, stop_at, args.steps, sampler, loader,
                         opt, sched, net.parameters(), args.clip_grad, batch_loss, validate,
                         args.val_every, log_row, log, writer, desc='train %s' % args.peer)
    log.close()
    if step < args.steps:
        print('stopped at step %d of %d; continue with --resume' % (step, args.steps))
        return 0
    write_model(args.out, net, _card(args, step, metrics, command))
    return 0


def add_arguments(p: argparse.ArgumentParser):
    """Add the options of ``streamdeq train-peer``."""
    p.add_argument('--peer', choices=sorted(PEERS), required=True, help='torchvision model')
    p.add_argument('--height', type=int, default=96, help='frame height (multiple of 32)')
    p.add_argument('--width', type=int, default=192, help='frame width (multiple of 32)')
    p.add_argument('--steps', type=int, default=3000, help='optimiser steps')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--lr', type=float, default=1e-3, help='initial learning rate (cosine decay)')
    p.add_argument('--clip-grad', type=float, default=5.0, help='gradient-norm clip')
    p.add_argument('--train-clips', type=int, default=20000,
                   help='generated training clips (one still frame each)')
    p.add_argument('--val-clips', type=int, default=16, help='held-out clips for validation')
    p.add_argument('--val-every', type=int, default=500, help='validate + checkpoint period')
    p.add_argument('--seed', type=int, default=0, help='data and initialisation seed')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--resume', action='store_true', help='continue from OUT/last.pt')
    p.add_argument('--stop-after', type=int, default=0,
                   help='stop after this many steps of this run (0: run to --steps)')
