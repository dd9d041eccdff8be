"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, byte-compatible with cv_bridge.

Incoming images become a zero-copy numpy view over ``msg.data`` that honours ``step`` (row
padding) and ``is_bigendian``; only the colour conversion to RGB (OpenCV) copies. Outgoing
images are built with the layout cv_bridge writes: ``step = width * channels * bytes``, no
padding, little-endian, the input header copied unchanged.

Sizes are checked before any pixel is touched: a raw image by its header fields, a compressed
one by the dimensions in its file header (read with Pillow, which parses only the header), so a
decompression bomb (a small PNG of 30000x30000 zeros) is refused without decoding it.

Every problem with a frame raises :class:`ImageError` (or its subclass
:class:`UnsupportedEncoding`) with a one-line reason; the node drops and counts that frame.
"""
import io
import threading

import cv2
import numpy as np
from PIL import Image as PILImage

#: encoding -> (channels, numpy dtype of one channel)
ENCODINGS = {
    'rgb8': (3, np.uint8), 'bgr8': (3, np.uint8), 'rgba8': (4, np.uint8),
    'bgra8': (4, np.uint8), 'mono8': (1, np.uint8), 'mono16': (1, np.uint16),
    'yuv422': (2, np.uint8),          # UYVY
    'yuv422_yuy2': (2, np.uint8),     # YUYV
}
_TO_RGB = {
    'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB, 'bgra8': cv2.COLOR_BGRA2RGB,
    'mono8': cv2.COLOR_GRAY2RGB, 'yuv422': cv2.COLOR_YUV2RGB_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2,
}
#: frames larger than this many pixels are refused unless the caller says otherwise
#: (the node's ``max_input_pixels``; 4096 x 4096 covers every common camera)
MAX_PIXELS = 4096 * 4096
_PIL_LOCK = threading.Lock()


class ImageError(ValueError):
    """A frame that cannot be used; the message says why."""


class UnsupportedEncoding(ImageError):
    """The image's encoding is not one this package converts."""


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS):
    """Raise ImageError for a zero size or more than ``max_pixels`` pixels."""
    if width <= 0 or height <= 0:
        raise ImageError('image has zero size (%dx%d)' % (width, height))
    if width * height > max_pixels:
        raise ImageError('image of %dx%d (%d pixels) is larger than max_input_pixels (%d)'
                         % (width, height, width * height, max_pixels))


def image_view(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return a zero-copy (H, W[, C]) view of a ``sensor_msgs/Image`` in its own encoding."""
    enc = msg.encoding.lower()
    if enc not in ENCODINGS:
        raise UnsupportedEncoding('unsupported encoding %r (supported: %s)'
                                  % (msg.encoding, ', '.join(sorted(ENCODINGS))))
    h, w = int(msg.height), int(msg.width)
    check_size(w, h, max_pixels)
    channels, dtype = ENCODINGS[enc]
    itemsize = np.dtype(dtype).itemsize
    row = w * channels * itemsize
    if enc.startswith('yuv422') and w % 2:
        raise ImageError('%s needs an even width, got %d' % (enc, w))
    step = int(msg.step)
    if step < row:
        raise ImageError('step %d is smaller than a row of %d x %s (%d bytes)'
                         % (step, w, enc, row))
    buf = memoryview(msg.data).cast('B')
    if len(buf) < step * (h - 1) + row:
        raise ImageError('data has %d bytes, %dx%d %s with step %d needs %d'
                         % (len(buf), w, h, enc, step, step * (h - 1) + row))
    dt = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<') if itemsize > 1 \
        else np.dtype(dtype)
    flat = np.frombuffer(buf, dtype=np.uint8, count=step * (h - 1) + row)
    rows = np.lib.stride_tricks.as_strided(flat, shape=(h, row), strides=(step, 1),
                                           writeable=False)
    view = rows.view(dt) if itemsize > 1 else rows
    return view.reshape(h, w, channels) if channels > 1 else view.reshape(h, w)


def image_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return the image as contiguous RGB uint8 (H, W, 3) for the network."""
    enc = msg.encoding.lower()
    view = image_view(msg, max_pixels)
    if enc == 'rgb8':
        return np.ascontiguousarray(view)
    if enc == 'mono16':
        return cv2.cvtColor((view >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(view), _TO_RGB[enc])


def compressed_size(data) -> tuple:
    """Return (width, height) from a compressed image's file header, without decoding it."""
    try:
        with _PIL_LOCK:
            # Pillow's own bomb guard would refuse before telling the size: the caller's
            # max_pixels decides here (nothing is decoded either way)
            limit, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
            try:
                with PILImage.open(io.BytesIO(data)) as img:    # parses the header only
                    return img.size
            finally:
                PILImage.MAX_IMAGE_PIXELS = limit
    except (OSError, ValueError, SyntaxError) as exc:   # PIL's UnidentifiedImageError is OSError
        raise ImageError('cannot read the compressed image header: %s' % exc) from None


def compressed_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to RGB uint8 with OpenCV.

    The size in the file header is checked against ``max_pixels`` before decoding.
    """
    buf = memoryview(msg.data).cast('B')
    if len(buf) == 0:
        raise ImageError('compressed image has no data (format %r)' % msg.format)
    width, height = compressed_size(buf)
    check_size(width, height, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError('cannot decode the %d-byte compressed image (format %r)'
                         % (len(buf), msg.format))
    if sorted(bgr.shape[:2]) != sorted((height, width)):     # EXIF may rotate by 90 degrees
        raise ImageError('decoded %dx%d, but the header says %dx%d'
                         % (bgr.shape[1], bgr.shape[0], width, height))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fill_image(msg, array: np.ndarray, encoding: str, header=None):
    """Fill ``msg`` (a ``sensor_msgs/Image``) from ``array`` as cv_bridge's cv2_to_imgmsg does."""
    if encoding not in ('mono8', 'rgb8', 'bgr8', 'mono16'):
        raise UnsupportedEncoding('cannot write encoding %r' % encoding)
    channels, dtype = ENCODINGS[encoding]
    arr = np.ascontiguousarray(array, dtype=dtype)
    if arr.ndim != (2 if channels == 1 else 3) or (channels > 1 and arr.shape[2] != channels):
        raise ImageError('array of shape %s does not hold %s' % (arr.shape, encoding))
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * channels * arr.itemsize)
    msg.data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
    return msg
