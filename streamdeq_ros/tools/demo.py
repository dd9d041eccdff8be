"""``streamdeq demo``: the node and the video source as processes, ``iters`` switched live.

Starts ``streamdeq_node`` (bundled model: segmentation, detection and pose) and
``streamdeq_video_source`` (by default generated street clips, a hard cut every 60 frames; or
``--source`` a video file or frame folder) as separate processes talking over DDS, subscribes to
the node's overlay (mask, boxes, skeletons) and status, switches ``iters`` through the parameter
service (what ``ros2 param set /streamdeq iters N`` does) part-way, and stops when the node
has answered ``--frames`` frames, so a busy computer makes the demo take longer, not answer
fewer frames (the source plays at ``--fps`` until then, and the summary counts the frames it
published and the node answered). It writes to ``--out``:
``overlay.mp4``, ``frames.csv`` (per answered frame: iterations, residual, latency, detections,
persons), ``latency_iters.png``, and prints a short summary.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np

from .harness import start_node
from ..runtime.executables import executable

TOPIC = '/streamdeq_demo/image'


def add_arguments(p):
    """Add the demo's options."""
    p.add_argument('--frames', type=int, default=120,
                   help='frames the node answers before the demo ends')
    p.add_argument('--fps', type=float, default=10.0, help='source frame rate')
    p.add_argument('--iters', type=int, default=4, help='iterations per frame at the start')
    p.add_argument('--switch-to', type=int, default=1, help='iterations after the switch')
    p.add_argument('--switch-at', type=int, default=0,
                   help='answered frame after which iters is switched (0: half of --frames)')
    p.add_argument('--source', default='generated',
                   help='what the video source plays: generated (street clips the bundled '
                        'model was trained on) or a video file or image folder')
    p.add_argument('--checkpoint', default='',
                   help="the node's model checkpoint ('': the bundled default, multi_192_sur)")
    p.add_argument('--input-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help="the node's network input (default: the model's; an official "
                        'Cityscapes import is 1024x2048, e.g. 512 1024 on a CPU)')
    p.add_argument('--out', default='streamdeq_demo', help='output directory')
    p.add_argument('--timeout', type=float, default=300.0, help='give up after this many s')


def run(args) -> int:
    """Run the demo; return 0 when every step worked."""
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from ..ros.image_conv import image_view

    os.makedirs(args.out, exist_ok=True)
    switch_at = args.switch_at or args.frames // 2
    params = {'iters': args.iters}
    if args.checkpoint:
        params['checkpoint'] = args.checkpoint
    if args.input_size:
        params['input_size'] = '[%d,%d]' % tuple(args.input_size)
    node = start_node([TOPIC], params, log=None)          # its log is the user's to read
    source = None
    rclpy.init()
    client = Node('streamdeq_demo')
    status, overlays, published = [], {}, set()
    client.create_subscription(String, '/streamdeq/status',
                               lambda m: status.append(json.loads(m.data)), 100)
    client.create_subscription(Image, TOPIC, lambda m: published.add(
        (m.header.stamp.sec, m.header.stamp.nanosec)), qos_profile_sensor_data)
    client.create_subscription(
        Image, '/streamdeq/overlay',
        lambda m: overlays.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec),
                                       np.array(image_view(m))), 100)
    params = AsyncParameterClient(client, 'streamdeq')
    switched_after = None
    try:
        if not params.wait_for_services(timeout_sec=60):
            print('streamdeq demo: the node did not come up', file=sys.stderr)
            return 1
        source = subprocess.Popen([executable('streamdeq_video_source'), '--ros-args',
                                   '-p', 'source:=%s' % args.source,
                                   '-p', 'fps:=%.3f' % args.fps,
                                   '-p', 'wait_for_subscribers:=2',
                                   '-r', 'image:=' + TOPIC])
        deadline = time.monotonic() + args.timeout
        last_new, seen = time.monotonic(), 0
        while time.monotonic() < deadline:
            rclpy.spin_once(client, timeout_sec=0.05)
            if len(status) != seen:
                seen, last_new = len(status), time.monotonic()
            if switched_after is None and len(status) >= switch_at:
                fut = params.set_parameters([Parameter('iters', value=args.switch_to)])
                rclpy.spin_until_future_complete(client, fut, timeout_sec=10)
                if not fut.result() or not fut.result().results[0].successful:
                    print('streamdeq demo: switching iters failed', file=sys.stderr)
                    return 1
                switched_after = len(status)
                print('switched iters %d -> %d after %d frames'
                      % (args.iters, args.switch_to, switched_after))
            if len(status) >= args.frames:
                break
            if source.poll() is not None and time.monotonic() - last_new > 3.0:
                break
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        if source is not None and source.poll() is None:
            source.send_signal(signal.SIGINT)
            source.wait(timeout=30)
        node.send_signal(signal.SIGINT)
        node_rc = node.wait(timeout=60)
    if not status:
        print('streamdeq demo: no frame was answered', file=sys.stderr)
        return 1
    _write(args, status[:args.frames], overlays, switched_after, len(published))
    return 0 if node_rc == 0 else 1


def _count(value) -> str:
    return '' if value is None else str(value)


def _write(args, status, overlays, switched_after, published: int):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    csv_path = os.path.join(args.out, 'frames.csv')
    with open(csv_path, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['frame', 'stamp', 'iters', 'final_residual', 'latency_ms', 'warm', 'reset',
                    'detections', 'persons'])
        for i, s in enumerate(status):
            w.writerow([i, '%d.%09d' % tuple(s['stamp']), s['iters'],
                        '%.5g' % s['final_residual'], s['latency_ms'], int(s['warm']),
                        int(s['reset']), _count(s.get('detections')),
                        _count(s.get('persons'))])
    video = os.path.join(args.out, 'overlay.mp4')
    keys = [tuple(s['stamp']) for s in status if tuple(s['stamp']) in overlays]
    if keys:
        h, w_ = overlays[keys[0]].shape[:2]
        writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), args.fps, (w_, h))
        for k in keys:
            writer.write(cv2.cvtColor(overlays[k], cv2.COLOR_RGB2BGR))
        writer.release()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([s['latency_ms'] for s in status], label='latency (ms)')
    ax.set_xlabel('answered frame')
    ax.set_ylabel('latency (ms)')
    ax2 = ax.twinx()
    ax2.step(range(len(status)), [s['iters'] for s in status], color='C1', where='post',
             label='iterations')
    ax2.set_ylabel('iterations')
    if switched_after is not None:
        ax.axvline(switched_after, color='k', ls='--', lw=0.8)
    fig.legend(loc='upper right', fontsize=8)
    fig.tight_layout()
    plot = os.path.join(args.out, 'latency_iters.png')
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    print('answered %d frames of %d the source published; overlay frames %d'
          % (len(status), max(published, len(status)), len(keys)))
    for m in sorted({s['iters'] for s in status}):
        lat = [s['latency_ms'] for s in status if s['iters'] == m]
        res = [s['final_residual'] for s in status if s['iters'] == m]
        print('iters %d: %d frames, median latency %.1f ms, median residual %.3f'
              % (m, len(lat), float(np.median(lat)), float(np.median(res))))
    if status[0].get('detections') is not None:
        dets = np.mean([s['detections'] for s in status])
        persons = np.mean([s['persons'] or 0 for s in status])
        print('mean per frame: %.2f detections, %.2f persons with keypoints' % (dets, persons))
    print('wrote %s, %s, %s' % (video if keys else '(no overlay)', csv_path, plot))
