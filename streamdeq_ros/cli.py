"""The ``streamdeq`` command: ``streamdeq <subcommand> --help`` for each."""
import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog='streamdeq', description='StreamDEQ streaming perception tools.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)

    bench = sub.add_parser('bench', help='benchmarks', description='Benchmarks.')
    bench_sub = bench.add_subparsers(dest='bench', metavar='BENCH', required=True)
    from . import bench as bench_mod
    solver = bench_sub.add_parser(
        'solver', help='warm vs cold iterations to tolerance, cost of one f evaluation',
        description=bench_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_mod.add_arguments(solver)
    solver.set_defaults(func=bench_mod.run)
    from . import bench_heads as heads_mod
    heads = bench_sub.add_parser(
        'heads', help='per-frame cost of each task head next to the backbone',
        description=heads_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    heads_mod.add_arguments(heads)
    heads.set_defaults(func=heads_mod.run)

    from . import train as train_mod
    train = sub.add_parser('train', help='train IL/UR/SUR models (segmentation, detection, pose)',
                           description=train_mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train_mod.add_arguments(train)
    train.set_defaults(func=train_mod.run)

    from . import evaluate as eval_mod
    evaluate = sub.add_parser('eval', help="the paper's streaming evaluation (metric vs offset)",
                              description=eval_mod.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    eval_mod.add_arguments(evaluate)
    evaluate.set_defaults(func=eval_mod.run)

    from . import demo as demo_mod
    demo = sub.add_parser('demo', help='node + video source as processes, iters switched live',
                          description=demo_mod.__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    demo_mod.add_arguments(demo)
    demo.set_defaults(func=demo_mod.run)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    args.argv = (sys.argv[1:] if argv is None else list(argv))[1:]
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
