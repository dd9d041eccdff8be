"""Write tiny datasets in the real datasets' directory layouts and file formats."""
import os

import cv2
import numpy as np


def write_png(path, image):
    """Write ``image`` (BGR or single channel) to ``path``, creating folders."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def solid_frame(value, h=32, w=48):
    """Return a BGR frame whose red channel is ``value`` (green 7)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 2] = value
    img[..., 1] = 7
    return img


def write_cityscapes(root, split='val', city='aachen', seq='000012', frame=294, h=32, w=48):
    """Write one 30-frame snippet and its gtFine label (sky, car, road; one ignored pixel)."""
    for k in range(frame - 19, frame + 11):
        write_png(os.path.join(str(root), 'leftImg8bit_sequence', split, city,
                               '%s_%s_%06d_leftImg8bit.png' % (city, seq, k)),
                  solid_frame(k - (frame - 19), h, w))
    ids = np.zeros((h, w), np.uint8)
    ids[:h * 5 // 16] = 23      # sky
    ids[h * 5 // 16:h * 10 // 16] = 26    # car
    ids[h * 10 // 16:] = 7      # road
    ids[0, 0] = 4               # static -> ignore
    write_png(os.path.join(str(root), 'gtFine', split, city,
                           '%s_%s_%06d_gtFine_labelIds.png' % (city, seq, frame)), ids)
    return os.path.join(str(root), 'leftImg8bit_sequence', split, city)
