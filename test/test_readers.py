"""Dataset readers on tiny fixtures written in each dataset's own layout and file format."""
import json
import os

import cv2
import numpy as np
import pytest

from dataset_fixtures import solid_frame, write_cityscapes, write_png
from streamdeq_ros.data.cityscapes import cityscapes_clips, TRAIN_CLASSES
from streamdeq_ros.data.clips import DatasetFormatError
from streamdeq_ros.data.imagenet_vid import CLASSES as VID_CLASSES, read_annotation, vid_clips
from streamdeq_ros.data.mpii import mpii_clips
from streamdeq_ros.data.video import FrameFolderReader, open_frames, VideoFileReader


def test_cityscapes_clip_is_the_19_frames_before_the_label(tmp_path):
    root = tmp_path / 'cs'
    city, seq, f = 'aachen', '000012', 294
    frames_dir = write_cityscapes(root, 'val', city, seq, f)
    clips = cityscapes_clips(str(root), 'val')
    assert len(clips) == 1
    c = clips[0]
    assert c.labelled_index == 19 and len(c.frames) == 20
    assert [int(c.frames[i][0, 0, 0]) for i in (0, 5, 19)] == [0, 5, 19]   # RGB, in order
    assert c.mask[5, 5] == TRAIN_CLASSES.index('sky')
    assert c.mask[15, 5] == TRAIN_CLASSES.index('car')
    assert c.mask[25, 5] == TRAIN_CLASSES.index('road')
    assert c.mask[0, 0] == 255
    small = cityscapes_clips(str(root), 'val', size=(16, 24))[0]
    assert small.frames[3].shape == (16, 24, 3) and small.mask.shape == (16, 24)
    os.remove(os.path.join(frames_dir, '%s_%s_%06d_leftImg8bit.png' % (city, seq, f - 3)))
    with pytest.raises(DatasetFormatError, match='misses 1 sequence frames'):
        cityscapes_clips(str(root), 'val')
    with pytest.raises(DatasetFormatError, match='not a Cityscapes root'):
        cityscapes_clips(str(tmp_path / 'nothing'), 'val')


_VID_XML = """<annotation>
  <folder>ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000</folder>
  <filename>{frame:06d}</filename>
  <source><database>ILSVRC_2015</database></source>
  <size><width>48</width><height>32</height></size>
  <object>
    <trackid>0</trackid>
    <name>n02958343</name>
    <bndbox><xmax>30</xmax><xmin>{x}</xmin><ymax>20</ymax><ymin>4</ymin></bndbox>
    <occluded>0</occluded>
    <generated>0</generated>
  </object>
  <object>
    <trackid>3</trackid>
    <name>n02084071</name>
    <bndbox><xmax>47</xmax><xmin>40</xmin><ymax>31</ymax><ymin>25</ymin></bndbox>
    <occluded>1</occluded>
    <generated>0</generated>
  </object>
</annotation>
"""


def test_imagenet_vid_snippets_and_xml(tmp_path):
    root = tmp_path / 'vid'
    snip = os.path.join('ILSVRC2015_VID_train_0000', 'ILSVRC2015_train_00000000')
    for k in range(25):
        write_png(root / 'Data' / 'VID' / 'train' / snip / ('%06d.JPEG' % k),
                  solid_frame(10 * (k % 20)))
        ann = root / 'Annotations' / 'VID' / 'train' / snip / ('%06d.xml' % k)
        os.makedirs(ann.parent, exist_ok=True)
        ann.write_text(_VID_XML.format(frame=k, x=k))
    clips = vid_clips(str(root), 'train', length=20, stride=5)
    assert [c.name for c in clips] == [snip + '/000019', snip + '/000024']
    c = clips[1]
    assert len(c.frames) == 20 and c.labelled_index == 19
    assert c.meta['boxes'].tolist() == [[24, 4, 30, 20], [40, 25, 47, 31]]
    assert [VID_CLASSES[i] for i in c.meta['labels']] == ['car', 'dog']
    assert c.meta['track_ids'].tolist() == [0, 3] and c.meta['occluded'].tolist() == [0, 1]
    assert (c.meta['width'], c.meta['height']) == (48, 32)
    bad = tmp_path / 'bad.xml'
    bad.write_text(_VID_XML.format(frame=0, x=1).replace('n02958343', 'n99999999'))
    with pytest.raises(DatasetFormatError, match='unknown class'):
        read_annotation(str(bad))
    bad.write_text('<annotation><size>')
    with pytest.raises(DatasetFormatError, match='not valid XML'):
        read_annotation(str(bad))


def test_mpii_annotations_and_preceding_frames(tmp_path):
    root = tmp_path / 'mpii'
    joints = [[10 + j, 20 + j] for j in range(16)]
    people = [{'image': '015601864.jpg', 'center': [20, 16], 'scale': 1.5, 'joints': joints,
               'joints_vis': [1] * 15 + [0], 'head_box': [0, 0, 3, 4]},
              {'image': '015601864.jpg', 'center': [30, 16], 'scale': 1.2, 'joints': joints,
               'joints_vis': [1] * 16}]
    os.makedirs(root / 'annot')
    (root / 'annot' / 'valid.json').write_text(json.dumps(people))
    write_png(root / 'images' / '015601864.jpg', solid_frame(200))
    for k in range(1, 20):
        write_png(root / 'frames' / '015601864' / ('%03d.jpg' % k), solid_frame(10 * k))
    clips = mpii_clips(str(root), 'valid')
    assert len(clips) == 1
    c = clips[0]
    assert len(c.frames) == 20 and c.labelled_index == 19
    # oldest first: frame 0 is 19 frames before, the last is the annotated image
    assert abs(int(c.frames[0][0, 0, 0]) - 190) <= 3 and abs(int(c.frames[19][0, 0, 0]) - 200) <= 3
    kp = c.meta['keypoints']
    assert kp.shape == (2, 16, 3) and kp[0, 15, 2] == 0 and kp[0, 0, 2] == 2
    assert c.meta['head_sizes'][0] == pytest.approx(0.6 * 5.0)
    assert c.meta['head_sizes'][1] == pytest.approx(np.hypot(1, 1))
    os.remove(root / 'frames' / '015601864' / '007.jpg')
    with pytest.raises(DatasetFormatError, match='misses 1 of its 20 frames'):
        mpii_clips(str(root), 'valid')


def test_video_file_and_frame_folder_readers(tmp_path):
    path = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 12.0, (48, 32))
    assert writer.isOpened()
    for k in range(7):
        writer.write(solid_frame(30 * k))
    writer.release()
    video = open_frames(path)
    assert isinstance(video, VideoFileReader)
    frames = list(video)
    assert len(frames) == 7 and frames[0].shape == (32, 48, 3)
    assert video.fps == pytest.approx(12.0)
    assert [abs(int(f[16, 24, 0]) - 30 * k) <= 6 for k, f in enumerate(frames)] == [True] * 7
    folder = tmp_path / 'frames'
    for k in range(3):
        write_png(folder / ('%04d.png' % k), solid_frame(50 * k))
    reader = open_frames(str(folder), fps=5)
    assert isinstance(reader, FrameFolderReader) and reader.fps == 5
    assert [int(f[0, 0, 0]) for f in reader] == [0, 50, 100]
    (tmp_path / 'junk.mp4').write_bytes(b'not a video')
    with pytest.raises(DatasetFormatError, match='cannot decode'):
        VideoFileReader(str(tmp_path / 'junk.mp4'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match='no image files'):
        FrameFolderReader(str(empty))
