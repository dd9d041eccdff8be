"""``streamdeq_video_source``: publish a video file, a frame folder, generated clips or a bag.

Publishes ``sensor_msgs/Image`` (rgb8, cv_bridge layout) on ``image`` (remap it) at the
source's frame rate (or ``fps``), looping, with ``header.stamp`` = the time of publishing and
``header.frame_id`` = ``frame_id``. ``source`` is a video file (anything OpenCV/FFmpeg reads), a
folder of images (sorted), or ``generated[:SEED]``: 60-frame clips of the project's street
generator, one after another (so every 60 frames there is a hard cut to a new scene).
``max_frames`` > 0 makes the node exit (code 0) after that many frames;
``wait_for_subscribers`` holds the first frame until that many subscribers are matched.

A ROS 2 bag (``.mcap``, sqlite3 ``.db3`` or a bag folder, read with ``rosbags``) is played as
recorded: every image, compressed image and camera_info topic on its own recorded name, the
recorded bytes unchanged (header stamps and frame ids as recorded), at the recorded pace times
``rate``, with ``/clock`` following the recording (``publish_clock``), so that nodes started
with ``use_sim_time:=true`` run on the bag's time. ``max_frames`` counts image messages.
"""
import itertools
import sys
import time

import cv2
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .image_conv import fill_image
from .shutdown import init_with_stop_flag, spin_until_stopped
from ..data.bags import BagReader, is_bag
from ..data.clips import DatasetFormatError
from ..data.street import StreetClip
from ..data.video import open_frames

GENERATED_CLIP = 60
#: the bag's message types as the Python classes they are published with
BAG_TYPES = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage,
             'sensor_msgs/msg/CameraInfo': CameraInfo}
#: how long the node stays after its last frame, so that the last messages are delivered (s)
LINGER_S = 0.5
#: how often a bag's due messages are sent (s)
BAG_TICK = 0.002
GENERATED_SIZE = (192, 384)       # [height, width]: the default bundled model's input size


def generated_frames(seed: int, height: int, width: int):
    """Yield street-generator frames forever: clip ``seed``, ``seed + 1``, ..."""
    for s in itertools.count(seed):
        clip = StreetClip(s, height, width, length=GENERATED_CLIP)
        for t in range(GENERATED_CLIP):
            yield clip[t][0]


class VideoSource(Node):
    """A looping image publisher."""

    def __init__(self, **kwargs):
        """Declare the parameters, open the source, start the timer."""
        super().__init__('streamdeq_video_source', **kwargs)
        ro = {'read_only': True}
        self.declare_parameter('source', 'generated', ParameterDescriptor(
            description='video file, image folder, or generated[:SEED]', **ro))
        self.declare_parameter('fps', 0.0, ParameterDescriptor(
            description='publish rate; 0 = the source frame rate (generated: 10)',
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1000.0)], **ro))
        self.declare_parameter('loop', True, ParameterDescriptor(
            description='restart at the end of a file or folder', **ro))
        self.declare_parameter('frame_id', 'camera', ParameterDescriptor(
            description='header.frame_id of the published images', **ro))
        self.declare_parameter('max_frames', 0, ParameterDescriptor(
            description='exit after this many frames (0: never)',
            integer_range=[IntegerRange(from_value=0, to_value=2 ** 31 - 1, step=1)], **ro))
        self.declare_parameter('width', GENERATED_SIZE[1], ParameterDescriptor(
            description='generated frames: width; files: resize to it unless 0', **ro))
        self.declare_parameter('height', GENERATED_SIZE[0], ParameterDescriptor(
            description='generated frames: height; files: resize to it unless 0', **ro))
        self.declare_parameter('wait_for_subscribers', 0, ParameterDescriptor(
            description='start publishing once this many subscribers are matched (0: at once)',
            integer_range=[IntegerRange(from_value=0, to_value=1000, step=1)], **ro))
        self.declare_parameter('rate', 1.0, ParameterDescriptor(
            description='bags: playback speed (1: as recorded, 2: twice as fast)',
            floating_point_range=[FloatingPointRange(from_value=0.01, to_value=100.0)], **ro))
        self.declare_parameter('publish_clock', True, ParameterDescriptor(
            description='bags: publish /clock with the recorded time (use_sim_time)', **ro))
        p = {n: self.get_parameter(n).value for n in
             ('source', 'fps', 'loop', 'frame_id', 'max_frames', 'width', 'height',
              'wait_for_subscribers', 'rate', 'publish_clock')}
        self.params = p
        self.sent = 0
        self.done = False
        self.failed = None              # why a bag could not be played to its end
        src = p['source']
        if is_bag(src):
            self._play_bag(src)
            return
        if src == 'generated' or src.startswith('generated:'):
            seed = int(src.split(':', 1)[1]) if ':' in src else 0
            size = p['height'] or GENERATED_SIZE[0], p['width'] or GENERATED_SIZE[1]
            self._open = lambda: generated_frames(seed, *size)
            native_fps = 10.0
            self._resize = False
        else:
            reader = open_frames(src)          # DatasetFormatError for a bad source
            self._open = reader.__iter__
            native_fps = reader.fps or 10.0
            self._resize = bool(p['width'] and p['height'])
        self.fps = p['fps'] or native_fps
        self._frames = self._open()
        self.pub = self.create_publisher(Image, 'image', 5)
        self.timer = self.create_timer(1.0 / self.fps, self._tick)
        self.get_logger().info('publishing %s at %.1f fps on %s'
                               % (src, self.fps, self.pub.topic_name))

    # -- bags ---------------------------------------------------------------------------------
    def _play_bag(self, path: str):
        self.bag = BagReader(path)      # DatasetFormatError for a bag that cannot be read
        self.bag_pubs = {topic: self.create_publisher(BAG_TYPES[kind], topic, 10)
                         for topic, kind in self.bag.topics}
        self.image_topics = {t for t, k in self.bag.topics if k != 'sensor_msgs/msg/CameraInfo'}
        self.clock_pub = self.create_publisher(Clock, '/clock', 10) \
            if self.params['publish_clock'] else None
        # wait_for_subscribers counts the subscribers of the first image topic
        self.pub = self.bag_pubs[min(self.image_topics)] if self.image_topics \
            else next(iter(self.bag_pubs.values()))
        self._bag_restart()
        self.timer = self.create_timer(BAG_TICK, self._bag_tick)
        self.get_logger().info('playing %s at %gx: %s%s' % (
            path, self.params['rate'], ', '.join('%s [%s]' % (t, k.split('/')[-1])
                                                 for t, k in self.bag.topics),
            '; not played: ' + ', '.join('%s [%s]' % s for s in self.bag.skipped)
            if self.bag.skipped else ''))

    def _bag_restart(self):
        self._messages = self.bag.messages()
        self._pending = None
        self._t0 = None                 # wall time of the first message, set when it goes out

    def _bag_tick(self):
        if self.sent == 0 and self.pub.get_subscription_count() < \
                self.params['wait_for_subscribers']:
            return
        now = time.monotonic()
        try:
            while not self.done:
                if self._pending is None:
                    self._pending = next(self._messages, None)
                    if self._pending is None:
                        if not self.params['loop']:
                            self.done = True
                            return
                        self._bag_restart()
                        continue
                topic, _, stamp, raw = self._pending
                if self._t0 is None:
                    self._t0 = now - (stamp - self.bag.start_ns) * 1e-9 / self.params['rate']
                if self._t0 + (stamp - self.bag.start_ns) * 1e-9 / self.params['rate'] > now:
                    return
                self._pending = None
                if self.clock_pub is not None:
                    clock = Clock()
                    clock.clock.sec, clock.clock.nanosec = divmod(stamp, 10 ** 9)
                    self.clock_pub.publish(clock)
                self.bag_pubs[topic].publish(raw)
                if topic in self.image_topics:
                    self.sent += 1
                    if self.params['max_frames'] and self.sent >= self.params['max_frames']:
                        self.done = True
        except DatasetFormatError as exc:
            self.failed, self.done = str(exc), True

    def _next(self):
        try:
            return next(self._frames)
        except StopIteration:
            if not self.params['loop']:
                return None
            self._frames = self._open()
            return next(self._frames, None)

    def _tick(self):
        if self.sent == 0 and self.pub.get_subscription_count() < \
                self.params['wait_for_subscribers']:
            return
        frame = self._next()
        if frame is None:
            self.done = True
            return
        if self._resize:
            frame = cv2.resize(frame, (self.params['width'], self.params['height']),
                               interpolation=cv2.INTER_AREA)
        msg = fill_image(Image(), frame, 'rgb8')
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params['frame_id']
        self.pub.publish(msg)
        self.sent += 1
        if self.params['max_frames'] and self.sent >= self.params['max_frames']:
            self.done = True


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM, the end of a non-looping source, or ``max_frames``.

    Signals only set a flag that the spin loop checks between callbacks, so a frame is never
    published into a context that is being shut down (exit 0, nothing printed).
    """
    stop = init_with_stop_flag(args)
    node = None
    try:
        node = VideoSource()
        spin_until_stopped(node, stop, lambda: node.done)
        if node.done and not stop.is_set():
            # let reliable subscribers take the last messages before the process goes
            end = time.monotonic() + LINGER_S
            while time.monotonic() < end and not stop.is_set():
                rclpy.spin_once(node, timeout_sec=0.05)
        if node.failed:
            print('streamdeq_video_source: %s (after %d frames)' % (node.failed, node.sent),
                  file=sys.stderr)
            return 2
        return 0
    except (DatasetFormatError, ValueError, InvalidParameterTypeException,
            InvalidParameterValueException) as exc:
        print('streamdeq_video_source: %s' % exc, file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
