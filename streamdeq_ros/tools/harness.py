"""Run ``streamdeq_node`` from a tool or a test: start, stop, a private domain, the DDS profile.

The one home of how the benches, the demo, the scripts and the tests start the node as its own
process (``-p name:=value`` per parameter), stop it as Ctrl-C does, keep their traffic to a
ROS domain of their own on localhost, and find the shipped Fast DDS profile for large frames.
"""
import os
import random
import signal
import subprocess
from typing import Mapping, Optional, Sequence, Union

from ..runtime.executables import executable

#: the Fast DDS profile for large frames, in the source tree
_SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROFILE = os.path.join(_SOURCE_TREE, 'config', 'fastdds_large_images.xml')


def node_args(cameras: Sequence[str], params: Mapping[str, object]) -> list:
    """Return the command line of ``streamdeq_node`` on ``cameras`` with ``params``."""
    args = [executable('streamdeq_node'), '--ros-args', '-p',
            'cameras:=[%s]' % ', '.join(cameras)]
    return args + [a for k, v in params.items() for a in ('-p', '%s:=%s' % (k, v))]


def start_node(cameras: Sequence[str], params: Mapping[str, object], env=None,
               log: Union[None, str, int] = subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``streamdeq_node`` on ``cameras`` with ``params`` (name -> value).

    ``log``: where the node's stdout and stderr go: discarded (the default), a file (a path,
    appended to), or None for this process's own.
    """
    args = node_args(cameras, params)
    if not isinstance(log, str):
        return subprocess.Popen(args, stdout=log, stderr=log, env=env)
    with open(log, 'ab') as out:           # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def exit_reason(proc: subprocess.Popen, log: Optional[str]) -> Optional[str]:
    """Return why the node ``proc`` exited (its last log lines), or None while it runs."""
    code = proc.poll()
    if code is None:
        return None
    lines = []
    if log and os.path.isfile(log):
        with open(log, errors='replace') as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    said = [ln for ln in lines if 'streamdeq_node:' in ln or 'cannot configure' in ln]
    return 'streamdeq_node exited with code %d: %s' % (
        code, ' / '.join((said or lines)[-3:]) or 'it wrote nothing')


def stop_node(proc: subprocess.Popen, timeout: float = 30.0):
    """Stop the node with SIGINT (as Ctrl-C does) and wait for it; kill it after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def private_domain_env() -> dict:
    """Return this environment with a ROS_DOMAIN_ID of its own, on localhost."""
    return dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)),
                ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')


def profile_path() -> str:
    """Return the shipped Fast DDS profile (source tree, or the installed share folder)."""
    if os.path.isfile(PROFILE):
        return PROFILE
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('streamdeq_ros'), 'config',
                        'fastdds_large_images.xml')
