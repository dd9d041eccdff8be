"""``streamdeq bench cameras``: total frames/s of the node with 1, 2, 4, ... cameras.

For each camera count N, ``streamdeq_node`` runs with N camera topics (best effort, as camera
drivers publish, and the Fast DDS profile of ``perception.launch.py`` on both ends), and a
publisher process sends ``--rate`` Hz rgb8 frames of ``--size`` on each topic. The bench
subscribes to every camera's refined class mask (a consumer, as on a robot) and to
``~/status``, and switches ``max_batch`` live between N (batched: one solve for all waiting
cameras) and 1 (one camera at a time) every ``--seconds``, ``--rounds`` times each, so both
rules run interleaved under the same load. Per rule it reports the node's total answered
frames/s, the per-camera latency (``~/status`` ``latency_ms``: from taking the frames to
publishing, the batch's solve included) p50 / p95, and the mean batch size. The first second
after each switch is not counted.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from .node import add_checkpoint_option, bench_frames, STAGES
from ..harness import private_domain_env, profile_path, start_node, stop_node
from ...models import resolve_checkpoint

SETTLE_S = 1.0


def camera_topic(k: int) -> str:
    """Return the topic of camera ``k`` of the bench's publisher."""
    return '/streamdeq_bench_cameras/cam%d' % k


def publisher_command(cameras: int, width: int, height: int, rate: float, seconds: float,
                      stamps: str = '') -> list:
    """Return the command line of the synthetic camera publisher (this module as a child)."""
    return ([sys.executable, '-m', __spec__.name, '--child', str(cameras), str(width),
             str(height), str(rate), str(seconds)] + ([stamps] if stamps else []))


def _publisher(n: int, width: int, height: int, rate: float, seconds: float,
               log: str = '') -> int:
    """Publish ``rate`` Hz frames on ``n`` cameras for ``seconds``; ``log``: write the stamps.

    The stamps sent (seconds, one per line) go to ``log`` when the publisher ends, so a bench
    can count the frames sent in a window even when the publisher itself falls behind.
    """
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ...ros.image_conv import fill_image
    from ...ros.shutdown import init_with_stop_flag
    stop = init_with_stop_flag()
    node = Node('bench_cameras_publisher')
    pubs = [node.create_publisher(Image, camera_topic(k), qos_profile_sensor_data)
            for k in range(n)]
    frames = bench_frames(width, height, 8)
    msgs = [[fill_image(Image(), frames[(k + j) % len(frames)], 'rgb8') for j in range(4)]
            for k in range(n)]
    t0 = time.monotonic()
    tick = 0
    sent = []
    try:
        while time.monotonic() - t0 < seconds and not stop.is_set():
            target = t0 + tick / rate
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            stamp = node.get_clock().now().to_msg()
            for k, pub in enumerate(pubs):
                msg = msgs[k][tick % 4]
                msg.header.stamp = stamp
                pub.publish(msg)
            sent.append(stamp.sec + 1e-9 * stamp.nanosec)
            tick += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if log:
            with open(log, 'w') as fh:
                fh.write(''.join('%.9f\n' % t for t in sent))
    return 0


def _measure(n: int, args, checkpoint: str) -> dict:
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    width, height = (int(v) for v in args.size.split('x'))
    segments = [r for _ in range(args.rounds) for r in ('batched', 'one_at_a_time')]
    total_s = len(segments) * args.seconds + 90
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=profile_path())
    node_proc = start_node([camera_topic(k) for k in range(n)],
                           {'checkpoint': checkpoint, 'iters': args.iters, 'max_batch': n,
                            'threads': args.threads},
                           env=env)
    rclpy.init()
    client = Node('bench_cameras_client')
    status = []
    client.create_subscription(String, '/streamdeq/status', lambda m: status.append(
        (time.monotonic(), json.loads(m.data))), 1000)
    names = [camera_topic(k).strip('/').replace('/', '_') + '/' if n > 1 else ''
             for k in range(n)]
    for name in names:
        client.create_subscription(Image, '/streamdeq/%ssegmentation/class_mask' % name,
                                   lambda m: None, qos_profile_sensor_data)
    params = AsyncParameterClient(client, 'streamdeq')
    pub_proc = None
    rows = {rule: [] for rule in ('batched', 'one_at_a_time')}
    try:
        if not params.wait_for_services(timeout_sec=60):
            raise RuntimeError('the node did not come up')
        pub_proc = subprocess.Popen(
            publisher_command(n, width, height, args.rate, total_s), env=env)
        end = time.monotonic() + 60          # until every camera is answered
        while {s['camera'] for _, s in status} != {camera_topic(k) for k in range(n)}:
            if time.monotonic() > end:
                raise RuntimeError('the node did not answer every camera within 60 s')
            rclpy.spin_once(client, timeout_sec=0.05)
        for rule in segments:
            fut = params.set_parameters([Parameter('max_batch', value=n if rule == 'batched'
                                                   else 1)])
            rclpy.spin_until_future_complete(client, fut, timeout_sec=10)
            start = time.monotonic() + SETTLE_S
            stop = start + args.seconds - SETTLE_S
            while time.monotonic() < stop:
                rclpy.spin_once(client, timeout_sec=0.05)
            rows[rule].append([s for t, s in status if start <= t < stop])
            rows[rule][-1].append({'_seconds': stop - start})
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        if pub_proc is not None:
            pub_proc.terminate()
            pub_proc.wait(timeout=30)
        stop_node(node_proc)
    out = {'cameras': n}
    for rule, segs in rows.items():
        seconds = sum(seg[-1]['_seconds'] for seg in segs)
        frames = [s for seg in segs for s in seg[:-1]]
        lat = [s['latency_ms'] for s in frames]
        per_cam = [sum(s['camera'] == camera_topic(k) for s in frames) / seconds
                   for k in range(n)]
        out[rule] = {'fps': round(len(frames) / seconds, 2),
                     'fps_per_camera_min': round(min(per_cam), 2),
                     'latency_p50_ms': round(float(np.percentile(lat, 50)), 2) if lat else None,
                     'latency_p95_ms': round(float(np.percentile(lat, 95)), 2) if lat else None,
                     'mean_batch': round(float(np.mean([s['batch'] for s in frames])), 2)
                     if frames else None,
                     'stages_ms': {k: round(float(np.median([s['stages_ms'].get(k, 0.0)
                                                             for s in frames])), 2)
                                   for k in STAGES} if frames else {}}
    return out


def add_arguments(p):
    """Add the benchmark's options."""
    p.add_argument('--cameras', default='1,2,4,8', help='camera counts')
    add_checkpoint_option(p)
    p.add_argument('--size', default='640x480', help='camera frame WxH')
    p.add_argument('--rate', type=float, default=30.0, help='frames/s of each camera')
    p.add_argument('--iters', type=int, default=2, help='iterations per frame')
    p.add_argument('--threads', type=int, default=0, help="the node's threads parameter")
    p.add_argument('--seconds', type=float, default=8.0, help='length of each segment')
    p.add_argument('--rounds', type=int, default=2, help='segments of each rule')
    p.add_argument('--out', default='bench/cameras.json', help='JSON results')


def run(args) -> int:
    """Measure each camera count and write the JSON."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    os.environ.update(private_domain_env())
    results = [_measure(int(n), args, checkpoint) for n in args.cameras.split(',')]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump({'checkpoint': os.path.relpath(checkpoint), 'size': args.size,
                   'threads': args.threads,
                   'rate_hz': args.rate, 'iters': args.iters, 'seconds': args.seconds,
                   'rounds': args.rounds, 'results': results}, fh, indent=1)
    one = results[0]['one_at_a_time']['fps'] if results else 0
    print('| cameras | one at a time: fps (p50 / p95 ms) | batched: fps (p50 / p95 ms, mean '
          'batch) | batched / first row one at a time |')
    print('|---|---|---|---|')
    for r in results:
        a, b = r['one_at_a_time'], r['batched']
        print('| %d | %.1f (%s / %s) | %.1f (%s / %s, %s) | %.2f |' % (
            r['cameras'], a['fps'], a['latency_p50_ms'], a['latency_p95_ms'], b['fps'],
            b['latency_p50_ms'], b['latency_p95_ms'], b['mean_batch'],
            b['fps'] / one if one else float('nan')))
    return 0


if __name__ == '__main__' and len(sys.argv) > 2 and sys.argv[1] == '--child':
    n, w, h, rate, secs = sys.argv[2:7]
    sys.exit(_publisher(int(n), int(w), int(h), float(rate), float(secs), *sys.argv[7:8]))
