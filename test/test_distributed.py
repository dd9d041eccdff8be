"""Training at scale on this CPU: torchrun + DDP over gloo, resume, AMP, the Cityscapes recipe.

``--bn frozen`` where runs with different process counts are compared: with per-process batch
statistics the stem's BatchNorm sees another batch in each process, and SyncBatchNorm (which
would make them agree) runs on GPUs only.
"""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dataset_fixtures import write_cityscapes
from streamdeq_ros.data.cityscapes import RandomScaleCrop
from streamdeq_ros.model.checkpoint import read_checkpoint
from streamdeq_ros.runtime.executables import executable
from streamdeq_ros.tools.distributed import Dist, ShardSampler, without_option

BIN = executable('streamdeq')
RUN = ['--variant', 'sur', '--height', '32', '--width', '64', '--batch-size', '4',
       '--val-clips', '2', '--train-clips', '12', '--unroll', '3', '--threads', '1',
       '--bn', 'frozen', '--seed', '5']


def _train(out, *extra, timeout=600):
    res = subprocess.run([BIN, 'train', '--out', str(out)] + RUN + list(extra),
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def _weights(path):
    return read_checkpoint(str(path))['state_dict']


def _assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], atol=atol, rtol=0), k
        else:
            assert torch.equal(a[k], b[k]), k


def test_the_sampler_gives_the_same_global_batches_for_any_world_size():
    data = list(range(22))

    def batches(world, epoch, start=0):
        per_rank = []
        for r in range(world):
            s = ShardSampler(data, Dist(r, world, r, torch.device('cpu'), None), 4, seed=3)
            s.set_position(epoch, start)
            idx = list(s)
            per_rank.append([idx[i:i + 4 // world] for i in range(0, len(idx), 4 // world)])
        return [sorted(sum((p[t] for p in per_rank), [])) for t in range(len(per_rank[0]))]

    one = batches(1, 0)
    assert len(one) == 5 and len({i for b in one for i in b}) == 20      # 22 // 4 batches
    assert batches(2, 0) == batches(4, 0) == one
    assert batches(2, 0, start=3) == one[3:]                             # resume mid-epoch
    assert batches(1, 1) != one                                          # a new permutation
    with pytest.raises(ValueError, match='does not split over 3 processes'):
        ShardSampler(data, Dist(0, 3, 0, torch.device('cpu'), None), 4, seed=0)
    assert without_option(['--a', '1', '--nproc', '2', '--nproc=3', 'x'], '--nproc') == \
        ['--a', '1', 'x']


def test_two_gloo_processes_train_exactly_like_one_and_resume_in_one(tmp_path):
    _train(tmp_path / 'one', '--steps', '4', '--val-every', '2')
    _train(tmp_path / 'two', '--steps', '4', '--val-every', '2', '--nproc', '2')
    one = _weights(tmp_path / 'one' / 'model.pt')
    _assert_same(one, _weights(tmp_path / 'two' / 'model.pt'))
    assert read_checkpoint(str(tmp_path / 'two' / 'last.pt'))['world_size'] == 2
    # two processes stop half-way; one process resumes and finishes: the same weights again
    _train(tmp_path / 'mixed', '--steps', '4', '--val-every', '2', '--nproc', '2',
           '--stop-after', '2')
    res = _train(tmp_path / 'mixed', '--steps', '4', '--val-every', '2', '--resume')
    assert 'resumed from' in res.stdout and 'at step 2 (1 process)' in res.stdout
    _assert_same(one, _weights(tmp_path / 'mixed' / 'model.pt'))
    # only rank 0 wrote the log: one header, one row per logged step
    with open(tmp_path / 'two' / 'train_log.csv') as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == 'step' and [r[0] for r in rows[1:]] == ['2', '4']


def test_bf16_autocast_trains_on_the_cpu_and_the_loss_falls(tmp_path):
    _train(tmp_path / 'bf16', '--steps', '40', '--val-every', '40', '--amp', 'bf16',
           '--lr', '3e-3', '--channels-last', '--bn', 'batch')
    with open(tmp_path / 'bf16' / 'train_log.csv') as fh:
        losses = [float(r['loss']) for r in csv.DictReader(fh)]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses


def test_sync_bn_on_a_cpu_is_refused_with_the_reason(tmp_path):
    res = subprocess.run([BIN, 'train', '--out', str(tmp_path / 'x'), '--steps', '1'] +
                         RUN[:-4] + ['--bn', 'sync', '--device', 'cpu'],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert '--bn sync needs CUDA (torch runs SyncBatchNorm on GPUs only)' in res.stderr


def test_random_scale_crops_keep_size_and_pad_with_ignore():
    torch.manual_seed(0)
    image = np.full((64, 128, 3), 200, np.uint8)
    mask = np.zeros((64, 128), np.uint8)
    aug = RandomScaleCrop((64, 128), (0.5, 0.5))          # always half size: padded
    img, m = aug(image, mask)
    assert img.shape == (64, 128, 3) and m.shape == (64, 128)
    assert (m == 255).sum() == 64 * 128 - 32 * 64 and (img[m == 255] == 0).all()
    big = RandomScaleCrop((64, 128), (2.0, 2.0))
    img, m = big(image, mask)
    assert img.shape == (64, 128, 3) and (m == 0).all()


def test_the_cityscapes_recipe_trains_on_random_scale_crops_of_full_frames(tmp_path):
    root = tmp_path / 'cityscapes'
    write_cityscapes(root, 'train', 'aachen', '000001', 19, h=256, w=512)
    write_cityscapes(root, 'train', 'bonn', '000002', 19, h=256, w=512)
    write_cityscapes(root, 'val', 'lindau', '000003', 19, h=256, w=512)
    res = subprocess.run([BIN, 'train', '--data', 'cityscapes:%s' % root, '--out',
                          str(tmp_path / 'cs'), '--height', '128', '--width', '256',
                          '--random-scale', '0.5,2.0', '--val-size', 'full', '--batch-size',
                          '2', '--val-clips', '1', '--steps', '2', '--val-every', '2',
                          '--unroll', '2', '--workers', '2', '--threads', '1'],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    card = read_checkpoint(str(tmp_path / 'cs' / 'model.pt'))['card']
    assert card['heads']['segmentation']['num_classes'] == 19
    assert 0 <= card['metrics']['val_single_frame']['miou'] <= 1


def test_python_m_streamdeq_ros_train_is_the_torchrun_entry_point():
    res = subprocess.run([sys.executable, '-m', 'streamdeq_ros.tools.train', '--help'],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and '--nproc' in res.stdout and '--amp' in res.stdout
    assert os.path.basename(BIN) == 'streamdeq'


def test_eval_sharded_over_two_processes_gives_the_scores_of_one(tmp_path):
    from streamdeq_ros.models import bundled_checkpoint
    model = 'SUR=%s' % bundled_checkpoint('multi_tiny_sur')
    results = {}
    for nproc in (1, 2):
        out = tmp_path / str(nproc)
        res = subprocess.run([BIN, 'eval', '--model', model, '--clips', '4', '--iters', '1',
                              '2', '--offsets', '0,3', '--fps-frames', '2', '--fps-repeats',
                              '1', '--batch-size', '2', '--threads', '1', '--nproc',
                              str(nproc), '--out', str(out)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        with open(out / 'results.json') as fh:
            results[nproc] = json.load(fh)['models']['SUR']
    for metric in ('miou', 'map50', 'pckh', 'pckh_det'):
        one, two = results[1]['metrics'][metric], results[2]['metrics'][metric]
        for m in one['curves']:
            assert one['curves'][m] == pytest.approx(two['curves'][m], abs=1e-6), metric
        assert results[1]['baseline'][metric] == pytest.approx(results[2]['baseline'][metric],
                                                               abs=1e-6)


def test_bench_train_reports_rates_and_memory_per_process_count(tmp_path):
    out = tmp_path / 'train.json'
    res = subprocess.run([BIN, 'bench', 'train', '--nprocs', '1,2', '--height', '32', '--width',
                          '64', '--batch-size', '2', '--steps', '1', '--warmup', '1',
                          '--repeats', '1', '--unroll', '2', '--out', str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out) as fh:
        rows = json.load(fh)['nprocs']
    assert set(rows) == {'1', '2'} and rows['1']['speedup'] == 1.0
    assert all(r['images_per_s'] > 0 for r in rows.values())
    assert len(rows['2']['peak_mb_per_process']) == 2
    assert all(m > 100 for r in rows.values() for m in r['peak_mb_per_process'])
    assert '| 2 |' in res.stdout
