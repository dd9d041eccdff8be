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


def resolve_checkpoint(name: str) -> str:
    """Return the checkpoint path of ``name``.

    '' is the bundled default; a bundled model's name gives its file; anything else is a path,
    returned as given (it is checked when it is loaded).
    """
    if not name:
        return bundled_checkpoint()
    return bundled_checkpoint(name) if name in bundled_models() else name
