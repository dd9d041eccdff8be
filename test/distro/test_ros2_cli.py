"""The package as a ROS 2 user drives it: ros2 launch, ros2 param set, ros2 lifecycle, Ctrl-C.

Each test starts ``ros2 launch streamdeq_ros perception.launch.py`` in a process group of its
own with default signal handling (what a terminal gives it), and stops it the way Ctrl-C does:
SIGINT to the whole group.
"""
import json
import os
import signal
import subprocess
import time

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import String

# the one warning a Ctrl-C may print: launch's own notice of the interrupt
LAUNCH_NOTICE = '[WARNING] [launch]: user interrupted with ctrl-c (SIGINT)'


def _launch(*args):
    return subprocess.Popen(['ros2', 'launch', 'streamdeq_ros', 'perception.launch.py'] +
                            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _ctrl_c(proc, timeout=60):
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _ros2(*args, timeout=60):
    return subprocess.run(['ros2'] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def _ros2_until_found(*args, timeout=60):
    """Run a ros2 verb, again while the CLI's graph does not list the node yet."""
    deadline = time.monotonic() + timeout
    while True:
        out = _ros2(*args)
        if 'Node not found' not in out.stdout + out.stderr or time.monotonic() > deadline:
            return out
        time.sleep(1.0)


@pytest.fixture
def client():
    rclpy.init()
    node = Node('cli_test_client')
    status = []
    node.create_subscription(String, '/streamdeq/status',
                             lambda m: status.append(json.loads(m.data)), 50)
    yield node, status
    node.destroy_node()
    rclpy.try_shutdown()


def _spin_until(node, cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    return cond()


def test_launch_param_set_lifecycle_and_ctrl_c(client):
    node, status = client
    proc = _launch()
    try:
        assert _spin_until(node, lambda: len(status) >= 3, 90), 'no frame answered in 90 s'
        assert status[-1]['iters'] == 2
        out = _ros2_until_found('param', 'set', '/streamdeq', 'iters', '1')
        assert out.returncode == 0 and 'Set parameter successful' in out.stdout, out
        # statuses queued while the CLI ran still say 2; from the next frame on, 1
        assert _spin_until(node, lambda: status[-1]['iters'] == 1, 30)
        n = len(status)
        assert _spin_until(node, lambda: len(status) >= n + 3, 30)
        assert all(s['iters'] == 1 for s in status[n - 1:])
        out = _ros2_until_found('param', 'set', '/streamdeq', 'iters', '0')
        assert 'iters must be an integer from 1 to 100, got 0' in out.stdout + out.stderr
        # integer syntax for a float; a deadline the frames meet (a missed one logs a WARN)
        out = _ros2_until_found('param', 'set', '/streamdeq', 'deadline_ms', '1000')
        assert 'Set parameter successful' in out.stdout, out
        out = _ros2_until_found('lifecycle', 'set', '/streamdeq', 'deactivate')
        assert out.returncode == 0 and 'Transitioning successful' in out.stdout, out
        _spin_until(node, lambda: False, 1.0)
        n = len(status)
        _spin_until(node, lambda: False, 3.0)
        assert len(status) == n                             # inactive: no outputs
        out = _ros2_until_found('lifecycle', 'set', '/streamdeq', 'activate')
        assert out.returncode == 0 and 'Transitioning successful' in out.stdout, out
        assert _spin_until(node, lambda: len(status) >= n + 3, 30)   # resumed
    finally:
        code, text = _ctrl_c(proc)
    lines = [ln for ln in text.splitlines() if ln.strip() != LAUNCH_NOTICE]
    noisy = [ln for ln in lines if any(w in ln for w in ('WARN', 'ERROR', 'Traceback',
                                                         'RCLError', 'exit code'))]
    assert code == 0 and not noisy, text
    assert text.count('process has finished cleanly') == 2, text


def test_a_dead_node_ends_the_launch(tmp_path):
    params = tmp_path / 'bad.yaml'
    params.write_text('/**:\n  ros__parameters:\n    checkpoint: /nonexistent/model.pt\n')
    proc = _launch('params_file:=%s' % params)
    try:
        out, _ = proc.communicate(timeout=120)           # ends by itself
    except subprocess.TimeoutExpired:
        _ctrl_c(proc)
        raise AssertionError('the launch kept running after the node died')
    assert "checkpoint '/nonexistent/model.pt' does not exist" in out, out
    assert 'process[streamdeq_node-1] was required: shutting down launched system' in out, out
    assert 'streamdeq_video_source' in out and 'process has finished cleanly' in out, out


def test_input_size_and_a_bad_start_up_value_from_the_command_line(client):
    node, status = client
    run = subprocess.Popen(['ros2', 'run', 'streamdeq_ros', 'streamdeq_node', '--ros-args',
                            '-p', 'cameras:=[/cli_test/cam]', '-p', 'input_size:=[128,256]'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        out = ''
        while time.monotonic() < deadline:
            got = _ros2('param', 'get', '/streamdeq', 'input_size', timeout=30)
            if got.returncode == 0 and '128' in got.stdout:
                out = got.stdout
                break
            time.sleep(1)
        assert '[128, 256]' in out or "array('q', [128, 256])" in out, out
    finally:
        code, text = _ctrl_c(run)
    assert code == 0, text
    bad = _ros2('run', 'streamdeq_ros', 'streamdeq_node', '--ros-args', '-p', 'iters:=0',
                timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == 'streamdeq_node: iters must be an integer from 1 to 100, got 0'
