"""ROS 2 bags (``.mcap`` and sqlite3 ``.db3``, or a bag folder) read with ``rosbags``.

No ROS needed: :class:`BagReader` yields the recorded messages of the camera topics (images,
compressed images, camera_info) as their serialized CDR bytes, with the time each was
recorded, so a player can publish them unchanged (header stamps and frame ids as recorded).
A bag that cannot be read raises :class:`~streamdeq_ros.data.clips.DatasetFormatError` with one
sentence naming the file and the reason, at open or, for damage further in, while reading.
"""
import os
from typing import Iterator, List, Tuple

from .clips import DatasetFormatError

#: the message types a camera bag is played for (the others are listed and left out)
CAMERA_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage',
                'sensor_msgs/msg/CameraInfo')
#: what names a bag: a file of these suffixes, or a folder with ``metadata.yaml``
BAG_SUFFIXES = ('.mcap', '.db3')


def is_bag(path: str) -> bool:
    """Return whether ``path`` names a ROS 2 bag (a .mcap or .db3 file, or a bag folder)."""
    return path.endswith(BAG_SUFFIXES) or (
        os.path.isdir(path) and os.path.isfile(os.path.join(path, 'metadata.yaml')))


def _sentence(path: str, exc: Exception) -> str:
    text = str(exc).strip().rstrip('.') or type(exc).__name__
    return 'cannot read the bag %s: %s' % (path, text.split('\n')[0])


class BagReader:
    """The camera topics of one bag, in recorded order."""

    def __init__(self, path: str):
        """Open ``path`` and check it (DatasetFormatError with the reason if it is unusable)."""
        from rosbags.rosbag2 import Reader
        self.path = path
        if not os.path.exists(path):
            raise DatasetFormatError('cannot read the bag %s: no such file or folder' % path)
        try:
            self._reader = Reader(path)
            self._reader.open()
        except Exception as exc:        # noqa: B902 - every damage is said in one sentence
            raise DatasetFormatError(_sentence(path, exc)) from None
        conns = self._reader.connections
        self.connections = [c for c in conns if c.msgtype in CAMERA_TYPES]
        #: (topic, type) of what the bag holds that is not played
        self.skipped: List[Tuple[str, str]] = sorted(
            {(c.topic, c.msgtype) for c in conns if c.msgtype not in CAMERA_TYPES})
        if not self.connections:
            self._reader.close()
            raise DatasetFormatError('the bag %s has no image, compressed image or camera_info '
                                     'topic (it has: %s)' % (path, ', '.join(
                                         '%s [%s]' % s for s in self.skipped) or 'nothing'))
        self.topics = sorted({(c.topic, c.msgtype) for c in self.connections})
        self.start_ns = int(self._reader.start_time)

    def messages(self) -> Iterator[Tuple[str, str, int, bytes]]:
        """Yield (topic, type, recorded time in ns, serialized bytes) in recorded order."""
        try:
            for conn, stamp, raw in self._reader.messages(connections=self.connections):
                yield conn.topic, conn.msgtype, int(stamp), bytes(raw)
        except Exception as exc:        # noqa: B902 - damage further in: one sentence too
            raise DatasetFormatError(_sentence(self.path, exc)) from None

    def close(self):
        """Close the bag."""
        self._reader.close()
