"""``streamdeq_video_source``: publish a video file, a frame folder or generated street clips.

Publishes ``sensor_msgs/Image`` (rgb8, cv_bridge layout) on ``image`` (remap it) at the
source's frame rate (or ``fps``), looping, with ``header.stamp`` = the time of publishing and
``header.frame_id`` = ``frame_id``. ``source`` is a video file (anything OpenCV/FFmpeg reads), a
folder of images (sorted), or ``generated[:SEED]``: 60-frame clips of the project's street
generator, one after another (so every 60 frames there is a hard cut to a new scene).
``max_frames`` > 0 makes the node exit (code 0) after that many frames;
``wait_for_subscribers`` holds the first frame until that many subscribers are matched.
"""
import itertools
import sys

import cv2
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image

from .image_conv import fill_image
from .shutdown import init_with_stop_flag, spin_until_stopped
from ..data.clips import DatasetFormatError
from ..data.street import StreetClip
from ..data.video import open_frames

GENERATED_CLIP = 60
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
        p = {n: self.get_parameter(n).value for n in
             ('source', 'fps', 'loop', 'frame_id', 'max_frames', 'width', 'height',
              'wait_for_subscribers')}
        self.params = p
        self.sent = 0
        self.done = False
        src = p['source']
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
        return 0
    except (DatasetFormatError, ValueError, InvalidParameterTypeException) as exc:
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
