"""Import an official MDEQ Cityscapes checkpoint (locuslab/mdeq) as a model folder.

Writes OUT/model.pt and OUT/model_card.json: the segmentation model with the 19 Cityscapes
classes and colours, the official input normalisation (RGB, ImageNet mean and std) and test
size (1024x2048), solver broyden with the configuration's F_THRES, variant IL, and the source
file's sha256. The folder then works wherever a checkpoint does: the node
(checkpoint:=OUT), streamdeq demo/eval-cuts/export --checkpoint OUT, streamdeq eval --model
IL=OUT:broyden:M, the benches. OUT must be new or a model folder (it is replaced whole).
The file is read with torch.load(weights_only=True); a file that needs code to load is refused.
``--random-weights`` (no FILE) writes the same folder with random weights of the configuration's
shapes, for timing (``streamdeq bench node``) where the released file is not at hand; its card
says so.
"""
import sys


def add_arguments(p):
    """Add the ``import-official`` options to ``p``."""
    p.add_argument('file', nargs='?', default=None,
                   help='the official .pkl / .pth (a state dict saved by the MDEQ code)')
    p.add_argument('--config', default=None,
                   help='small, large, xl or an official experiment .yaml (default: found '
                        "from the file's shapes)")
    p.add_argument('--out', required=True,
                   help='the model folder to write: new, or a model folder (replaced whole)')
    p.add_argument('--random-weights', action='store_true',
                   help="no FILE: random weights of --config's released shapes (for timing "
                        'only; the card says so)')


def run(args) -> int:
    """Entry point of ``streamdeq import-official``."""
    from ..model.card import describe
    from ..model.checkpoint import CheckpointError
    from ..models.official import import_official, random_official
    if args.random_weights == bool(args.file):
        print('streamdeq import-official: give the official FILE or --random-weights (not '
              'both)', file=sys.stderr)
        return 2
    try:
        if args.random_weights:
            path, card = random_official(args.config or 'small', args.out)
        else:
            path, card = import_official(args.file, args.config, args.out)
    except CheckpointError as exc:
        print('streamdeq import-official: %s' % exc, file=sys.stderr)
        return 1
    print('wrote %s: %s' % (path, describe(card)))
    print(card['source']['loaded'])
    return 0
