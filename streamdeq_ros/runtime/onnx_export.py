"""The network as ONNX graphs (behind ``streamdeq export``); the iteration loop stays in Python.

Separate graphs, so that the warm start, ``iters``, the tolerance, the deadline and partial
results stay in :class:`~streamdeq_ros.runtime.stream.StreamSession` and ``iters`` stays a live
parameter under any runtime:

- ``inject.onnx``: normalised frame ``x`` (N, 3, H, W) -> injection ``u`` (the stem);
- ``f.onnx``: state ``z0 .. zB-1`` and ``u`` -> the next state (one application of f);
- the heads, one graph per head a caller may want alone (a runtime runs every node of a graph
  whatever outputs are fetched):

  - ``heads_segmentation.onnx``: ``z0 .. zB-1`` -> ``seg_logits``;
  - ``heads_detection.onnx`` (one image): ``z0 .. zB-1`` and ``score_threshold`` ->
    ``boxes``, ``labels``, ``scores`` (torchvision's Faster R-CNN post-processing as it
    exports: score filter, box decoding, NMS) and, with a pose head, ``keypoints`` (P, J, 3)
    of the detected persons scoring at least ``score_threshold``, in order.

``inject``, ``f`` and ``heads_segmentation`` have dynamic batch and spatial axes.
``heads_detection`` is for one image at the exported input size (the detector's anchors are
fixed by it, as in torchvision's own exports). ``card.json`` holds the model card, that size,
the graphs' input and output names (``heads_graphs``: each heads graph's outputs), the byte
size and sha256 of every graph file (``files``: a reader checks them before trusting a
directory) and the versions used. The exporter's known warnings about traced constants (the
detector's and pose head's Python-side shapes, opset details) are silenced; others show.
"""
import json
import os
from typing import Dict, List, Optional, Sequence
import warnings

import numpy as np
import torch
from torch import nn

from ..model.checkpoint import file_sha256, load_net
from ..model.heads.common import finest_features
from ..model.heads.pose import decode_heatmaps

OPSET = 17
#: the layout of the exported directory (ort_backend's cache is keyed by it); 3 adds ``files``
FORMAT = 3
#: warnings torch.onnx.export prints for every export of these graphs, all understood: traced
#: Python values that are constant for one exported size, and opset notes
KNOWN_EXPORT_WARNINGS = (
    (torch.jit.TracerWarning, ''),
    (UserWarning, 'Constant folding'),
    (UserWarning, 'Exporting aten::index operator of advanced indexing'),
    (FutureWarning, r'`torch.jit.script` is deprecated'),
    (DeprecationWarning, 'You are using the legacy TorchScript-based ONNX export'),
    (DeprecationWarning, 'The feature will be removed'),
)
#: the heads graphs: name -> the heads it runs (pose reads the detector's persons)
HEADS_GRAPHS = {'heads_segmentation': ('segmentation',), 'heads_detection': ('detection', 'pose')}


class _Inject(nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.inject(x)[0]


class _F(nn.Module):

    def __init__(self, backbone, branches: int):
        super().__init__()
        self.backbone, self.branches = backbone, branches

    def forward(self, *zu):
        z, u = list(zu[:-1]), [zu[-1]] + [None] * (self.branches - 1)
        return tuple(self.backbone.f(z, u))


class _Heads(nn.Module):

    def __init__(self, net, names: Sequence[str]):
        super().__init__()
        self.net, self.names = net, [n for n in names if n in net.heads]

    def forward(self, *z_thr):
        net = self.net
        detects = 'detection' in self.names
        z, thr = (list(z_thr[:-1]), z_thr[-1]) if detects else (list(z_thr), None)
        out: List[torch.Tensor] = []
        features = finest_features(z) if {'segmentation', 'pose'} & set(self.names) else None
        if 'segmentation' in self.names:
            out.append(net.heads['segmentation'](z, features))
        if detects:
            d = net.heads['detection'](z)[0][0]
            out += [d['boxes'], d['labels'], d['scores']]
            if 'pose' in self.names:
                keep = (d['labels'] == net.person_label) & (d['scores'] >= thr)
                size = (z[0].shape[-2] * net.state_stride, z[0].shape[-1] * net.state_stride)
                # one extra whole-image box, dropped again: an image without persons would
                # otherwise give zero-sized tensors the graph cannot reshape (per box
                # independent, so the real boxes' joints are unchanged)
                extra = z[0].new_tensor([[0.0, 0.0, float(size[1]), float(size[0])]])
                heat, crops = net.heads['pose'](z, [torch.cat([d['boxes'][keep], extra])],
                                                features)
                out.append(decode_heatmaps(heat, crops, size)[:-1])
        return tuple(out)


def export_graph(module: nn.Module, args: tuple, path: str, inputs: Sequence[str],
                 outputs: Sequence[str], axes: Dict):
    """Export ``module`` (eval mode) on example ``args`` to the ONNX file ``path``."""
    with torch.no_grad(), warnings.catch_warnings():
        for category, message in KNOWN_EXPORT_WARNINGS:
            warnings.filterwarnings('ignore', message=message, category=category)
        torch.onnx.export(module.eval(), args, path, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def f_graph_plan(backbone, z: Sequence[torch.Tensor], u0: torch.Tensor):
    """Return (module, args, inputs, outputs, axes) of the ``f`` graph of ``backbone``."""
    zn = ['z%d' % i for i in range(len(z))]
    spatial = {0: 'batch', 2: 'height', 3: 'width'}
    return (_F(backbone, backbone.cfg.num_branches), tuple(z) + (u0,), zn + ['u'],
            ['next_' + n for n in zn],
            dict({n: spatial for n in zn + ['u']}, **{'next_' + n: spatial for n in zn}))


def output_names(heads: Sequence[str]) -> List[str]:
    """Return the heads graphs' outputs for ``heads``, in their order."""
    names = ['seg_logits'] if 'segmentation' in heads else []
    if 'detection' in heads:
        names += ['boxes', 'labels', 'scores'] + (['keypoints'] if 'pose' in heads else [])
    return names


def _example(net, h: int, w: int):
    """Two generated street frames and their streamed states (persons detected in them).

    Tracing follows the example's branches: a state in which the detector finds persons
    makes the pose path part of the detection heads graph.
    """
    from ..data.street import StreetClip
    from .stream import StreamSession
    frames, states = [], []
    for seed in (3, 5):
        clip = StreetClip(seed, h, w)
        session = StreamSession(net.backbone)
        for t in range(8):
            xt = net.normalize(torch.from_numpy(np.ascontiguousarray(clip[t][0]))
                               .permute(2, 0, 1)[None])
            session.step(xt, iters=2)
        frames.append(xt)
        states.append(session.state)
    return torch.cat(frames), [torch.cat(ts) for ts in zip(*states)]


def graph_files(directory: str, names: Sequence[str]) -> Dict[str, dict]:
    """Return ``{file: {'bytes', 'sha256'}}`` of the graph files ``names`` in ``directory``."""
    return {n: {'bytes': os.path.getsize(os.path.join(directory, n)),
                'sha256': file_sha256(os.path.join(directory, n))} for n in names}


def export_onnx(checkpoint: str, out_dir: str, height: int = 0, width: int = 0,
                digest: Optional[str] = None) -> dict:
    """Write the graphs and ``card.json`` for ``checkpoint`` to ``out_dir``; return the card.

    ``height``/``width`` (default the card's input size) only shape the example inputs; the
    graphs take any size that is a multiple of the network's stride. ``digest``: the
    checkpoint's sha256 when the caller has it already.
    """
    net, card = load_net(checkpoint)
    net.eval()
    h = height or card['input']['height']
    w = width or card['input']['width']
    backbone = net.backbone
    x, z = _example(net, h, w)
    with torch.no_grad():
        u = backbone.inject(x)
    zn = ['z%d' % i for i in range(len(z))]
    spatial = {0: 'batch', 2: 'height', 3: 'width'}
    os.makedirs(out_dir, exist_ok=True)
    heads = list(net.heads.keys())
    plans = {
        'inject': (_Inject(backbone), (x,), ['x'], ['u'], {'x': spatial, 'u': spatial}),
        'f': f_graph_plan(backbone, z, u[0]),
    }
    heads_graphs = {}
    for name, names in HEADS_GRAPHS.items():
        outs = output_names([h for h in heads if h in names])
        if not outs:
            continue
        heads_graphs[name] = outs
        if 'detection' in names:
            plans[name] = (_Heads(net, names), tuple(t[:1] for t in z) + (torch.tensor(0.5),),
                           zn + ['score_threshold'], outs, {})
        else:
            plans[name] = (_Heads(net, names), tuple(z), zn, outs,
                           dict({n: spatial for n in zn}, **{o: spatial for o in outs}))
    for name, (module, args, inputs, outputs, axes) in plans.items():
        export_graph(module, args, os.path.join(out_dir, name + '.onnx'), inputs, outputs, axes)
    graphs = {g: g + '.onnx' for g in plans}
    info = {'format': FORMAT, 'checkpoint_sha256': digest or file_sha256(checkpoint),
            'opset': OPSET, 'torch': torch.__version__, 'input_size': [h, w],
            'graphs': graphs, 'files': graph_files(out_dir, graphs.values()), 'state': zn,
            'heads_graphs': heads_graphs, 'heads_outputs': output_names(heads), 'card': card}
    with open(os.path.join(out_dir, 'card.json'), 'w') as fh:
        json.dump(info, fh, indent=1)
    return info
