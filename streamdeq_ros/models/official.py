"""Official MDEQ Cityscapes checkpoints as model folders of this package.

``locuslab/mdeq`` releases MDEQ-Small and MDEQ-XL as Cityscapes segmentation models (``.pkl``
state dicts saved with ``torch.save``; read here with ``weights_only=True`` by
:func:`streamdeq_ros.model.official.load_official`). :func:`import_official` turns one into a
folder like the bundled ones (``model.pt`` + ``model_card.json``) whose card states what the
official test does (``lib/datasets/base_dataset.py`` and ``lib/core/seg_function.py`` of the
release):

- input: RGB (the official reader flips OpenCV's BGR), scaled to [0, 1], normalised with the
  ImageNet mean and std; the full Cityscapes frame, 1024x2048, as its test runs it;
- output: logits at 1/4 of the input, upsampled bilinearly with ``align_corners`` false
  (``F.upsample``'s default there) before the arg-max; the branches are joined with
  ``align_corners`` true inside the head, as in the official head;
- the 19 Cityscapes train-id classes with the Cityscapes colours;
- solver ``broyden`` with the configuration's ``F_THRES`` for a single frame, variant IL (the
  paper's IL-StreamDEQ uses the released weights without training).

The configuration is ``small``, ``large``, ``xl``, an official experiment YAML, or found from
the file's shapes. The card keeps the source file's name and sha256 and the sentence the
loader returned. :func:`official_folder` is the cache behind ``official:FILE[:CONFIG]``.
"""
import json
import os
import shutil
from typing import Optional, Tuple

import torch

from ..data.cityscapes import PALETTE, TRAIN_CLASSES
from ..model.checkpoint import CheckpointError, file_sha256, load_safely, save_checkpoint
from ..model.mdeq import CONFIGS, get_config, MDEQConfig
from ..model.network import IMAGENET_MEAN, IMAGENET_STD, StreamDEQNet
from ..model.official import load_official, official_to_native, read_official

#: the configurations a released file may have, in the order their shapes are tried
OFFICIAL_CONFIGS = ('small', 'large', 'xl')
#: the official test's input size (TEST.IMAGE_SIZE 2048x1024, one scale)
TEST_SIZE = (1024, 2048)
PREFIX = 'official:'


def read_config(config: str) -> MDEQConfig:
    """Return the configuration ``config`` names: a name, or an official experiment YAML."""
    if config.endswith(('.yaml', '.yml')):
        import yaml
        try:
            with open(config) as fh:
                data = yaml.safe_load(fh)
        except OSError as exc:
            raise CheckpointError('official configuration %r cannot be read: %s'
                                  % (config, exc.strerror or exc)) from None
        except yaml.YAMLError as exc:
            raise CheckpointError('official configuration %r is not valid YAML: %s'
                                  % (config, ' '.join(str(exc).split())[:200])) from None
        if not isinstance(data, dict):
            raise CheckpointError('official configuration %r is not a mapping of settings'
                                  % config)
        try:
            return MDEQConfig.from_official(data, os.path.splitext(os.path.basename(config))[0])
        except ValueError as exc:
            raise CheckpointError('official configuration %r: %s' % (config, exc)) from None
    if config not in CONFIGS or config == 'tiny':
        raise CheckpointError('unknown official configuration %r (give small, large, xl or an '
                              'official experiment .yaml)' % config)
    return get_config(config)


def guess_config(path: str) -> str:
    """Return the named configuration whose shapes fit the file at ``path``."""
    native, _ = official_to_native(read_official(path))
    stem = native.get('downsample.0.weight')
    hidden = native.get('fullstage.branches.0.blocks.0.conv1.parametrizations.weight.original1')
    for name in OFFICIAL_CONFIGS:
        cfg = get_config(name)
        if stem is not None and stem.shape[0] == cfg.num_channels[0] and (
                hidden is None or hidden.shape[0] == cfg.num_channels[0] * cfg.expansion):
            return name
    raise CheckpointError('official checkpoint %r fits none of the released configurations '
                          '(%s): name its experiment .yaml' % (path, ', '.join(OFFICIAL_CONFIGS)))


def official_card(cfg: MDEQConfig, num_classes: int, kernel: int, source: str, sha256: str,
                  sentence: str) -> dict:
    """Return the model card of an imported official segmentation model."""
    seg = {'num_classes': num_classes, 'final_conv_kernel': kernel, 'ignore_index': 255}
    if num_classes == len(TRAIN_CLASSES):
        seg.update(classes=list(TRAIN_CLASSES), palette=[list(c) for c in PALETTE])
    return {
        'name': 'official-mdeq-%s-cityscapes' % cfg.name,
        'task': 'segmentation',
        'variant': 'il',
        'trained_on': 'Cityscapes (fine annotations), by the MDEQ authors (locuslab/mdeq); '
                      'real street scenes',
        'config': cfg.to_dict(),
        'heads': {'segmentation': seg},
        'input': {'height': TEST_SIZE[0], 'width': TEST_SIZE[1], 'mean': list(IMAGENET_MEAN),
                  'std': list(IMAGENET_STD), 'color': 'rgb'},
        'output': {'upsample': 'bilinear', 'align_corners': False},
        'inference': {'solver': 'broyden', 'single_frame_iters': cfg.f_thres},
        'source': {'file': os.path.basename(source), 'sha256': sha256, 'loaded': sentence,
                   'code': 'locuslab/mdeq'},
    }


def import_official(source: str, config: Optional[str], out: str,
                    sha256: Optional[str] = None) -> Tuple[str, dict]:
    """Write ``source`` (an official segmentation file) as a model folder ``out``.

    Returns (path of ``out/model.pt``, card). CheckpointError, one sentence, when the file is
    not an official segmentation checkpoint of ``config`` (None: found from its shapes).
    ``sha256``: the file's, when the caller has hashed it already.
    """
    check_out(out)                       # before the (long) load
    cfg = read_config(config) if config else get_config(guess_config(source))
    net, sentence = load_official(source, cfg)
    if 'segmentation' not in net.heads:
        raise CheckpointError('official checkpoint %r has no segmentation head (an ImageNet '
                              'classification model): train one on it with `streamdeq train '
                              '--init official:%s`' % (source, source))
    head = net.specs['segmentation']
    card = official_card(cfg, int(head['num_classes']), int(head.get('final_conv_kernel', 1)),
                         source, sha256 or file_sha256(source), sentence)
    return _write_folder(out, net, card), card


def random_official(config: str, out: str, seed: int = 0) -> Tuple[str, dict]:
    """Write a folder shaped like an imported ``config`` model, with random weights.

    For timing where the released file is not at hand: the network, the card's input size,
    normalisation, classes and solver are an import's; the weights are random (seed ``seed``)
    and the card says so (``trained_on``), so it is never mistaken for a perception model.
    Returns (path of ``out/model.pt``, card).
    """
    check_out(out)
    cfg = read_config(config)
    torch.manual_seed(seed)
    net = StreamDEQNet(cfg, {'segmentation': {'num_classes': len(TRAIN_CLASSES),
                                              'final_conv_kernel': 1}}).eval()
    source = 'random weights, seed %d' % seed
    card = official_card(cfg, len(TRAIN_CLASSES), 1, source, '',
                         'random weights of the released %s shapes (for timing only)' % cfg.name)
    card['name'] = 'random-mdeq-%s-shapes' % cfg.name
    card['trained_on'] = 'nothing: random weights of the released shapes, for timing only'
    return _write_folder(out, net, card), card


#: what a model folder holds; a folder with anything else is never replaced
FOLDER_FILES = {'model.pt', 'model_card.json'}


def check_out(out: str):
    """Refuse ``out`` (CheckpointError, one sentence) unless it is new or a model folder.

    A model folder is replaced whole, so a folder that holds anything else (``--out ~/models``
    meant as "put it in there") is refused instead of emptied.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise CheckpointError('--out %r is a file, not a folder: give the model folder to write'
                              % out)
    if os.path.isdir(out):
        other = sorted(set(os.listdir(out)) - FOLDER_FILES)
        if other:
            raise CheckpointError(
                '--out %r already holds other files (%s): give a new folder, e.g. %r; a model '
                'folder is replaced whole' % (out, ', '.join(other[:3]) + (
                    ', ...' if len(other) > 3 else ''), os.path.join(out, 'mdeq_cityscapes')))


def _write_folder(out: str, net: StreamDEQNet, card: dict) -> str:
    """Write ``net`` and ``card`` as the model folder ``out`` (replaced whole, atomically)."""
    check_out(out)
    tmp = out.rstrip('/') + '.tmp%d' % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        save_checkpoint(os.path.join(tmp, 'model.pt'), net, card)
        with open(os.path.join(tmp, 'model_card.json'), 'w') as fh:
            json.dump(card, fh, indent=1)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as exc:
        raise CheckpointError('cannot write the model folder %r: %s'
                              % (out, exc.strerror or exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(out, 'model.pt')


def parse_official(spec: str) -> Tuple[str, Optional[str]]:
    """``official:FILE[:CONFIG]`` -> (FILE, CONFIG or None)."""
    rest = spec[len(PREFIX):]
    path, sep, config = rest.rpartition(':')
    if sep and (config in OFFICIAL_CONFIGS or config.endswith(('.yaml', '.yml'))):
        return path, config
    return rest, None


def official_folder(spec: str, cache: str) -> str:
    """Return the model file for ``official:FILE[:CONFIG]``, imported once into ``cache``.

    The folder is keyed by the file's sha256 and the configuration, so a changed file is
    imported again and an unchanged one is read from the cache.
    """
    path, config = parse_official(spec)
    if not path:
        raise CheckpointError('%r names no file (official:FILE[:small|large|xl|CONFIG.yaml])'
                              % spec)
    if not os.path.isfile(path):
        load_safely(path, 'official checkpoint')        # raises its "does not exist" sentence
    if config:
        read_config(config)                  # a bad name or YAML says so before any hashing
    digest = file_sha256(path)
    name = config if config in OFFICIAL_CONFIGS else (
        'yaml-' + file_sha256(config)[:12] if config else 'auto')
    out = os.path.join(cache, '%s-%s' % (digest[:16], name))
    model = os.path.join(out, 'model.pt')
    try:
        with open(os.path.join(out, 'model_card.json')) as fh:
            if json.load(fh).get('source', {}).get('sha256') == digest and os.path.isfile(model):
                return model
    except (OSError, ValueError):
        pass
    return import_official(path, config, out, digest)[0]
