"""The ``streamdeq`` command: ``streamdeq <subcommand> --help`` for each."""
import argparse
import sys


def _demo(args) -> int:
    print('streamdeq demo: not yet available. The ROS 2 node and the demo on the bundled clip '
          'come with the node issue (#4); until then try `streamdeq bench solver --help`.')
    return 0


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

    from . import train as train_mod
    train = sub.add_parser('train', help='train IL/UR/SUR segmentation models',
                           description=train_mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train_mod.add_arguments(train)
    train.set_defaults(func=train_mod.run)

    from . import evaluate as eval_mod
    evaluate = sub.add_parser('eval', help="the paper's streaming evaluation (mIoU vs offset)",
                              description=eval_mod.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    eval_mod.add_arguments(evaluate)
    evaluate.set_defaults(func=eval_mod.run)

    demo = sub.add_parser('demo', help='run node + video source on the bundled clip',
                          description='Run the node and a video source on the bundled clip '
                                      '(not yet available).')
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    """Parse ``argv`` and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    args.argv = (sys.argv[1:] if argv is None else list(argv))[1:]
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
