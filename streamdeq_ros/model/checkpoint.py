"""Checkpoints: tensors and a model card in one file, loaded with ``weights_only=True``.

A checkpoint is ``{'format': FORMAT, 'card': {...}, 'state_dict': {...}}`` written by
``torch.save``; a training checkpoint adds ``optimizer``, ``scheduler`` and ``step``. Only
tensors, numbers, strings, lists and dicts are stored, so loading never unpickles code. The card
says what the weights are: the MDEQ config, the heads and their classes, the input size and
normalisation, the training variant and command, the data seed and the measured metrics.
"""
import hashlib
import json
import os
import pickle
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from .card import card_problems
from .network import build_net, StreamDEQNet

FORMAT = 'streamdeq_ros/checkpoint/1'
ZIP_MAGIC = b'PK\x03\x04'          # torch.save's format since PyTorch 1.6
PICKLE_MAGIC = b'\x80'              # the legacy format: a pickle (protocol >= 2)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message is one sentence saying why."""


def save_checkpoint(path: str, net: StreamDEQNet, card: Mapping,
                    extra: Optional[Mapping[str, Any]] = None):
    """Write weights + card (+ ``extra`` training state) atomically to ``path``."""
    blob = {'format': FORMAT, 'card': json.loads(json.dumps(card)),
            'state_dict': {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    if extra:
        blob.update(extra)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    torch.save(blob, tmp)
    os.replace(tmp, path)


def file_sha256(path: str) -> str:
    """Return the sha256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, 'rb') as fh:
        for block in iter(lambda: fh.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def clause(text: str, limit: int = 300) -> str:
    """Return ``text`` on one line, cut at a word boundary (with '...') past ``limit`` chars."""
    text = ' '.join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(' ', 0, limit)
    return text[:cut if cut > limit // 2 else limit].rstrip(' ,;:') + ' ...'


def _unsafe_reason(exc: Exception) -> str:
    """Return the sentence of a weights_only refusal that says what was blocked."""
    text = ' '.join(str(exc).split())
    m = re.search(r'((?:Trying to load unsupported|Unsupported (?:global|operand)).*?)'
                  r'(?:\. |\.?$)', text)
    if m:
        return m.group(1).strip()
    return clause(text.split('. ')[0]) if text else type(exc).__name__


def load_safely(path: str, what: str = 'checkpoint'):
    """Return ``torch.load(path, weights_only=True)``; CheckpointError says what is wrong.

    ``what`` names the file in the messages: a missing, empty, foreign (not torch.save), code
    carrying or damaged file each get their own sentence.
    """
    if not os.path.isfile(path):
        raise CheckpointError('%s %r does not exist or is not a file' % (what, path))
    with open(path, 'rb') as fh:
        head = fh.read(8)
    if not head:
        raise CheckpointError('%s %r is an empty file' % (what, path))
    if not head.startswith(ZIP_MAGIC) and head[:1] != PICKLE_MAGIC:
        raise CheckpointError('%s %r is not a file written by torch.save (that is a zip '
                              'archive; this one starts with %r)' % (what, path, head))
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError('%s %r was refused because loading it would run code '
                              '(streamdeq_ros loads with weights_only=True): %s'
                              % (what, path, _unsafe_reason(exc))) from None
    except Exception as exc:      # noqa: B902 - any other failure means "damaged"
        first = clause(str(exc)) or type(exc).__name__
        raise CheckpointError('%s %r is damaged or truncated: torch.load failed with %s: %s'
                              % (what, path, type(exc).__name__, first)) from None


def read_checkpoint(path: str) -> Dict[str, Any]:
    """Load the raw checkpoint dict with ``weights_only=True``; raise CheckpointError."""
    blob = load_safely(path)
    if not isinstance(blob, dict) or blob.get('format') != FORMAT:
        raise CheckpointError('checkpoint %r is not a streamdeq_ros checkpoint (expected format '
                              '%r)' % (path, FORMAT))
    if not isinstance(blob.get('card'), dict) or not isinstance(blob.get('state_dict'), dict):
        raise CheckpointError('checkpoint %r has no model card or no state_dict' % (path,))
    return blob


def check_card(card: Mapping) -> Optional[str]:
    """Return what is wrong with a model card (its problems joined in one clause), or None."""
    problems = card_problems(card)
    return '; '.join(problems) if problems else None


def load_net(path: str, device: str = 'cpu') -> Tuple[StreamDEQNet, Dict[str, Any]]:
    """Build the network a checkpoint describes, load its weights strictly, return (net, card)."""
    blob = read_checkpoint(path)
    card = blob['card']
    problem = check_card(card)
    if problem:
        raise CheckpointError('checkpoint %r has an invalid model card: %s' % (path, problem))
    try:
        net = build_net(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError('checkpoint %r has an invalid model card: %s'
                              % (path, exc)) from None
    try:
        net.load_state_dict(blob['state_dict'], strict=True)
    except RuntimeError as exc:
        detail = clause(str(exc))
        raise CheckpointError('checkpoint %r does not match the network its card describes: %s'
                              % (path, detail)) from None
    for name, t in blob['state_dict'].items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError('checkpoint %r has non-finite values in %s' % (path, name))
    return net.to(device).eval(), card
