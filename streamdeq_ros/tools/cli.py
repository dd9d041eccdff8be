"""The ``streamdeq`` command: ``streamdeq <subcommand> --help`` for each."""
import argparse
import importlib
import sys

#: (parent, name, module under streamdeq_ros.tools, one-line help); the module's docstring is the
#: long description, and it provides ``add_arguments(parser)`` and ``run(args)``
COMMANDS = (
    ('bench', 'solver', 'bench.solver',
     'warm vs cold iterations to tolerance, cost of one f evaluation'),
    ('bench', 'heads', 'bench.heads', 'per-frame cost of each task head next to the backbone'),
    ('bench', 'dds', 'bench.dds', 'camera frames delivered over DDS on this host, per set-up'),
    ('bench', 'node', 'bench.node', 'node latency over the same model in-process, per stage'),
    ('bench', 'cameras', 'bench.cameras', 'node frames/s with 1, 2, 4, ... cameras, batched'),
    ('bench', 'deadline', 'bench.deadline', 'reactive vs predictive deadline under changing load'),
    ('bench', 'contention', 'bench.contention', 'the node beside busy processes, per threads'),
    ('bench', 'cudagraph', 'bench.cudagraph', 'the fixed-M loop from a CUDA graph vs eager'),
    ('bench', 'train', 'bench.train', 'training images/s and memory with 1, 2, ... processes'),
    (None, 'train', 'train', 'train IL/UR/SUR models (segmentation, detection, pose)'),
    (None, 'train-peer', 'peers', 'train a torchvision peer (LR-ASPP, Faster R-CNN) to compare'),
    (None, 'eval', 'evaluate', "the paper's streaming evaluation (metric vs offset)"),
    (None, 'eval-streaming', 'eval_streaming',
     'accuracy with real latency: the newest published output at each frame'),
    (None, 'eval-cuts', 'eval_cuts', 'accuracy after a hard cut: warm, oracle reset, detector'),
    (None, 'export', 'export', 'the network as ONNX graphs (inject, f, heads)'),
    (None, 'import-official', 'import_official',
     'an official MDEQ Cityscapes checkpoint as a model folder'),
    (None, 'demo', 'demo', 'node + video source as processes, iters switched live'),
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog='streamdeq', description='StreamDEQ streaming perception tools.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    bench = sub.add_parser('bench', help='benchmarks', description='Benchmarks.')
    parents = {None: sub,
               'bench': bench.add_subparsers(dest='bench', metavar='BENCH', required=True)}
    for parent, name, module, text in COMMANDS:
        mod = importlib.import_module('.' + module, __package__)
        cmd = parents[parent].add_parser(name, help=text, description=mod.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(cmd)
        cmd.set_defaults(func=mod.run)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    args.argv = (sys.argv[1:] if argv is None else list(argv))[1:]
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
