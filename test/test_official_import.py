"""Official MDEQ Cityscapes files become model folders that run wherever a checkpoint does.

The released files are not reachable from this machine, so each configuration's released
layout (the training wrapper's ``model.`` prefix, ``loss.*``, the ``deq.*`` aliases and the
frozen copy) is written from this package's own modules under the official names, with weights
moved off their defaults (test_official.official_layout), and imported as a user would.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from streamdeq_ros.data.cityscapes import PALETTE, TRAIN_CLASSES
from streamdeq_ros.model import get_config, MDEQConfig
from streamdeq_ros.model.checkpoint import CheckpointError, file_sha256, load_net
from streamdeq_ros.models import resolve_checkpoint
from streamdeq_ros.models.official import import_official
from streamdeq_ros.runtime.executables import executable
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.tools.cli import main as cli
from streamdeq_ros.tools.evaluate import parse_model_spec
from test_official import _net, official_layout, SMALL_YAML

#: seg_mdeq_XL.yaml / seg_mdeq_LARGE.yaml of locuslab/mdeq, the MODEL section
XL_MODEL = {'NUM_LAYERS': 3, 'DROPOUT': 0.04, 'F_THRES': 26, 'B_THRES': 26, 'WNORM': True,
            'DOWNSAMPLE_TIMES': 2, 'NUM_GROUPS': 8, 'EXPANSION_FACTOR': 6,
            'EXTRA': {'FINAL_CONV_KERNEL': 1,
                      'FULL_STAGE': {'NUM_MODULES': 1, 'NUM_BRANCHES': 4, 'BLOCK': 'BASIC',
                                     'NUM_BLOCKS': [1, 1, 1, 1],
                                     'NUM_CHANNELS': [88, 176, 352, 704],
                                     'FUSE_METHOD': 'SUM'}}}
LARGE_MODEL = dict(XL_MODEL, DROPOUT=0.03, EXPANSION_FACTOR=5,
                   EXTRA={'FINAL_CONV_KERNEL': 1,
                          'FULL_STAGE': dict(XL_MODEL['EXTRA']['FULL_STAGE'],
                                             NUM_CHANNELS=[80, 160, 320, 640])})


def test_large_and_xl_are_the_official_configurations():
    assert MDEQConfig.from_official({'MODEL': XL_MODEL}, 'xl') == get_config('xl')
    assert MDEQConfig.from_official({'MODEL': LARGE_MODEL}, 'large') == get_config('large')
    xl = get_config('xl')
    assert (xl.num_channels, xl.expansion, xl.dropout, xl.f_thres, xl.num_groups,
            xl.num_layers) == ((88, 176, 352, 704), 6, 0.04, 26, 8, 3)


def _released(tmp_path, config):
    src = _net(get_config(config))
    path = str(tmp_path / ('MDEQ_%s_Seg.pkl' % config))
    torch.save(official_layout(src, 'released'), path)
    return src, path


def _logits(net, image, iters=3):
    with torch.inference_mode():
        u = net.backbone.inject(net.normalize(image))
        z = net.backbone.zeros(u)
        for _ in range(iters):
            z = net.backbone.f(z, u)
        return net.perceive(z, heads=['segmentation']).seg_logits


@pytest.mark.parametrize('config', ['small', 'xl'])
def test_a_released_file_imports_and_gives_the_source_networks_logits(tmp_path, config,
                                                                      capsys):
    src, path = _released(tmp_path, config)
    out = str(tmp_path / 'imported')
    # xl without --config: found from the file's shapes
    argv = ['import-official', path, '--out', out] + (['--config', config]
                                                      if config == 'small' else [])
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert 'official-mdeq-%s-cityscapes' % config in printed and 'Cityscapes' in printed
    assert sorted(os.listdir(out)) == ['model.pt', 'model_card.json']
    net, card = load_net(resolve_checkpoint(out))
    image = torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)
    assert torch.allclose(_logits(net, image), _logits(src.eval(), image), atol=1e-5)
    seg = card['heads']['segmentation']
    assert seg['classes'] == list(TRAIN_CLASSES) and seg['num_classes'] == 19
    assert seg['palette'] == [list(c) for c in PALETTE]
    assert card['input'] == {'height': 1024, 'width': 2048, 'mean': [0.485, 0.456, 0.406],
                             'std': [0.229, 0.224, 0.225], 'color': 'rgb'}
    assert card['output'] == {'upsample': 'bilinear', 'align_corners': False}
    assert card['inference'] == {'solver': 'broyden',
                                 'single_frame_iters': get_config(config).f_thres}
    assert card['variant'] == 'il' and card['config']['name'] == config
    assert card['source']['sha256'] == file_sha256(path)
    assert card['source']['loaded'].startswith('loaded %s: kept' % path)
    with open(os.path.join(out, 'model_card.json')) as fh:
        assert json.load(fh) == card


def test_the_imported_model_segments_like_the_official_test(tmp_path):
    # the pipeline's mask: logits upsampled bilinearly (align_corners false) to the frame,
    # arg-max; colours from the Cityscapes palette
    src, path = _released(tmp_path, 'small')
    out = str(tmp_path / 'small')
    import_official(path, 'small', out)
    net, card = load_net(os.path.join(out, 'model.pt'))
    pipe = FramePipeline(net, card, (64, 128))
    assert pipe.solver == 'broyden' and pipe.classes == list(TRAIN_CLASSES)
    rgb = np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    result, out = pipe.process(pipe.new_session('cam'), rgb, iters=2, heads=['segmentation'])
    mask = out.mask
    assert result.iters == 2                        # Broyden: 2 iterations, as asked
    assert mask.shape == (48, 96) and mask.max() < 19
    colour = pipe.colorize(mask)
    assert (colour[mask == mask[0, 0]] == PALETTE[mask[0, 0]]).all()


def test_the_official_prefix_imports_once_into_a_cache_keyed_by_the_file(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path / 'cache'))
    _, path = _released(tmp_path, 'small')
    first = resolve_checkpoint('official:%s:small' % path)
    assert first.startswith(str(tmp_path / 'cache' / 'official'))
    stamp = os.stat(first).st_mtime_ns
    assert resolve_checkpoint('official:%s:small' % path) == first
    assert os.stat(first).st_mtime_ns == stamp                  # read, not imported again
    assert resolve_checkpoint('official:%s' % path) != first    # its own key, same card
    torch.save(official_layout(_net(get_config('small')), 'bare'), path)
    assert resolve_checkpoint('official:%s:small' % path) != first      # a changed file
    assert load_net(first)[1]['source']['sha256'] != file_sha256(path)


def test_bad_files_are_refused_in_one_sentence(tmp_path):
    out = str(tmp_path / 'out')
    imagenet = str(tmp_path / 'imagenet.pkl')
    torch.save(official_layout(_net(get_config('small')), 'imagenet'), imagenet)
    with pytest.raises(CheckpointError, match='has no segmentation head .an ImageNet '
                                              'classification model.: train one on it'):
        import_official(imagenet, 'small', out)
    code = str(tmp_path / 'code.pkl')
    with open(code, 'wb') as fh:
        pickle.dump({'model.x': os.system}, fh, protocol=2)
    with pytest.raises(CheckpointError, match='refused because loading it would run code.*'
                                              'GLOBAL posix.system'):
        import_official(code, 'small', out)
    tiny = str(tmp_path / 'tiny.pkl')
    torch.save(official_layout(_net(get_config('tiny')), 'released'), tiny)
    with pytest.raises(CheckpointError, match='fits none of the released configurations'):
        import_official(tiny, None, out)
    with pytest.raises(CheckpointError, match="does not fit the backbone of config 'xl'"):
        import_official(tiny, 'xl', out)
    with pytest.raises(CheckpointError, match="unknown official configuration 'huge'"):
        import_official(tiny, 'huge', out)
    with pytest.raises(CheckpointError, match='does not exist'):
        resolve_checkpoint('official:/nowhere.pkl')
    empty = tmp_path / 'empty_dir'
    empty.mkdir()
    with pytest.raises(CheckpointError, match='has no model.pt'):
        resolve_checkpoint(str(empty))
    assert not os.path.exists(out)                 # nothing written by a refused import


def test_an_experiment_yaml_is_a_configuration(tmp_path):
    import yaml
    _, path = _released(tmp_path, 'small')
    cfg = tmp_path / 'seg_mdeq_SMALL.yaml'
    cfg.write_text(yaml.safe_dump(SMALL_YAML))
    model, card = import_official(path, str(cfg), str(tmp_path / 'a'))
    assert card['config']['num_channels'] == [32, 64, 128, 256]
    assert card['name'] == 'official-mdeq-seg_mdeq_SMALL-cityscapes'
    bad = tmp_path / 'seg_mdeq_XL.yaml'
    bad.write_text(yaml.safe_dump({'MODEL': XL_MODEL}))
    with pytest.raises(CheckpointError, match='does not fit the backbone of config '
                                              "'seg_mdeq_XL'"):
        import_official(path, str(bad), str(tmp_path / 'b'))
    broken = tmp_path / 'broken.yaml'
    broken.write_text('MODEL: [unclosed')
    with pytest.raises(CheckpointError, match='is not valid YAML'):
        import_official(path, str(broken), str(tmp_path / 'c'))


def test_eval_takes_the_official_prefix_with_solver_and_m():
    assert parse_model_spec('IL=official:/x/f.pkl:broyden:4') == \
        ('IL', 'official:/x/f.pkl', 'broyden', 4)
    assert parse_model_spec('IL=official:/x/f.pkl:xl:broyden:26') == \
        ('IL', 'official:/x/f.pkl:xl', 'broyden', 26)
    assert parse_model_spec('IL=official:/x/f.pkl') == ('IL', 'official:/x/f.pkl', None, None)
    assert parse_model_spec('UR=ur.pt:unroll:20') == ('UR', 'ur.pt', 'unroll', 20)


def test_import_official_refuses_from_the_command_line_in_one_line(tmp_path):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'not a checkpoint')
    r = subprocess.run([sys.executable, '-m', 'streamdeq_ros.tools.cli', 'import-official',
                        str(bad), '--out', str(tmp_path / 'o')], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ''
    assert r.stderr.count('\n') == 1 and 'is not a file written by torch.save' in r.stderr


@pytest.mark.parametrize('config', ['small', 'xl'])
def test_the_node_runs_an_official_file_over_dds(tmp_path, monkeypatch, config):
    """checkpoint:=official:FILE:CONFIG in the node: 19 Cityscapes classes, names, colours."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import LabelInfo

    from node_harness import node_with_client, send_until_answered, spin_until
    from streamdeq_ros.ros.image_conv import fill_image
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path / 'cache'))
    _, path = _released(tmp_path, config)
    params = {'checkpoint': 'official:%s:%s' % (path, config), 'input_size': '[64,128]',
              'iters': 2, 'publish_partial': 'false'}
    with node_with_client('/official_cam', params, 'official_client') as (client, pub, got, _):
        labels, colours = [], []
        client.create_subscription(LabelInfo, '/streamdeq/segmentation/label_info',
                                   labels.append,
                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                              durability=DurabilityPolicy.TRANSIENT_LOCAL))
        client.create_subscription(Image, '/streamdeq/segmentation/color_mask',
                                   colours.append, 5)
        rgb = np.random.default_rng(1).integers(0, 255, (60, 120, 3), dtype=np.uint8)
        msg = fill_image(Image(), rgb, 'rgb8')
        for k in range(30):
            msg.header.stamp.sec = 10 + k
            status = send_until_answered(client, pub, got, msg, timeout=120)
            if spin_until(client, lambda: colours and labels, 1.0):
                break
        assert status['iters'] == 2 and status['solver'] == 'broyden'
        assert spin_until(client, lambda: labels and colours and got['class'])
        assert [c.class_name for c in labels[0].class_map] == list(TRAIN_CLASSES)
        mask_msg, colour_msg = got['class'][-1], colours[-1]
        assert mask_msg.encoding == 'mono8' and (mask_msg.height, mask_msg.width) == (60, 120)
        mask = np.frombuffer(bytes(mask_msg.data), np.uint8).reshape(60, 120)
        assert mask.max() < 19
        colour = np.frombuffer(bytes(colour_msg.data), np.uint8).reshape(60, 120, 3)
        same = [m for m in got['class'] if m.header.stamp == colour_msg.header.stamp]
        if same:
            ids = np.frombuffer(bytes(same[0].data), np.uint8).reshape(60, 120)
            assert (colour == np.asarray(PALETTE, np.uint8)[ids]).all()


def test_the_demo_plays_a_video_through_an_imported_model(tmp_path):
    import csv

    import cv2
    _, path = _released(tmp_path, 'small')
    folder = str(tmp_path / 'small')
    import_official(path, 'small', folder)
    video = str(tmp_path / 'street.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 10, (128, 64))
    rng = np.random.default_rng(2)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / 'demo'
    r = subprocess.run([sys.executable, '-m', 'streamdeq_ros.tools.cli', 'demo', '--checkpoint',
                        folder, '--source', video, '--input-size', '64', '128', '--frames', '6',
                        '--iters', '2', '--switch-to', '1', '--out', str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(out / 'frames.csv') as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 6 and {int(row['iters']) for row in rows} <= {1, 2}
    # a segmentation-only model: no detection or pose counts
    assert all(row['detections'] in ('', 'None') for row in rows)


def test_streamdeq_eval_runs_the_papers_protocol_on_cityscapes_with_an_official_file(
        tmp_path, monkeypatch):
    from dataset_fixtures import write_cityscapes
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path / 'cache'))
    _, path = _released(tmp_path, 'small')
    root = tmp_path / 'cityscapes'
    write_cityscapes(root, h=64, w=128)
    out = str(tmp_path / 'eval')
    assert cli(['eval', '--model', 'IL=official:%s:small:broyden:3' % path,
                '--data', 'cityscapes:%s' % root, '--height', '64', '--width', '128',
                '--iters', '1', '2', '--offsets', '0,19', '--fps-frames', '2',
                '--fps-repeats', '1', '--threads', '2', '--out', out]) == 0
    with open(os.path.join(out, 'results.json')) as fh:
        res = json.load(fh)
    il = res['models']['IL']
    assert il['solver'] == 'broyden' and il['baseline']['iters'] == 3
    assert res['classes'] == list(TRAIN_CLASSES) and res['clips'] == 1
    curves = il['metrics']['miou']['curves']
    assert set(curves) == {'1', '2'} and all(0.0 <= v <= 1.0 for c in curves.values()
                                             for v in c.values())


@pytest.mark.parametrize('spec, sentence', [
    ('official:{missing}:small', 'does not exist'),
    ('official:{text}:small', 'is not a file written by torch.save'),
    ('official:{wrong}:xl', "does not fit the backbone of config 'xl'"),
    ('official:{wrong}:/nowhere/seg.yaml', "official configuration '/nowhere/seg.yaml' cannot "
                                           'be read'),
])
def test_the_node_refuses_a_bad_official_file_in_one_sentence(tmp_path, monkeypatch, spec,
                                                              sentence):
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path / 'cache'))
    text = tmp_path / 'notes.pkl'
    text.write_text('not a checkpoint')
    _, wrong = _released(tmp_path, 'small')            # a small file named as xl
    spec = spec.format(missing=tmp_path / 'nope.pkl', text=text, wrong=wrong)
    out = subprocess.run([executable('streamdeq_node'), '--ros-args', '-p',
                          'checkpoint:=%s' % spec], capture_output=True, text=True, timeout=180)
    log = out.stdout + out.stderr
    lines = [ln for ln in log.splitlines() if 'cannot configure' in ln]
    assert out.returncode == 1 and len(lines) == 1, log
    assert sentence in lines[0] and 'Traceback' not in log, log


def test_the_node_takes_a_bundled_model_by_name(tmp_path):
    """checkpoint:=multi_tiny_sur (not the default) is the model the node runs."""
    from sensor_msgs.msg import Image

    from node_harness import node_with_client, send_until_answered
    from streamdeq_ros.ros.image_conv import fill_image
    log = tmp_path / 'node.log'
    params = {'checkpoint': 'multi_tiny_sur', 'iters': 1, 'publish_partial': 'false'}
    with node_with_client('/bundled_cam', params, 'bundled_client', log=str(log)) as (
            client, pub, got, _):
        msg = fill_image(Image(), np.zeros((48, 64, 3), np.uint8), 'rgb8')
        msg.header.stamp.sec = 5
        status = send_until_answered(client, pub, got, msg, timeout=120)
    assert status['iters'] == 1
    started = [ln for ln in log.read_text().splitlines() if 'model multi_tiny_sur' in ln]
    assert started and 'input_size [96, 192] (height, width)' in started[0], log.read_text()


def test_random_weights_of_the_released_shapes_say_so(tmp_path):
    """import-official --random-weights: an import's shapes and card, marked as random."""
    out = str(tmp_path / 'random_small')
    assert cli(['import-official', '--random-weights', '--config', 'small', '--out', out]) == 0
    net, card = load_net(resolve_checkpoint(out))
    assert net.cfg == get_config('small') and card['inference']['solver'] == 'broyden'
    assert card['heads']['segmentation']['classes'] == list(TRAIN_CLASSES)
    assert 'random weights' in card['trained_on'] and card['source']['sha256'] == ''
    assert cli(['import-official', '--out', out]) == 2                 # neither FILE nor random
    assert cli(['import-official', 'x.pkl', '--random-weights', '--out', out]) == 2


def test_the_cost_table_measures_each_size_in_its_own_process(tmp_path):
    out = tmp_path / 'cost.json'
    assert cli(['bench', 'solver', '--cost', '--config', 'tiny', '--sizes', '64x128,128x256',
                '--repeats', '1', '--cost-iters', '2', '--json', str(out)]) == 0
    got = json.loads(out.read_text())
    small, large = got['sizes']
    assert small['input'] == [64, 128] and large['input'] == [128, 256]
    cfg = get_config('tiny')
    # the state: every branch at 1/4, 1/8, ... of the input, float32
    n = sum(c * (128 // 2 ** (i + 2)) * (256 // 2 ** (i + 2))
            for i, c in enumerate(cfg.num_channels))
    assert large['state_bytes_per_camera'] == 4 * n
    assert large['broyden_history_mb'][str(cfg.f_thres)] == 2 * n * cfg.f_thres * 4 / 2 ** 20
    for row in (small, large):
        assert row['ms_per_f_eval'] > 0 and len(row['broyden_iter_ms']) == 1   # iteration 2
    with pytest.raises(SystemExit, match='--sizes takes HxW'):
        cli(['bench', 'solver', '--cost', '--sizes', '64x', '--config', 'tiny'])
