"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, byte-compatible with cv_bridge.

Incoming images become a zero-copy numpy view over ``msg.data`` that honours ``step`` (row
padding) and ``is_bigendian``; only the colour conversion to RGB (OpenCV) copies. The node
subscribes to the serialized bytes (rclpy's ``raw=True``) and reads them with
:func:`read_image` / :func:`read_compressed`: the header and size fields are parsed from the
CDR buffer, and ``data`` stays a view of that buffer, so a frame is never deserialized into a
Python message and an oversized one is refused before any pixel is copied. Outgoing
images are built with the layout cv_bridge writes: ``step = width * channels * bytes``, no
padding, little-endian, the input header copied unchanged.

Sizes are checked before any pixel is touched: a raw image by its header fields, a compressed
one by the dimensions in its file header (read with Pillow, which parses only the header), so a
decompression bomb (a small PNG of 30000x30000 zeros) is refused without decoding it.

Every problem with a frame raises :class:`ImageError` (or its subclass
:class:`UnsupportedEncoding`) with a one-line reason; the node drops and counts that frame.
"""
from dataclasses import dataclass
import io
import struct
import threading
from typing import Optional

import cv2
import numpy as np
from PIL import Image as PILImage
from std_msgs.msg import Header

#: encoding -> (channels, numpy dtype of one channel, OpenCV code to RGB or None)
#: 8UC1/8UC3/8UC4 are read as mono8/bgr8/bgra8 (OpenCV's channel order, as cv_bridge's
#: cvtColorForDisplay guesses); uyvy/yuyv are the current names of yuv422/yuv422_yuy2; bayer
#: patterns map to OpenCV's codes as cv_bridge maps them; nv12/nv21 are 4:2:0 (1.5 bytes a pixel)
ENCODINGS = {
    'rgb8': (3, np.uint8, None), 'bgr8': (3, np.uint8, cv2.COLOR_BGR2RGB),
    '8uc3': (3, np.uint8, cv2.COLOR_BGR2RGB),
    'rgba8': (4, np.uint8, cv2.COLOR_RGBA2RGB), 'bgra8': (4, np.uint8, cv2.COLOR_BGRA2RGB),
    '8uc4': (4, np.uint8, cv2.COLOR_BGRA2RGB),
    'mono8': (1, np.uint8, cv2.COLOR_GRAY2RGB), '8uc1': (1, np.uint8, cv2.COLOR_GRAY2RGB),
    'mono16': (1, np.uint16, cv2.COLOR_GRAY2RGB), '16uc1': (1, np.uint16, cv2.COLOR_GRAY2RGB),
    'rgb16': (3, np.uint16, None), 'bgr16': (3, np.uint16, cv2.COLOR_BGR2RGB),
    'rgba16': (4, np.uint16, cv2.COLOR_RGBA2RGB), 'bgra16': (4, np.uint16, cv2.COLOR_BGRA2RGB),
    'uyvy': (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY), 'yuv422': (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    'yuyv': (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    'yuv422_yuy2': (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    'nv12': (1, np.uint8, cv2.COLOR_YUV2RGB_NV12), 'nv21': (1, np.uint8, cv2.COLOR_YUV2RGB_NV21),
}
for _bits, _dtype in (('8', np.uint8), ('16', np.uint16)):
    for _pattern, _code in (('rggb', cv2.COLOR_BayerBG2RGB), ('bggr', cv2.COLOR_BayerRG2RGB),
                            ('gbrg', cv2.COLOR_BayerGR2RGB), ('grbg', cv2.COLOR_BayerGB2RGB)):
        ENCODINGS['bayer_%s%s' % (_pattern, _bits)] = (1, _dtype, _code)
#: depth images (:func:`image_view` with ``encodings=DEPTH_VIEWS``): millimetres or metres
DEPTH_VIEWS = {'16uc1': (1, np.uint16, None), 'mono16': (1, np.uint16, None),
               '32fc1': (1, np.float32, None)}
#: 4:2:0 encodings: a full-size luma plane, then a half-height interleaved chroma plane
PLANAR_420 = ('nv12', 'nv21')
#: encodings whose two-pixel groups or 2x2 cells need an even width (and height)
EVEN_WIDTH = ('uyvy', 'yuv422', 'yuyv', 'yuv422_yuy2') + PLANAR_420
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


def _encoding(msg, encodings=ENCODINGS) -> str:
    enc = msg.encoding.lower()
    if enc not in encodings:
        raise UnsupportedEncoding('unsupported encoding %r (supported: %s)'
                                  % (msg.encoding, ', '.join(sorted(encodings))))
    return enc


def image_view(msg, max_pixels: int = MAX_PIXELS, encodings=ENCODINGS) -> np.ndarray:
    """Return a zero-copy (H, W[, C]) view of a ``sensor_msgs/Image`` in its own encoding.

    A 4:2:0 image (nv12, nv21) is returned as its (H * 3 / 2, W) byte planes. ``encodings``:
    the table of encodings read (:data:`DEPTH_VIEWS` for depth images).
    """
    enc = _encoding(msg, encodings)
    h, w = int(msg.height), int(msg.width)
    check_size(w, h, max_pixels)
    channels, dtype, _ = encodings[enc]
    itemsize = np.dtype(dtype).itemsize
    row = w * channels * itemsize
    if enc in EVEN_WIDTH and w % 2:
        raise ImageError('%s needs an even width, got %d' % (enc, w))
    if enc in PLANAR_420:
        if h % 2:
            raise ImageError('%s needs an even height, got %d' % (enc, h))
        h = h * 3 // 2
    step = int(msg.step)
    if step < row:
        raise ImageError('step %d is smaller than a row of %d x %s (%d bytes)'
                         % (step, w, enc, row))
    buf = memoryview(msg.data).cast('B')
    if len(buf) < step * (h - 1) + row:
        raise ImageError('data has %d bytes, %dx%d %s with step %d needs %d'
                         % (len(buf), w, int(msg.height), enc, step, step * (h - 1) + row))
    dt = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<') if itemsize > 1 \
        else np.dtype(dtype)
    flat = np.frombuffer(buf, dtype=np.uint8, count=step * (h - 1) + row)
    rows = np.lib.stride_tricks.as_strided(flat, shape=(h, row), strides=(step, 1),
                                           writeable=False)
    view = rows.view(dt) if itemsize > 1 else rows
    return view.reshape(h, w, channels) if channels > 1 else view.reshape(h, w)


def white_level(view: np.ndarray) -> int:
    """Return the white level of a 16-bit frame: 2^k - 1 for the fewest bits k that hold it.

    k is from 8 to 16, so a 12-bit camera's 4095 gives 4095 and a dark frame 255.
    """
    top = int(view.max()) if view.size else 0
    return (1 << max(8, top.bit_length())) - 1


def to_8bit(view: np.ndarray, white: int = 0) -> np.ndarray:
    """Return a 16-bit frame scaled to uint8 with ``white`` (0: :func:`white_level`) as 255."""
    native = np.asarray(view, dtype=np.uint16)
    white = white or white_level(native)
    return cv2.convertScaleAbs(native, alpha=255.0 / white)


def image_to_rgb(msg, max_pixels: int = MAX_PIXELS, mono16_max: int = 0) -> np.ndarray:
    """Return the image as contiguous RGB uint8 (H, W, 3) for the network.

    16-bit encodings are scaled to 8 bits with ``mono16_max`` as white (0: each frame's
    :func:`white_level`, so a 12-bit camera's full range maps to 0-255).
    """
    enc = _encoding(msg)
    view = image_view(msg, max_pixels)
    _, dtype, code = ENCODINGS[enc]
    if dtype == np.uint16:
        view = to_8bit(view, mono16_max)
    if code is None:
        return np.ascontiguousarray(view)
    return cv2.cvtColor(np.ascontiguousarray(view), code)


# -- serialized messages: the header first, the pixels as a view of the received bytes --------
@dataclass
class WireImage:
    """A ``sensor_msgs/Image`` or ``CompressedImage`` read from its serialized (CDR) bytes.

    ``data`` is a zero-copy memoryview of the received buffer; the other fields are the
    message's own. :func:`image_to_rgb` and :func:`compressed_to_rgb` take it as a message.
    """

    header: Header
    data: memoryview
    height: int = 0
    width: int = 0
    encoding: str = ''
    is_bigendian: int = 0
    step: int = 0
    format: Optional[str] = None        # noqa: A003 - the CompressedImage field's name

    @property
    def compressed(self) -> bool:
        """Return whether this is a CompressedImage."""
        return self.format is not None


class _Cdr:
    """Read CDR (and XCDR2 plain) fields in order; alignment is from the payload's start."""

    def __init__(self, raw):
        self.buf = memoryview(raw).cast('B')
        if len(self.buf) < 4 or self.buf[0] != 0 or self.buf[1] not in (0, 1, 6, 7):
            raise ImageError('the serialized message does not start with a CDR encapsulation '
                             'header (%d bytes)' % len(self.buf))
        self.order = '<' if self.buf[1] & 1 else '>'
        self.pos = 4

    def _take(self, size: int, align: int) -> int:
        self.pos += -(self.pos - 4) % align
        at = self.pos
        if at + size > len(self.buf):
            raise ImageError('the serialized message is truncated (%d bytes)' % len(self.buf))
        self.pos += size
        return at

    def u32(self) -> int:
        return struct.unpack_from(self.order + 'I', self.buf, self._take(4, 4))[0]

    def i32(self) -> int:
        return struct.unpack_from(self.order + 'i', self.buf, self._take(4, 4))[0]

    def u8(self) -> int:
        return self.buf[self._take(1, 1)]

    def string(self) -> str:
        n = self.u32()
        at = self._take(n, 1)
        return bytes(self.buf[at:at + max(0, n - 1)]).decode('utf-8', 'replace')

    def octets(self) -> memoryview:
        n = self.u32()
        at = self._take(n, 1)
        return self.buf[at:at + n]


def _header(r: _Cdr) -> Header:
    h = Header()
    h.stamp.sec, h.stamp.nanosec = r.i32(), r.u32()
    h.frame_id = r.string()
    return h


def read_image(raw) -> WireImage:
    """Return the serialized ``sensor_msgs/Image`` ``raw`` as a WireImage (no pixel copied)."""
    r = _Cdr(raw)
    header = _header(r)
    height, width = r.u32(), r.u32()
    encoding = r.string()
    bigendian = r.u8()
    step = r.u32()
    return WireImage(header, r.octets(), height, width, encoding, bigendian, step)


def read_compressed(raw) -> WireImage:
    """Return the serialized ``sensor_msgs/CompressedImage`` ``raw`` as a WireImage."""
    r = _Cdr(raw)
    header = _header(r)
    fmt = r.string()
    return WireImage(header, r.octets(), format=fmt)


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
    channels, dtype, _ = ENCODINGS[encoding]
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
