"""``streamdeq bench dds``: how many camera frames reach a subscriber over DDS on this host.

For each frame size and set-up, a publisher process sends ``--rate`` Hz rgb8
``sensor_msgs/Image`` frames (or JPEG ``CompressedImage``) for ``--seconds`` to a subscriber
process, and the subscriber counts what arrives. Set-ups (``--setups``):

- ``default-be`` / ``default-rel``: Fast DDS's default transports, best-effort / reliable on both
  ends (the node's ``input_qos`` ``sensor_data`` is best effort);
- ``profile-be`` / ``profile-rel``: both processes with ``config/fastdds_large_images.xml``
  (``FASTDDS_DEFAULT_PROFILES_FILE``), what ``perception.launch.py`` applies by default;
- ``profile-sub-be``: the profile on the subscriber only (a camera driver started without it);
- ``compressed-be``: JPEG (quality 90) ``CompressedImage``, default transports, best effort;
- ``node-default-be`` / ``node-profile-be``: the subscriber is ``streamdeq_node`` itself (bundled
  model, ``input_qos`` sensor_data, ``threads`` 1), solving frames while they arrive; the count
  is its ``received`` in ``/diagnostics``. With the profile, both processes have it, as under
  ``perception.launch.py``.

Each run uses its own ROS_DOMAIN_ID on localhost. Writes JSON (``--out``) with the counts and
the fraction delivered, and prints a table.
"""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from ..harness import private_domain_env, profile_path, start_node

SETUPS = ('default-be', 'default-rel', 'profile-be', 'profile-rel', 'profile-sub-be',
          'compressed-be', 'node-default-be', 'node-profile-be')
TOPIC = '/streamdeq_bench_dds/image'


def _frame(width: int, height: int) -> np.ndarray:
    from ...data.street import StreetClip
    rgb = StreetClip(3, 96, 192)[0][0]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)


def _child(role: str, width: int, height: int, reliable: bool, compressed: bool,
           rate: float, seconds: float) -> int:
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from ...ros.image_conv import fill_image
    qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE if reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    kind = CompressedImage if compressed else Image
    topic = TOPIC + ('/compressed' if compressed else '')
    rclpy.init()
    node = Node('bench_dds_' + role.replace('-', '_'))
    try:
        if role == 'sub':
            got = []
            node.create_subscription(kind, topic, lambda m: got.append(time.monotonic()), qos)
            print('ready', flush=True)
            end = time.monotonic() + seconds + 15
            while time.monotonic() < end and not os.path.exists(sys.argv[-1]):
                rclpy.spin_once(node, timeout_sec=0.05)
            end = time.monotonic() + 1.0                 # the last frames in flight
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            print(json.dumps({'received': len(got)}), flush=True)
            return 0
        pub = node.create_publisher(kind, topic, qos)
        rgb = _frame(width, height)
        if compressed:
            ok, jpg = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            msg = CompressedImage(format='jpeg', data=jpg.tobytes())
        else:
            msg = fill_image(Image(), rgb, 'rgb8')
        deadline = time.monotonic() + 60                 # the node loads its model first
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(0.5)                                  # let the match settle on both sides
        n = int(round(rate * seconds))
        t0 = time.monotonic()
        for k in range(n):
            now = time.monotonic()
            target = t0 + k / rate
            if target > now:
                time.sleep(target - now)
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
        result = {'sent': n, 'bytes': len(msg.data)}
        if role == 'pub-node':                            # the node's own count
            seen = []
            node.create_subscription(DiagnosticArray, '/diagnostics', seen.append, 10)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            values = [{kv.key: kv.value for kv in st.values} for arr in seen
                      for st in arr.status if st.name.startswith('streamdeq')]
            result['received'] = int(values[-1]['received']) if values else 0
        else:
            time.sleep(0.5)
        print(json.dumps(result), flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def run_one(width: int, height: int, setup: str, rate: float, seconds: float,
            workdir: str) -> dict:
    """Run one publisher/subscriber pair; return sent, received and the fraction delivered."""
    reliable = setup.endswith('-rel')
    compressed = setup.startswith('compressed')
    to_node = setup.startswith('node-')
    env = private_domain_env()
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    sub_env, pub_env = dict(env), dict(env)
    if 'profile' in setup:
        sub_env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile_path()
        if not setup.startswith('profile-sub'):
            pub_env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile_path()
    done = os.path.join(workdir, 'done-%s-%dx%d' % (setup, width, height))
    if os.path.exists(done):
        os.remove(done)
    args = [str(width), str(height), str(int(reliable)), str(int(compressed)), str(rate),
            str(seconds)]
    me = [sys.executable, '-m', __spec__.name, '--child']
    if to_node:
        sub = start_node([TOPIC], {'threads': 1}, env=sub_env)
    else:
        sub = subprocess.Popen(me + ['sub'] + args + [done], env=sub_env,
                               stdout=subprocess.PIPE, text=True)
        assert sub.stdout.readline().strip() == 'ready'
    pub = subprocess.run(me + ['pub-node' if to_node else 'pub'] + args + [done], env=pub_env,
                         capture_output=True, text=True, timeout=seconds + 120)
    open(done, 'w').close()
    if pub.returncode != 0:
        raise RuntimeError('bench dds publisher failed: %s' % pub.stderr.strip()[-500:])
    sent = json.loads(pub.stdout.strip().splitlines()[-1])
    if to_node:
        sub.send_signal(signal.SIGINT)
        sub.wait(timeout=60)
        received = sent['received']
    else:
        out, _ = sub.communicate(timeout=60)
        received = json.loads(out.strip().splitlines()[-1])['received']
    return {'width': width, 'height': height, 'setup': setup, 'rate_hz': rate,
            'sent': sent['sent'], 'message_bytes': sent['bytes'], 'received': received,
            'delivered': round(received / sent['sent'], 4)}


def add_arguments(p):
    """Add the benchmark's options."""
    p.add_argument('--sizes', default='640x480,1280x720,1920x1080', help='WxH list')
    p.add_argument('--setups', default=','.join(SETUPS), help='comma list of ' +
                   ', '.join(SETUPS))
    p.add_argument('--rate', type=float, default=30.0, help='frames per second')
    p.add_argument('--seconds', type=float, default=6.0, help='publishing time per run')
    p.add_argument('--out', default='bench/dds.json', help='JSON results')


def run(args) -> int:
    """Run every size x set-up and write the JSON."""
    import tempfile
    sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes.split(',')]
    setups = args.setups.split(',')
    bad = [s for s in setups if s not in SETUPS]
    if bad:
        print('streamdeq bench dds: unknown set-up %s (known: %s)'
              % (', '.join(bad), ', '.join(SETUPS)), file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (w, h) in tqdm(sizes, desc='sizes'):
            for setup in setups:
                rows.append(run_one(w, h, setup, args.rate, args.seconds, tmp))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as fh:
        json.dump({'rate_hz': args.rate, 'seconds': args.seconds, 'runs': rows}, fh, indent=1)
    print('| size | ' + ' | '.join(setups) + ' |')
    print('|---|' + '---|' * len(setups))
    for (w, h) in sizes:
        cells = ['%d / %d' % (r['received'], r['sent']) for s in setups for r in rows
                 if (r['width'], r['height'], r['setup']) == (w, h, s)]
        print('| %dx%d | %s |' % (w, h, ' | '.join(cells)))
    return 0


if __name__ == '__main__' and len(sys.argv) > 2 and sys.argv[1] == '--child':
    role, w, h, rel, comp, rate, secs = sys.argv[2:9]
    sys.exit(_child(role, int(w), int(h), rel == '1', comp == '1', float(rate), float(secs)))
