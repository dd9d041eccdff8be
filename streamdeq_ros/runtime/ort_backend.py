"""The network run by onnxruntime from ``streamdeq export`` graphs, behind the torch interface.

:class:`OrtNet` stands in for :class:`~streamdeq_ros.model.network.StreamDEQNet` wherever the
pipeline and the sessions use one: ``backbone`` (``inject``, ``f``, ``zeros``,
``state_matches``), ``perceive``, ``normalize``, ``persons`` and the head metadata. The
iteration loop, warm start, tolerance, deadline and partial results stay in
:class:`~streamdeq_ros.runtime.stream.StreamSession`, so ``iters`` stays live. States are torch CPU
tensors shared with onnxruntime as numpy views. Graphs come from a directory that
:func:`~streamdeq_ros.runtime.onnx_export.export_onnx` wrote, or are exported once into a cache
directory keyed by the checkpoint's hash (:func:`ort_net`). A directory is trusted only when its
``card.json`` reads, is of this format and every graph file has the size and sha256 it lists
(:func:`export_problem`); a cached one that fails is exported again, and the ``.tmp``
folders that a killed export left are removed.
"""
import glob
import json
import os
import re
import shutil
from typing import List, Optional, Sequence

import numpy as np
import torch

from .onnx_export import export_onnx, FORMAT, graph_files, output_names
from ..model.checkpoint import file_sha256, load_net
from ..model.network import Perception


#: how a session's idle intra-op threads wait (:func:`ort_session`)
SPINNING = ('off', 'on', 'in-run')


def ort_session(path: str, threads: int = 0, spinning: str = 'off', device: str = 'cpu'):
    """Return an onnxruntime session of the graph ``path`` (``threads``: 0 = its default).

    ``spinning``: how idle threads wait. 'off' (the node's): they sleep. 'on' (onnxruntime's
    own default): they spin, between runs too. 'in-run': they spin during a run and stop at
    its end (``session.force_spinning_stop``). Only the benchmarks use the last two.
    ``device``: 'cpu' runs the CPU provider only; 'cuda[:N]' the CUDA provider (device N)
    when onnxruntime has it, else the CPU one (the runtime's words then say so).
    """
    import onnxruntime as ort
    if spinning not in SPINNING:
        raise ValueError('spinning must be one of %s, not %r' % (', '.join(SPINNING), spinning))
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    # onnxruntime's threads spin between runs by default; beside torch's and the node's other
    # threads that made a frame 72 ms instead of 11 ms on 2 cores (multi_tiny_sur, 640x480),
    # and spinning within runs only still made the default model's frame slower (benchmarks.md)
    opts.add_session_config_entry('session.intra_op.allow_spinning',
                                  '0' if spinning == 'off' else '1')
    if spinning == 'in-run':
        opts.add_session_config_entry('session.force_spinning_stop', '1')
    providers: list = ['CPUExecutionProvider']
    if device.startswith('cuda') and 'CUDAExecutionProvider' in ort.get_available_providers():
        index = int(device.split(':')[1]) if ':' in device else 0
        providers.insert(0, ('CUDAExecutionProvider', {'device_id': index}))
    return ort.InferenceSession(path, opts, providers=providers)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class OrtBackbone:
    """``inject`` and ``f`` by onnxruntime; shapes and zero states from the torch backbone."""

    def __init__(self, torch_backbone, inject, f, state_names: Sequence[str]):
        """Wrap two onnxruntime sessions; ``torch_backbone`` gives shapes only."""
        self.torch = torch_backbone
        self.cfg = torch_backbone.cfg
        self.inject_sess, self.f_sess, self.names = inject, f, list(state_names)

    def parameters(self):
        """Return the torch backbone's tensors (the device the states live on: the CPU)."""
        return self.torch.parameters()

    def inject(self, x: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """Return the injection u = (u0, None, ...) as the torch backbone does."""
        self.torch.check_input(x)
        u0 = self.inject_sess.run(['u'], {'x': _np(x)})[0]
        return [torch.from_numpy(u0)] + [None] * (self.cfg.num_branches - 1)

    def zeros(self, u):
        """Return the all-zero state for ``u``."""
        return self.torch.zeros(u)

    def state_matches(self, z, u) -> bool:
        """Return whether ``z`` can warm-start a frame with injection ``u``."""
        return self.torch.state_matches(z, u)

    def f(self, z: Sequence[torch.Tensor], u) -> List[torch.Tensor]:
        """Apply the equilibrium block once."""
        feeds = {n: _np(t) for n, t in zip(self.names, z)}
        feeds['u'] = _np(u[0])
        return [torch.from_numpy(a) for a in self.f_sess.run(None, feeds)]


class OrtNet:
    """A :class:`StreamDEQNet` stand-in whose computation is onnxruntime's (see module doc)."""

    def __init__(self, net, directory: str, threads: int = 0, device: str = 'cpu'):
        """Use the graphs in ``directory`` for ``net`` (a loaded torch network: metadata).

        ``device``: the providers' (see :func:`ort_session`); states stay torch CPU tensors.
        """
        problem = export_problem(directory)
        if problem:
            raise ValueError('%s (export again with streamdeq export)' % problem)
        with open(os.path.join(directory, 'card.json')) as fh:
            info = json.load(fh)
        self.torch_net = net
        self.info = info
        self.directory = directory
        self.device = device
        #: thread count -> that many threads' sessions of every graph (made when first used)
        self.sessions = {}
        self.threads = -1
        self.backbone = OrtBackbone(net.backbone, None, None, info['state'])
        self.set_threads(threads)
        self.providers = self.backbone.f_sess.get_providers()

    def set_threads(self, threads: int):
        """Run with sessions of ``threads`` intra-op threads (0: onnxruntime's default).

        onnxruntime fixes a session's pool when it is made, so each count has its own
        sessions, made the first time the count is asked for and kept.
        """
        if threads == self.threads:
            return
        if threads not in self.sessions:
            self.sessions[threads] = {g: ort_session(os.path.join(self.directory, path), threads,
                                                     device=self.device)
                                      for g, path in self.info['graphs'].items()}
        graphs = self.sessions[threads]
        self.backbone.inject_sess, self.backbone.f_sess = graphs['inject'], graphs['f']
        #: per heads graph: (session, its outputs, its input names)
        self.heads_graphs = {g: (graphs[g], outs, [i.name for i in graphs[g].get_inputs()])
                             for g, outs in self.info['heads_graphs'].items()}
        self.threads = threads

    def __getattr__(self, name):
        # the rest is the torch network's: metadata (cfg, heads, det_classes, person_label,
        # ...), normalize and persons
        return getattr(self.__dict__['torch_net'], name)

    def eval(self) -> 'OrtNet':  # noqa: A003 - the torch module's method it stands in for
        """Return self (inference only)."""
        return self

    def perceive(self, z: List[torch.Tensor], heads: Optional[Sequence[str]] = None,
                 score_threshold: float = 0.5) -> Perception:
        """Run the named heads (default all); the same structure as the torch network gives.

        Only the heads graphs holding a named head run: segmentation once for the batch,
        detection (with pose, whose keypoints are returned when pose is named) per image, as
        exported.
        """
        out = Perception()
        names = self.backbone.names
        wanted = set(output_names(list(self.torch_net.heads.keys()) if heads is None
                                  else list(heads)))
        runs = [g for g in self.heads_graphs.values() if wanted & set(g[1])]
        thr = np.asarray(score_threshold, np.float32)

        def run(graph, z_):
            sess, outs, inputs = graph
            feeds = {n: _np(t) for n, t in zip(names, z_)}
            feeds['score_threshold'] = thr
            return dict(zip(outs, (torch.from_numpy(a) for a in sess.run(
                outs, {k: v for k, v in feeds.items() if k in inputs}))))

        seg, dets, kps, index = [], [], [], []
        for graph in runs:
            if 'seg_logits' in graph[1]:
                seg.append(run(graph, z)['seg_logits'])
                continue
            for i in range(z[0].shape[0]):
                got = run(graph, [t[i:i + 1] for t in z])
                d = {'boxes': got['boxes'], 'labels': got['labels'], 'scores': got['scores']}
                dets.append(d)
                if 'keypoints' in got and 'keypoints' in wanted:
                    kps.append(got['keypoints'])
                    index.append(torch.nonzero(self.persons(d, score_threshold)).flatten())
        out.seg_logits = torch.cat(seg) if seg else None
        out.detections = dets or None
        out.keypoints = kps or None
        out.person_index = index or None
        return out


def export_problem(directory: str) -> Optional[str]:
    """Return why ``directory`` is not a complete export of this format (one clause), or None."""
    path = os.path.join(directory, 'card.json')
    try:
        with open(path) as fh:
            info = json.load(fh)
    except FileNotFoundError:
        return '%s has no card.json' % directory
    except (OSError, ValueError) as exc:
        return '%s: card.json is unreadable (%s)' % (directory, exc)
    if not isinstance(info, dict) or info.get('format') != FORMAT:
        found = info.get('format', 1) if isinstance(info, dict) else '?'
        return '%s holds graphs of export format %s; this version reads format %d' \
            % (directory, found, FORMAT)
    files = info.get('files')
    if not isinstance(files, dict) or set(files) != set(info.get('graphs', {}).values()):
        return '%s: card.json does not list every graph file with its size and hash' % directory
    for name, want in files.items():
        full = os.path.join(directory, name)
        if not os.path.isfile(full):
            return '%s: %s is missing' % (directory, name)
        size = os.path.getsize(full)
        if size != want.get('bytes'):
            return '%s: %s has %d bytes, card.json says %s (damaged or cut short)' \
                % (directory, name, size, want.get('bytes'))
        if graph_files(directory, [name])[name]['sha256'] != want.get('sha256'):
            return '%s: %s does not have the sha256 card.json lists (damaged)' % (directory, name)
    return None


def _remove_stale_exports(root: str):
    """Remove the ``<dir>.tmp<pid>`` folders of exports whose process is gone."""
    for tmp in glob.glob(os.path.join(root, '*.tmp*')):
        m = re.search(r'\.tmp(\d+)$', tmp)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:         # alive, someone else's
            pass


def cache_dir() -> str:
    """Return where exported graphs are cached (``$STREAMDEQ_CACHE`` or ~/.cache)."""
    from ..models import cache_root
    return os.path.join(cache_root(), 'onnx')


def ort_net(checkpoint: str, input_size=None, threads: int = 0, device: str = 'cpu'):
    """Return (OrtNet, card) for ``checkpoint``, exporting its graphs once into the cache.

    ``input_size`` (H, W; default the card's) is the size the detection graph is exported for;
    ``device`` picks the providers (:func:`ort_session`). A cached export that fails
    :func:`export_problem` is exported again. Raises ImportError with what to install when
    onnxruntime is missing (and the import's own error when it is installed but broken).
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError("backend 'onnxruntime' cannot import onnxruntime (%s); it needs the "
                          'onnxruntime and onnx packages (pip install onnxruntime onnx)'
                          % exc) from None
    net, card = load_net(checkpoint)
    h, w = input_size or (card['input']['height'], card['input']['width'])
    digest = file_sha256(checkpoint)
    root = cache_dir()
    directory = os.path.join(root, '%s-%dx%d-torch%s-format%d'
                             % (digest[:16], w, h, torch.__version__, FORMAT))
    if os.path.isdir(root):
        _remove_stale_exports(root)
    if export_problem(directory):
        tmp = '%s.tmp%d' % (directory, os.getpid())
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            export_onnx(checkpoint, tmp, h, w, digest=digest)
        except Exception as exc:    # noqa: B902 - the exporter's errors have many types
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError('cannot export %s to ONNX at %dx%d: %s'
                             % (checkpoint, w, h, exc)) from exc
        if export_problem(directory):           # damaged (or another process's half): replace
            shutil.rmtree(directory, ignore_errors=True)
        if not os.path.exists(directory):
            os.replace(tmp, directory)
        shutil.rmtree(tmp, ignore_errors=True)
    return OrtNet(net, directory, threads, device), card
