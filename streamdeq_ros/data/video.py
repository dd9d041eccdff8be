"""Frame sources for any video: a video file (OpenCV) or a folder of image files."""
import glob
import os
from typing import Iterator, List, Optional

import cv2
import numpy as np

from .clips import DatasetFormatError, read_rgb

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class VideoFileReader:
    """RGB uint8 frames of a video file (.mp4, .avi, ... whatever OpenCV's FFmpeg reads)."""

    def __init__(self, path: str):
        """Open ``path``; raise DatasetFormatError if OpenCV cannot decode it."""
        if not os.path.isfile(path):
            raise DatasetFormatError('video file %s does not exist' % path)
        cap = cv2.VideoCapture(path)
        ok = cap.isOpened()
        ok, first = cap.read() if ok else (False, None)
        cap.release()
        if not ok or first is None:
            raise DatasetFormatError('OpenCV cannot decode a frame of %s' % path)
        self.path = path
        cap = cv2.VideoCapture(path)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 0.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        self.height, self.width = first.shape[:2]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the frames in order."""
        cap = cv2.VideoCapture(self.path)
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


class FrameFolderReader:
    """RGB uint8 frames of the image files in a folder, in sorted file-name order."""

    def __init__(self, folder: str, fps: float = 10.0):
        """List the images of ``folder``."""
        if not os.path.isdir(folder):
            raise DatasetFormatError('frame folder %s does not exist' % folder)
        self.paths: List[str] = sorted(
            p for p in glob.glob(os.path.join(folder, '*'))
            if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
        if not self.paths:
            raise DatasetFormatError('no image files (%s) in %s'
                                     % (', '.join(IMAGE_EXTENSIONS), folder))
        self.fps = fps
        self.frame_count = len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the frames in order."""
        for p in self.paths:
            yield read_rgb(p)


def open_frames(path: str, fps: Optional[float] = None):
    """Return a reader for a video file or a frame folder."""
    if os.path.isdir(path):
        return FrameFolderReader(path, fps or 10.0)
    return VideoFileReader(path)
