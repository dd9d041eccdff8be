"""The ``streamdeq`` entry point: subcommands, --help, and the solver benchmark's output."""
import csv
import json
import subprocess

import pytest
import torch

from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.runtime.executables import executable
from streamdeq_ros.tools.cli import main

BIN = executable('streamdeq')


@pytest.mark.parametrize('argv', [['--help'], ['bench', '--help'], ['bench', 'solver', '--help'],
                                  ['bench', 'heads', '--help'], ['demo', '--help'],
                                  ['train', '--help'], ['eval', '--help'],
                                  ['train-peer', '--help'], ['eval-cuts', '--help'],
                                  ['bench', 'deadline', '--help'],
                                  ['bench', 'cudagraph', '--help']])
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert 'usage: streamdeq' in capsys.readouterr().out


def test_bench_cudagraph_without_cuda_says_so_and_exits_2(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)   # as on this machine
    assert main(['bench', 'cudagraph']) == 2
    assert 'CUDA graphs need a CUDA device' in capsys.readouterr().out


def test_bench_deadline_summary_counts_misses_overshoot_and_single_iterations():
    from streamdeq_ros.tools.bench.deadline import summarise
    frames = [{'latency_ms': v, 'iters': m} for v, m in
              ((40.0, 4), (55.0, 3), (70.0, 1), (90.0, 2))]
    s = summarise(frames, 60.0)
    assert s['frames'] == 4 and s['over_fraction'] == 0.5 and s['over_at_one_iteration'] == 1
    assert s['mean_iters'] == 2.5 and s['latency_p50_ms'] == 62.5
    assert 25.0 < s['p95_overshoot_ms'] <= 30.0
    assert summarise([], 60.0) == {'frames': 0}


def test_demo_runs_node_and_source_and_switches_iters(tmp_path):
    out = subprocess.run([BIN, 'demo', '--frames', '24', '--fps', '12', '--iters', '3',
                          '--switch-to', '1', '--out', str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'switched iters 3 -> 1' in out.stdout
    with open(tmp_path / 'frames.csv') as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 20
    iters = [int(r['iters']) for r in rows]
    switch = iters.index(1)
    assert set(iters[:switch]) == {3} and set(iters[switch:]) == {1}
    assert all(float(r['latency_ms']) > 0 for r in rows)
    # the bundled default has all three heads: every answered frame reports its counts
    assert all(r['detections'].isdigit() and r['persons'].isdigit() for r in rows)
    assert sum(int(r['detections']) for r in rows) > 0
    assert (tmp_path / 'overlay.mp4').stat().st_size > 1000
    assert (tmp_path / 'latency_iters.png').stat().st_size > 1000


def test_bench_heads_times_every_head_of_the_bundled_model(tmp_path):
    path = tmp_path / 'heads.json'
    assert main(['bench', 'heads', '--repeats', '3', '--threads', '2', '--json',
                 str(path)]) == 0
    out = json.loads(path.read_text())
    parts = ('backbone', 'segmentation', 'fpn', 'rpn', 'box_head', 'detection', 'pose',
             'all_heads')
    assert all(out[k] > 0 for k in parts)
    assert out['cost_ratio'] == pytest.approx((out['backbone'] + out['all_heads'])
                                              / (out['backbone'] + out['segmentation']))
    with pytest.raises(SystemExit, match='three-head checkpoint'):
        main(['bench', 'heads', '--checkpoint', bundled_checkpoint('seg_tiny_sur')])


def test_unknown_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['fly'])
    assert exc.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err


def test_bench_solver_writes_the_promised_numbers(tmp_path):
    path = tmp_path / 'out.json'
    out = subprocess.run([BIN, 'bench', 'solver', '--config', 'tiny', '--height', '64',
                          '--width', '64', '--frames', '3', '--max-iters', '5', '--repeats', '2',
                          '--json', str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    for key in ('ms_per_f_eval', 'gflops_per_f_eval', 'achieved_gflops_per_s',
                'conv3x3_gflops_per_s'):
        assert data[key] > 0, key
        assert key in out.stdout
    assert 'cold_iters_to_tol' in data and 'warm_iters_to_tol' in data
    assert len(data['cold_iters_per_frame']) == 2 == len(data['warm_iters_per_frame'])
    # FLOPs of f counted by torch agree with the closed form for its convolutions
    c, e, hw = [8, 16, 32, 64], 2, [(16, 16), (8, 8), (4, 4), (2, 2)]
    block = sum(2 * 2 * (ci * e * ci * 9) * h * w for ci, (h, w) in zip(c, hw))
    post = sum(2 * ci * ci * h * w for ci, (h, w) in zip(c, hw))
    up = sum(2 * c[j] * c[i] * hw[j][0] * hw[j][1] for i in range(4) for j in range(i + 1, 4))
    down = 0
    for i in range(4):
        for j in range(i):
            for k in range(i - j):
                cout = c[i] if k == i - j - 1 else c[j]
                h, w = hw[j + k + 1]
                down += 2 * c[j] * cout * 9 * h * w
    assert data['gflops_per_f_eval'] * 1e9 == pytest.approx(block + post + up + down, rel=1e-6)


def test_bench_solver_runs_a_checkpoint_on_a_street_clip(tmp_path):
    from streamdeq_ros.model.checkpoint import save_checkpoint
    from streamdeq_ros.model.mdeq import get_config
    from streamdeq_ros.model.network import StreamDEQNet
    net = StreamDEQNet(get_config('tiny'), {'segmentation': {'num_classes': 8}}).eval()
    ckpt = str(tmp_path / 'm.pt')
    save_checkpoint(ckpt, net, {'config': get_config('tiny').to_dict(),
                                'heads': {'segmentation': {'num_classes': 8}}})
    path = tmp_path / 'out.json'
    out = subprocess.run([BIN, 'bench', 'solver', '--checkpoint', ckpt, '--height', '64',
                          '--width', '64', '--frames', '3', '--max-iters', '4', '--repeats', '2',
                          '--json', str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    assert data['weights'] == ckpt and data['sequence'] == 'generated street clip'
    assert all(0 <= data[k] <= 2 for k in ('cold_frames_reached', 'warm_frames_reached'))
    assert len(data['warm_final_residual_per_frame']) == 2


def test_bench_solver_times_f_under_onnxruntime_in_every_spinning_mode(tmp_path):
    path = tmp_path / 'out.json'
    out = subprocess.run([BIN, 'bench', 'solver', '--config', 'tiny', '--height', '64',
                          '--width', '64', '--frames', '2', '--max-iters', '3', '--repeats', '2',
                          '--threads', '1', '--onnxruntime', '--json', str(path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    data = json.loads(path.read_text())
    for mode in ('ort', 'ort_spinning', 'ort_spin_in_run'):
        assert data[mode + '_ms_per_f_eval'] > 0, mode
        assert data[mode + '_of_conv3x3'] == pytest.approx(
            data[mode + '_achieved_gflops_per_s'] / data['conv3x3_gflops_per_s'])
        assert mode + '_of_conv3x3' in out.stdout
    assert data['ort_max_abs_diff'] < 1e-4 and data['ort_threads'] == 1


def test_bench_dds_and_the_shipped_fast_dds_profile(tmp_path):
    # 640x480 rgb8 (0.9 MB) is larger than Fast DDS's default shared-memory segment: without
    # the profile best effort loses most frames (bench/dds.json); with it, SHM carries them
    path = tmp_path / 'dds.json'
    out = subprocess.run([BIN, 'bench', 'dds', '--sizes', '640x480', '--setups',
                          'profile-be,default-rel', '--seconds', '2', '--out', str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    runs = {r['setup']: r for r in json.loads(path.read_text())['runs']}
    assert set(runs) == {'profile-be', 'default-rel'}
    for r in runs.values():
        assert (r['width'], r['height'], r['sent'], r['message_bytes']) == \
            (640, 480, 60, 640 * 480 * 3)
        assert 0 <= r['received'] <= r['sent']
    assert runs['profile-be']['delivered'] >= 0.9
    assert runs['default-rel']['delivered'] >= 0.9
    assert '| 640x480 |' in out.stdout
