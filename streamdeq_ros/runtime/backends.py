"""Open a checkpoint's network for a runtime: eager PyTorch or onnxruntime.

The one home of the choice the node's ``backend`` parameter and ``streamdeq bench node
--backend`` make: both return a network with the same interface (see
:mod:`streamdeq_ros.runtime.ort_backend`), its card and the device it runs on, in words.
"""
from typing import Optional, Tuple

from ..model.checkpoint import load_net

#: the runtimes a network can run under
BACKENDS = ('torch', 'onnxruntime')


def open_net(checkpoint: str, backend: str = 'torch', device: str = 'cpu',
             input_size: Optional[Tuple[int, int]] = None, threads: int = 0):
    """Return (network, card, device in words) of ``checkpoint`` under ``backend``.

    ``device`` is torch's (onnxruntime picks its own providers); ``input_size`` (H, W) and
    ``threads`` are what an onnxruntime export and session are made for. ValueError for an
    unknown backend; ImportError (what to install) when onnxruntime is missing.
    """
    if backend == 'onnxruntime':
        from .ort_backend import ort_net
        net, card = ort_net(checkpoint, input_size, threads)
        return net, card, 'onnxruntime (%s)' % ', '.join(net.providers)
    if backend != 'torch':
        raise ValueError('unknown backend %r (known: %s)' % (backend, ', '.join(BACKENDS)))
    net, card = load_net(checkpoint, device)
    return net, card, device
