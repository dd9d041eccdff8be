"""``streamdeq bench heads``: what each head costs per frame next to the backbone's M iterations.

On a trained checkpoint, a held-out generated street frame at the model's input size (or
``--height``/``--width``), with the state warm-started over the clip's earlier frames. Median
wall times (ms) of:

- ``backbone``: one ``StreamSession.step`` at ``--iters`` (injection + M applications of f);
- ``segmentation``: the segmentation head, up-sampling and arg-max to the frame size;
- ``detection`` and its parts ``fpn``, ``rpn``, ``box_head`` (RoIAlign, box head, NMS);
- ``pose``: the pose head and decoding in the detected person boxes (``persons`` of them);
- ``all_heads``: ``StreamDEQNet.perceive`` with every head plus the segmentation arg-max.

``cost_ratio`` = (backbone + all_heads) / (backbone + segmentation): the per-frame cost of the
three-head model against reading its segmentation head only, at the same M.
"""
import json
import os

import torch
from torchvision.models.detection.image_list import ImageList

from .solver import median_ms
from ...data.clips import street_clips
from ...model.checkpoint import load_net
from ...model.heads.detection import mdeq_to_fpn_levels
from ...model.heads.segmentation import class_ids
from ...model.network import HEADS
from ...runtime.stream import StreamSession


@torch.inference_mode()
def bench_heads(checkpoint: str, iters: int = 2, repeats: int = 50, threads=None,
                seed: int = 0, height: int = 0, width: int = 0) -> dict:
    """Time the backbone step and each head of ``checkpoint``; return a dict (ms)."""
    if threads:
        torch.set_num_threads(threads)
    net, card = load_net(checkpoint)
    missing = set(HEADS) - set(net.heads)
    if missing:
        raise ValueError('bench heads needs a three-head checkpoint; %s lacks %s'
                         % (checkpoint, ', '.join(sorted(missing))))
    h, w = height or card['input']['height'], width or card['input']['width']
    clip = street_clips(1, h, w, seed=seed, split='test')[0]
    frames = [net.normalize(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in clip.frames]
    session = StreamSession(net.backbone, solver='unroll')
    for x in frames[:clip.labelled_index]:
        session.step(x, iters=iters)
    x = frames[clip.labelled_index]
    z = session.state
    det = net.heads['detection']
    feats = det.fpn(mdeq_to_fpn_levels(z))
    images = ImageList(z[0].new_zeros(()).expand(1, 3, h, w), [(h, w)])
    proposals, _ = det.rpn(images, feats)
    found = det(z)[0][0]
    persons = [found['boxes'][net.persons(found, 0.5)]]

    def all_heads():
        class_ids(net.perceive(z).seg_logits, (h, w))

    out = {'checkpoint': os.path.relpath(checkpoint), 'iters': iters, 'height': h, 'width': w,
           'threads': torch.get_num_threads(), 'repeats': repeats,
           'persons': int(len(persons[0])), 'detections': int(len(found['boxes'])),
           'backbone': median_ms(lambda: session.step(x, iters=iters), repeats),
           'segmentation': median_ms(
               lambda: class_ids(net.heads['segmentation'](z), (h, w)), repeats),
           'fpn': median_ms(lambda: det.fpn(mdeq_to_fpn_levels(z)), repeats),
           'rpn': median_ms(lambda: det.rpn(images, feats), repeats),
           'box_head': median_ms(lambda: det.roi_heads(feats, proposals, images.image_sizes),
                                 repeats),
           'detection': median_ms(lambda: det(z), repeats),
           'pose': median_ms(lambda: net.perceive(z, heads=['pose'], person_boxes=persons),
                             repeats),
           'all_heads': median_ms(all_heads, repeats)}
    out['cost_ratio'] = (out['backbone'] + out['all_heads']) / (out['backbone']
                                                                + out['segmentation'])
    return out


def add_arguments(parser):
    """Arguments of ``streamdeq bench heads``."""
    parser.add_argument('--checkpoint', default=None,
                        help='a three-head checkpoint (default: the bundled multi_tiny_sur)')
    parser.add_argument('--iters', type=int, default=2, help='iterations per frame (M)')
    parser.add_argument('--repeats', type=int, default=50, help='timing repeats (median)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0, help='held-out clip seed')
    parser.add_argument('--height', type=int, default=0, help='frame height (0: the card)')
    parser.add_argument('--width', type=int, default=0, help='frame width (0: the card)')
    parser.add_argument('--json', default=None, help='also write the results to this file')


def run(args) -> int:
    """Entry point for the parsed arguments."""
    from ...models import bundled_checkpoint, resolve_checkpoint
    try:
        out = bench_heads(resolve_checkpoint(args.checkpoint) if args.checkpoint
                          else bundled_checkpoint('multi_tiny_sur'), args.iters,
                          args.repeats, args.threads, args.seed, args.height, args.width)
    except ValueError as exc:
        raise SystemExit('streamdeq bench heads: %s' % exc)
    for k in ('backbone', 'segmentation', 'fpn', 'rpn', 'box_head', 'detection', 'pose',
              'all_heads', 'cost_ratio'):
        print('%-14s %.3f%s' % (k, out[k], '' if k == 'cost_ratio' else ' ms'))
    print('%-14s %d detections, %d persons' % ('frame', out['detections'], out['persons']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print('wrote', args.json)
    return 0
