"""Open a checkpoint's network for a runtime: eager PyTorch or onnxruntime, or the better one.

The one home of the choice the node's ``backend`` parameter, ``streamdeq bench node
--backend`` and ``streamdeq eval-streaming --backend`` make: each returns a network with the
same interface (see :mod:`streamdeq_ros.runtime.ort_backend`), its card, the torch device its
states live on and the runtime in words.

``auto`` (the default) runs onnxruntime when the network runs on the CPU and onnxruntime is
installed, torch on CUDA (docs/benchmarks.md, "Which backend": on this project's 2-core CPU
onnxruntime's f runs at about twice eager torch's rate, and the export costs about 2 s on the
first start only). When onnxruntime cannot be used for a checkpoint (its import, the export or
a session fails), ``auto`` runs torch and says why in one line; a checkpoint that cannot be
read stops either way.
"""
from importlib.util import find_spec
from typing import Optional, Tuple

from ..model.checkpoint import CheckpointError, clause, load_net

#: the values of the ``backend`` parameter
BACKENDS = ('auto', 'torch', 'onnxruntime')


def onnxruntime_installed() -> bool:
    """Return whether onnxruntime and onnx (its exporter's dependency) can be imported."""
    return find_spec('onnxruntime') is not None and find_spec('onnx') is not None


def _reason(exc: BaseException) -> str:
    """Return the first line of ``exc``'s message as a short clause."""
    lines = str(exc).strip().splitlines()
    return clause(lines[0] if lines else type(exc).__name__, 160)


def choose_backend(backend: str, device: str) -> Tuple[str, str]:
    """Return (the runtime ``backend`` means on torch ``device``, why, for ``auto``)."""
    if backend not in BACKENDS:
        raise ValueError('unknown backend %r (known: %s)' % (backend, ', '.join(BACKENDS)))
    if backend != 'auto':
        return backend, ''
    if device.startswith('cuda'):
        return 'torch', 'auto: torch on CUDA'
    if not onnxruntime_installed():
        return 'torch', 'auto: torch, onnxruntime is not installed'
    return 'onnxruntime', 'auto: onnxruntime on the CPU'


def open_net(checkpoint: str, backend: str = 'auto', device: str = 'cpu',
             input_size: Optional[Tuple[int, int]] = None, threads: int = 0):
    """Return (network, card, torch device, runtime in words) of ``checkpoint``.

    ``device`` is torch's (onnxruntime runs on the CPU here, where the states then live);
    ``input_size`` (H, W) and ``threads`` are what an onnxruntime export and session are made
    for. ValueError for an unknown backend; ImportError (what to install) when onnxruntime is
    asked for and missing.
    """
    chosen, why = choose_backend(backend, device)
    if chosen == 'onnxruntime':
        from .ort_backend import ort_net
        try:
            net, card = ort_net(checkpoint, input_size, threads, device)
        except CheckpointError:
            raise
        except Exception as exc:    # noqa: B902 - under auto, whatever onnxruntime failed with
            if backend != 'auto':
                raise
            why = 'auto: torch, %s' % _reason(exc)
        else:
            words = 'onnxruntime (%s)' % ', '.join(net.providers)
            return net, card, 'cpu', words + ('; %s' % why if why else '')
    net, card = load_net(checkpoint, device)
    return net, card, device, 'torch' + ('; %s' % why if why else '')
