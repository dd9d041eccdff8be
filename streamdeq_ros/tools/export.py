"""``streamdeq export``: write a checkpoint's network as ONNX graphs (see :mod:`.onnx_export`)."""
import sys


def add_arguments(p):
    """Add the command's options."""
    p.add_argument('--checkpoint', default='',
                   help="model ('' = the bundled default; a bundled name or a path)")
    p.add_argument('--format', default='onnx', choices=['onnx'], help='export format')
    p.add_argument('--out', required=True, help='output directory')


def run(args) -> int:
    """Export and say what was written."""
    from ..models import resolve_checkpoint
    from ..runtime.onnx_export import export_onnx
    info = export_onnx(resolve_checkpoint(args.checkpoint), args.out)
    print('wrote %s: %s, card.json (opset %d; heads outputs %s)'
          % (args.out, ', '.join(info['graphs'].values()), info['opset'],
             ', '.join(info['heads_outputs'])), file=sys.stderr)
    return 0
