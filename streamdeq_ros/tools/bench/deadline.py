"""``streamdeq bench deadline``: the reactive and the predictive deadline rule under changing load.

``streamdeq_node`` runs one camera (best effort, as camera drivers publish) with ``iters`` as
the most iterations a frame may get and ``deadline_ms`` on; a publisher process sends
``--rate`` Hz frames of ``--size``, and the bench subscribes to the refined class mask (a
consumer, as on a robot) and to ``~/status``. ``deadline_rule`` is switched live between
``reactive`` and ``predictive`` every ``--seconds``, so both rules run interleaved on the same
machine. From a third to two thirds of the run ``--hogs`` CPU-bound processes (a Python busy
loop each) compete for the cores, as another heavy process on a robot computer would.

Each frame's ``~/status`` says which rule solved it, its iterations M and its latency (from
taking the frame to the last output published, the time the deadline counts). Per rule and
phase (``idle``, ``loaded``, ``all``): frames, the fraction over the deadline, the 95th
percentile of (latency - deadline) ("p95 overshoot"; negative: time to spare), the mean M, and
the frames over the deadline at one iteration (nothing could have saved them). The JSON goes
to ``--out`` and the plot (latency and M against time, the deadline, the loaded span) to
``--plot``.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from .cameras import camera_topic, publisher_command
from .node import add_checkpoint_option
from ..harness import private_domain_env, profile_path, start_node, stop_node
from ...models import resolve_checkpoint

RULES = ('reactive', 'predictive')
TOPIC = camera_topic(0)                          # the one camera of bench_cameras' publisher


def summarise(frames, deadline: float) -> dict:
    """Return the per-rule figures of a list of ``~/status`` records."""
    if not frames:
        return {'frames': 0}
    lat = np.array([s['latency_ms'] for s in frames])
    iters = np.array([s['iters'] for s in frames])
    over = lat > deadline
    return {'frames': len(frames), 'over_fraction': round(float(over.mean()), 4),
            'p95_overshoot_ms': round(float(np.percentile(lat - deadline, 95)), 2),
            'latency_p50_ms': round(float(np.median(lat)), 2),
            'mean_iters': round(float(iters.mean()), 2),
            'over_at_one_iteration': int((over & (iters == 1)).sum())}


def _hogs(n: int):
    return [subprocess.Popen([sys.executable, '-c', 'while True:\n    pass'])
            for _ in range(n)]


def _measure(args, checkpoint: str) -> dict:
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    width, height = (int(v) for v in args.size.split('x'))
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=profile_path())
    node_proc = start_node([TOPIC], {'checkpoint': checkpoint, 'iters': args.iters,
                                     'deadline_ms': args.deadline_ms,
                                     'publish_partial': 'false'}, env=env)
    rclpy.init()
    client = Node('bench_deadline_client')
    status = []
    client.create_subscription(String, '/streamdeq/status', lambda m: status.append(
        (time.monotonic(), json.loads(m.data))), 1000)
    client.create_subscription(Image, '/streamdeq/segmentation/class_mask', lambda m: None,
                               qos_profile_sensor_data)
    params = AsyncParameterClient(client, 'streamdeq')
    pub_proc, hogs, load = None, [], [None, None]
    try:
        if not params.wait_for_services(timeout_sec=60):
            raise RuntimeError('the node did not come up')
        pub_proc = subprocess.Popen(
            publisher_command(1, width, height, args.rate, args.duration + 120), env=env)
        end = time.monotonic() + 60
        while not status:
            if time.monotonic() > end:
                raise RuntimeError('the node did not answer within 60 s')
            rclpy.spin_once(client, timeout_sec=0.05)
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:        # both rules learn their costs first
            rclpy.spin_once(client, timeout_sec=0.05)
        t0 = time.monotonic()
        del status[:]
        k = 0
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic() - t0
            if load[0] is None and now >= args.duration / 3:
                hogs, load[0] = _hogs(args.hogs), now
            if load[0] is not None and load[1] is None and now >= 2 * args.duration / 3:
                for h in hogs:
                    h.kill()
                hogs, load[1] = [], now
            fut = params.set_parameters([Parameter('deadline_rule', value=RULES[k % 2])])
            rclpy.spin_until_future_complete(client, fut, timeout_sec=10)
            k += 1
            stop = t0 + min(now + args.seconds, args.duration)
            while time.monotonic() < stop:
                rclpy.spin_once(client, timeout_sec=0.05)
    finally:
        for h in hogs:
            h.kill()
        client.destroy_node()
        rclpy.try_shutdown()
        if pub_proc is not None:
            pub_proc.terminate()
            pub_proc.wait(timeout=30)
        stop_node(node_proc)
    frames = [{'t': round(t - t0, 3), 'deadline_rule': s['deadline_rule'],
               'latency_ms': s['latency_ms'], 'iters': s['iters'],
               'over_deadline': s['over_deadline']} for t, s in status if s.get('deadline_rule')]
    return {'frames': frames, 'load_s': load}


def plot(result: dict, path: str):
    """Latency and M against time for both rules, with the deadline and the loaded span."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    colours = {'reactive': 'tab:red', 'predictive': 'tab:blue'}
    for rule in RULES:
        fr = [f for f in result['frames'] if f['deadline_rule'] == rule]
        t = [f['t'] for f in fr]
        ax1.plot(t, [f['latency_ms'] for f in fr], '.', ms=3, color=colours[rule], label=rule)
        ax2.plot(t, [f['iters'] for f in fr], '.', ms=3, color=colours[rule], label=rule)
    for ax in (ax1, ax2):
        a, b = result['load_s']
        if a is not None:
            ax.axvspan(a, b if b is not None else result['duration_s'], color='0.9',
                       label='%d CPU hogs' % result['hogs'])
        ax.grid(alpha=0.3)
    ax1.axhline(result['deadline_ms'], color='k', ls='--', lw=1, label='deadline')
    ax1.set_yscale('log')
    ax1.set_ylabel('frame latency (ms, log scale)')
    ax2.set_ylabel('iterations M')
    ax2.set_xlabel('time (s)')
    ax1.legend(fontsize=8, loc='upper left', ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p):
    """Add the benchmark's options."""
    add_checkpoint_option(p)
    p.add_argument('--size', default='640x480', help='camera frame WxH')
    p.add_argument('--rate', type=float, default=10.0, help='camera frames/s')
    p.add_argument('--iters', type=int, default=8, help='the most iterations a frame may get')
    p.add_argument('--deadline-ms', type=float, default=60.0, help='the per-frame deadline')
    p.add_argument('--duration', type=float, default=90.0, help='seconds measured')
    p.add_argument('--warmup', type=float, default=5.0, help='seconds before measuring')
    p.add_argument('--seconds', type=float, default=3.0, help='seconds per rule switch')
    p.add_argument('--hogs', type=int, default=1, help='CPU-bound processes in the middle third')
    p.add_argument('--out', default='bench/deadline.json', help='JSON results')
    p.add_argument('--plot', default='docs/results/deadline.png', help='plot')


def run(args) -> int:
    """Measure, write the JSON and the plot, print the table."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    os.environ.update(private_domain_env())
    r = _measure(args, checkpoint)
    a, b = r['load_s']
    phases = {'idle': lambda f: a is None or f['t'] < a or (b is not None and f['t'] >= b),
              'loaded': lambda f: a is not None and f['t'] >= a and (b is None or f['t'] < b),
              'all': lambda f: True}
    summary = {rule: {ph: summarise([f for f in r['frames'] if f['deadline_rule'] == rule
                                     and keep(f)], args.deadline_ms)
                      for ph, keep in phases.items()} for rule in RULES}
    result = {'checkpoint': os.path.relpath(checkpoint), 'size': args.size, 'rate_hz': args.rate,
              'iters': args.iters, 'deadline_ms': args.deadline_ms,
              'duration_s': args.duration, 'seconds_per_switch': args.seconds,
              'hogs': args.hogs, 'load_s': r['load_s'], 'summary': summary,
              'frames': r['frames']}
    for path in (args.out, args.plot):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump(result, fh, indent=1)
    plot(result, args.plot)
    print('| rule | phase | frames | over deadline | p95 overshoot (ms) | p50 latency (ms) | '
          'mean M | over at M=1 |')
    print('|---|---|---|---|---|---|---|---|')
    for rule in RULES:
        for ph in phases:
            s = summary[rule][ph]
            if s['frames']:
                print('| %s | %s | %d | %.1f %% | %+.1f | %.1f | %.2f | %d |' % (
                    rule, ph, s['frames'], 100 * s['over_fraction'], s['p95_overshoot_ms'],
                    s['latency_p50_ms'], s['mean_iters'], s['over_at_one_iteration']))
    print('wrote %s, %s' % (args.out, args.plot))
    return 0
