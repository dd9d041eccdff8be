"""Models bundled with the package (weights + model card per folder)."""
import os

MODELS_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = 'multi_192_sur'


def bundled_models():
    """Return the names of the bundled models (folders holding a ``model.pt``)."""
    return sorted(d for d in os.listdir(MODELS_DIR)
                  if os.path.isfile(os.path.join(MODELS_DIR, d, 'model.pt')))


def bundled_checkpoint(name: str = DEFAULT_MODEL) -> str:
    """Return the path of bundled model ``name``; ValueError naming the known ones."""
    path = os.path.join(MODELS_DIR, name, 'model.pt')
    if not os.path.isfile(path):
        raise ValueError('no bundled model %r (bundled: %s)'
                         % (name, ', '.join(bundled_models()) or 'none'))
    return path


def cache_root() -> str:
    """Return the cache of this package (``$STREAMDEQ_CACHE``, else ~/.cache/streamdeq_ros)."""
    return os.environ.get('STREAMDEQ_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'streamdeq_ros')


def resolve_checkpoint(name: str) -> str:
    """Return the checkpoint file ``name`` means; the one resolver of the node and every tool.

    - '' is the bundled default, a bundled model's name its file;
    - a folder is its ``model.pt`` (a bundled model's or an imported one's);
    - ``official:FILE[:small|large|xl|CONFIG.yaml]`` is an official MDEQ file, imported once
      into ``<cache>/official`` (keyed by its sha256; :mod:`streamdeq_ros.models.official`);
    - anything else is a file path, returned as given (checked when it is loaded).

    CheckpointError (one sentence) for an official file that cannot be imported or a folder
    without ``model.pt``.
    """
    from ..model.checkpoint import CheckpointError
    if not name:
        return bundled_checkpoint()
    if name in bundled_models():
        return bundled_checkpoint(name)
    from .official import official_folder, PREFIX
    if name.startswith(PREFIX):
        return official_folder(name, os.path.join(cache_root(), 'official'))
    if os.path.isdir(name):
        path = os.path.join(name, 'model.pt')
        if not os.path.isfile(path):
            raise CheckpointError('checkpoint folder %r has no model.pt (a model folder holds '
                                  'model.pt and model_card.json)' % name)
        return path
    return name
