"""``streamdeq_node``'s entry point: run the node until a signal, with exit codes that say why."""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn

from .node import StartupError, StreamDEQNode
from .shutdown import init_with_stop_flag, spin_until_stopped
from ..model.checkpoint import clause


def main(args=None) -> int:
    """Run the node; with ``autostart`` it configures and activates itself.

    SIGINT and SIGTERM stop it in order: the worker finishes its frame, then the node and the
    context go, so a frame in flight is never published into a dead context. Exit codes: 0
    after a signal, 1 when autostart's configure or activate fails, 2 for refused start-up
    parameters (one sentence each on stderr, no traceback).
    """
    stop = init_with_stop_flag(args)
    node = None
    code = 0
    try:
        node = StreamDEQNode()
        if node.cfg['autostart']:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                code = 1
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                code = 1
        if code == 0:
            spin_until_stopped(node, stop)
    except StartupError as exc:
        for sentence in exc.reasons:
            print('streamdeq_node: %s' % sentence, file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:            # noqa: B902 - no start-up path may exit silently
        print('streamdeq_node: cannot start: %s: %s' % (type(exc).__name__, clause(str(exc))),
              file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node._stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
