"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, byte-compatible with cv_bridge.

Incoming images become a zero-copy numpy view over ``msg.data`` that honours ``step`` (row
padding) and ``is_bigendian``; only the colour conversion to RGB (OpenCV) copies. Outgoing
images are built with the layout cv_bridge writes: ``step = width * channels * bytes``, no
padding, little-endian, the input header copied unchanged.

Every problem with a frame raises :class:`ImageError` (or its subclass
:class:`UnsupportedEncoding`) with a one-line reason; the node drops and counts that frame.
"""
import cv2
import numpy as np

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
#: frames larger than this many pixels are refused (absurd sizes)
MAX_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """A frame that cannot be used; the message says why."""


class UnsupportedEncoding(ImageError):
    """The image's encoding is not one this package converts."""


def check_size(width: int, height: int):
    """Raise ImageError for zero or absurd sizes."""
    if width <= 0 or height <= 0:
        raise ImageError('image has zero size (%dx%d)' % (width, height))
    if width * height > MAX_PIXELS:
        raise ImageError('image of %dx%d is larger than the %d-pixel limit'
                         % (width, height, MAX_PIXELS))


def image_view(msg) -> np.ndarray:
    """Return a zero-copy (H, W[, C]) view of a ``sensor_msgs/Image`` in its own encoding."""
    enc = msg.encoding.lower()
    if enc not in ENCODINGS:
        raise UnsupportedEncoding('unsupported encoding %r (supported: %s)'
                                  % (msg.encoding, ', '.join(sorted(ENCODINGS))))
    h, w = int(msg.height), int(msg.width)
    check_size(w, h)
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


def image_to_rgb(msg) -> np.ndarray:
    """Return the image as contiguous RGB uint8 (H, W, 3) for the network."""
    enc = msg.encoding.lower()
    view = image_view(msg)
    if enc == 'rgb8':
        return np.ascontiguousarray(view)
    if enc == 'mono16':
        return cv2.cvtColor((view >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(view), _TO_RGB[enc])


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to RGB uint8 with OpenCV."""
    data = np.frombuffer(memoryview(msg.data).cast('B'), dtype=np.uint8)
    if data.size == 0:
        raise ImageError('compressed image has no data (format %r)' % msg.format)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError('cannot decode the %d-byte compressed image (format %r)'
                         % (data.size, msg.format))
    check_size(bgr.shape[1], bgr.shape[0])
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
