"""Image message conversion: zero-copy views honouring step, encodings, and bad frames."""
import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from streamdeq_ros.ros.image_conv import (compressed_to_rgb, fill_image, image_to_rgb,
                                          image_view, ImageError, UnsupportedEncoding)


def _msg(array, encoding, pad=0, bigendian=False):
    h, w = array.shape[:2]
    row = array[0].nbytes
    raw = np.zeros((h, row + pad), np.uint8)
    a = array.astype(array.dtype.newbyteorder('>' if bigendian else '<'))
    raw[:, :row] = np.frombuffer(a.tobytes(), np.uint8).reshape(h, row)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                 step=row + pad, data=raw.tobytes())


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)


def test_padded_rgb8_is_a_zero_copy_view(rgb):
    msg = _msg(rgb, 'rgb8', pad=7)
    view = image_view(msg)
    assert np.array_equal(view, rgb)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    assert np.array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize('encoding, convert', [
    ('bgr8', lambda a: a[..., ::-1]),
    ('rgba8', lambda a: np.concatenate([a, np.full(a.shape[:2] + (1,), 9, np.uint8)], 2)),
    ('bgra8', lambda a: np.concatenate(
        [a[..., ::-1], np.full(a.shape[:2] + (1,), 9, np.uint8)], 2)),
])
def test_colour_encodings_become_rgb(rgb, encoding, convert):
    assert np.array_equal(image_to_rgb(_msg(np.ascontiguousarray(convert(rgb)), encoding,
                                            pad=3)), rgb)


@pytest.mark.parametrize('bigendian', [False, True])
def test_mono_encodings(bigendian):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = image_to_rgb(_msg(gray, 'mono8', pad=2))
    assert out.shape == (6, 10, 3) and (out == gray[..., None]).all()
    deep = (gray.astype(np.uint16) * 257 + 1)
    msg = _msg(deep, 'mono16', pad=4, bigendian=bigendian)
    assert np.array_equal(image_view(msg), deep)
    assert np.array_equal(image_to_rgb(msg)[..., 0], gray)


@pytest.mark.parametrize('encoding, code', [('yuv422', cv2.COLOR_YUV2RGB_UYVY),
                                            ('yuv422_yuy2', cv2.COLOR_YUV2RGB_YUY2)])
def test_yuv422(encoding, code):
    yuv = np.random.default_rng(1).integers(16, 235, (4, 8, 2), dtype=np.uint8)
    assert np.array_equal(image_to_rgb(_msg(yuv, encoding, pad=4)), cv2.cvtColor(yuv, code))


def test_written_images_have_cv_bridge_layout(rgb):
    header = Header(frame_id='cam0')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = fill_image(Image(), rgb, 'rgb8', header)
    assert (msg.step, msg.is_bigendian, msg.encoding) == (30, 0, 'rgb8')
    assert msg.header.frame_id == 'cam0' and msg.header.stamp.nanosec == 345
    assert bytes(msg.data) == rgb.tobytes()
    mask = np.arange(60, dtype=np.uint8).reshape(6, 10)
    m = fill_image(Image(), mask, 'mono8')
    assert m.step == 10 and np.array_equal(image_view(m), mask)
    with pytest.raises(ImageError, match='does not hold'):
        fill_image(Image(), mask, 'rgb8')


def test_compressed_jpeg_and_png(rgb):
    big = cv2.resize(rgb, (40, 24), interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode('.png', big[..., ::-1])
    assert np.array_equal(compressed_to_rgb(CompressedImage(format='png',
                                                            data=png.tobytes())), big)
    ok, jpg = cv2.imencode('.jpg', big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_to_rgb(CompressedImage(format='jpeg', data=jpg.tobytes()))
    assert out.shape == big.shape and np.abs(out.astype(int) - big).mean() < 20


@pytest.mark.parametrize('make, error, text', [
    (lambda m: setattr(m, 'encoding', '32FC1'), UnsupportedEncoding, 'unsupported encoding'),
    (lambda m: setattr(m, 'step', 10), ImageError, 'step 10 is smaller'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-40]), ImageError, 'data has'),
    (lambda m: setattr(m, 'data', b''), ImageError, 'data has 0 bytes'),
    (lambda m: setattr(m, 'width', 0), ImageError, 'zero size'),
    (lambda m: (setattr(m, 'height', 100000), setattr(m, 'width', 100000)), ImageError,
     'larger than'),
])
def test_bad_frames_raise_a_specific_error(rgb, make, error, text):
    msg = _msg(rgb, 'rgb8')
    make(msg)
    with pytest.raises(error, match=text):
        image_to_rgb(msg)


def test_bad_compressed_and_odd_yuv():
    with pytest.raises(ImageError, match='cannot read the compressed image header'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=b'\xff\xd8garbage'))
    with pytest.raises(ImageError, match='no data'):
        compressed_to_rgb(CompressedImage(format='jpeg', data=b''))
    with pytest.raises(ImageError, match='even width'):
        image_to_rgb(_msg(np.zeros((2, 3, 2), np.uint8), 'yuv422'))


def _png_bomb(side: int) -> bytes:
    """Return a valid grey PNG of ``side`` x ``side`` zeros (a few hundred KB)."""
    z = zlib.compressobj(9)
    row = bytes(side + 1)                       # filter byte 0 + a row of zeros
    idat = b''.join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + \
            struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) + \
        chunk(b'IEND', b'')


BOMB_CHILD = """
import resource, sys, time
from sensor_msgs.msg import CompressedImage
from streamdeq_ros.ros.image_conv import compressed_to_rgb, ImageError
data = open(sys.argv[1], 'rb').read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.process_time()
try:
    compressed_to_rgb(CompressedImage(format='png', data=data))
    print('accepted')
except ImageError as exc:
    print('refused: %s' % exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
print(time.process_time() - t0)
"""


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    # 20000 x 20000 zeros: a 400 MB image (1.2 GB decoded to colour) in about 400 KB of PNG
    path = tmp_path / 'bomb.png'
    path.write_bytes(_png_bomb(20000))
    assert path.stat().st_size < 2_000_000
    out = subprocess.run([sys.executable, '-c', BOMB_CHILD, str(path)], capture_output=True,
                         text=True, timeout=300)
    verdict, grown_mb, cpu_s = out.stdout.strip().splitlines()[-3:]
    assert verdict == 'refused: image of 20000x20000 (400000000 pixels) is larger than ' \
        'max_input_pixels (16777216)', out.stdout + out.stderr
    assert int(grown_mb) < 50, 'peak memory grew by %s MB' % grown_mb   # nothing decoded
    assert float(cpu_s) < 1.0


def test_compressed_frames_over_the_limit_are_refused_before_decoding():
    ok, jpg = cv2.imencode('.jpg', np.zeros((600, 800, 3), np.uint8))
    msg = CompressedImage(format='jpeg', data=jpg.tobytes())
    assert compressed_to_rgb(msg).shape == (600, 800, 3)
    with pytest.raises(ImageError, match=r'800x600 \(480000 pixels\) is larger than '
                                         r'max_input_pixels \(479999\)'):
        compressed_to_rgb(msg, max_pixels=479999)
    raw = _msg(np.zeros((600, 800, 3), np.uint8), 'rgb8')
    assert image_to_rgb(raw, max_pixels=480000).shape == (600, 800, 3)
    with pytest.raises(ImageError, match='larger than max_input_pixels'):
        image_to_rgb(raw, max_pixels=479999)


def test_opencv_stays_at_4_as_the_real_cv_bridge_needs():
    # OpenCV 5 changed the type codes cv_bridge maps (cv2_to_imgmsg raises KeyError: 16)
    assert cv2.__version__.split('.')[0] == '4'
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'requirements.txt')) as fh:
        pins = [ln.strip() for ln in fh if ln.startswith('opencv')]
    assert pins == ['opencv-python-headless>=4.8,<5']
