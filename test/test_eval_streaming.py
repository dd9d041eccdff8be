"""``streamdeq eval-streaming``: the streaming protocol (newest published output per frame).

The reference model (:class:`LabelRunner`) answers with each frame's own labels at a fixed
emulated cost, so the protocol's timing rules are checked exactly; the bundled model runs
through the node's pipeline with measured times (assertions on frame counts, never rates).
"""
import json
import os

import numpy as np
import pytest

from streamdeq_ros.data import street
from streamdeq_ros.model.checkpoint import load_net
from streamdeq_ros.models import resolve_checkpoint
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.tools import cli
from streamdeq_ros.tools.eval_streaming import (camera_frames, CameraFrame, evaluate_runner,
                                                LabelRunner, README_STREAMING, simulate,
                                                StreamDEQRunner)

CLASSES = len(street.CLASSES)


@pytest.fixture(scope='module')
def moving():
    """Two held-out world clips of 2 s seen by a 10 Hz camera at 96x192."""
    cache = {}
    return [camera_frames(0, i, 96, 192, 10.0, 2.0, cache) for i in range(2)]


@pytest.fixture(scope='module')
def static(moving):
    """Return a clip whose scene never changes: its first frame (and labels), 60 times."""
    return [[moving[0][0]] * 60]


@pytest.fixture(scope='module')
def tiny():
    net, card = load_net(resolve_checkpoint('multi_tiny_sur'), 'cpu')
    return net, card


def test_camera_sees_the_world_at_its_rate():
    cache = {}
    fast = camera_frames(0, 0, 96, 192, 30.0, 1.0, cache)
    slow = camera_frames(0, 0, 96, 192, 10.0, 1.0, cache)
    assert len(fast) == 30 and len(slow) == 10
    for k, frame in enumerate(slow):           # a 10 Hz camera sees every third world frame
        assert frame is fast[3 * k]
    assert not np.array_equal(fast[0].rgb, fast[1].rgb)


def test_newest_frame_policy_drops_the_waiting_ones(moving):
    # 250 ms per frame at 10 Hz: frame 0 ends at 0.25 s, when 1 and 2 wait; 2 is taken
    line = simulate(LabelRunner(ms=250.0), moving[0][:12], 10.0)
    assert [k for k, _, _ in line.processed] == [0, 2, 5, 7, 10, 11]
    assert line.dropped == 6
    assert [round(done, 6) for _, _, done in line.processed] == [0.25, 0.5, 0.75, 1.0, 1.25,
                                                                 1.5]
    # the idle process waits for the next frame: 40 ms per frame keeps up with every frame
    line = simulate(LabelRunner(ms=40.0), moving[0][:12], 10.0)
    assert [k for k, _, _ in line.processed] == list(range(12))
    assert [round(s, 6) for _, s, _ in line.processed] == [k / 10 for k in range(12)]


def test_slow_outputs_are_scored_stale(moving):
    # the reference is perfect on its own frame; streamed it is scored on older frames
    slow = evaluate_runner(LabelRunner(ms=250.0), moving, 10.0, 0.5, CLASSES)
    assert slow['instant'] == {'miou': 1.0, 'map50': 1.0, 'pckh': 1.0}
    assert slow['dropped'] > 0 and slow['staleness_frames'] > 1.5
    for metric, value in slow['stream'].items():
        assert value < 0.95, metric
    # an output at its frame's own arrival (no latency) is the one scored there
    now = evaluate_runner(LabelRunner(ms=0.0), moving, 10.0, 0.5, CLASSES)
    assert now['stream'] == now['instant'] == {'miou': 1.0, 'map50': 1.0, 'pckh': 1.0}
    assert now['staleness_frames'] == 0.0 and now['dropped'] == 0
    # one frame late (50 ms, below the period) is already stale by one frame
    late = evaluate_runner(LabelRunner(ms=50.0), moving, 10.0, 0.5, CLASSES)
    assert late['staleness_frames'] == 1.0 and late['dropped'] == 0
    assert late['stream']['miou'] < 1.0
    assert slow['stream']['miou'] < late['stream']['miou']


def test_static_scene_streaming_equals_instantaneous(static, tiny):
    net, card = tiny
    ref = evaluate_runner(LabelRunner(ms=250.0), static, 10.0, 0.5, CLASSES)
    assert ref['stream'] == ref['instant']
    # the bundled model single-frame (N = 20 from zeros each frame), measured times
    runner = StreamDEQRunner(FramePipeline(net, card), 20, single_frame=True)
    evaluate_runner(runner, [static[0][:3]], 10.0, 0.0, CLASSES)  # first calls: not measured
    r = evaluate_runner(runner, static, 10.0, 0.5, CLASSES)
    assert r['scored'] > 0
    for metric in ('miou', 'map50', 'pckh'):
        assert r['stream'][metric] == pytest.approx(r['instant'][metric], abs=1e-9), metric


def test_real_model_above_the_period_drops_frames(moving, tiny):
    net, card = tiny
    runner = StreamDEQRunner(FramePipeline(net, card), 1)
    # processing times x 20 (speed 0.05): a frame takes longer than the 100 ms period
    r = evaluate_runner(runner, moving, 10.0, 0.5, CLASSES, speed=0.05)
    assert r['dropped'] > 0 and r['processed'] < r['frames']
    assert r['staleness_frames'] > 1.0
    fast = evaluate_runner(runner, moving, 10.0, 0.5, CLASSES, speed=1e3)
    assert fast['dropped'] == 0 and fast['staleness_frames'] <= 1.0
    assert fast['stream']['miou'] > r['stream']['miou']


def test_partial_outputs_are_used_when_newest(moving, tiny):
    # reference: the partial answer at 50 ms stands until the refined one at 150 ms
    with_partial = evaluate_runner(LabelRunner(ms=150.0, partial_ms=50.0), moving, 10.0, 0.5,
                                   CLASSES)
    without = evaluate_runner(LabelRunner(ms=150.0), moving, 10.0, 0.5, CLASSES)
    assert with_partial['partial_used'] > 0 and without['partial_used'] == 0
    assert with_partial['staleness_frames'] < without['staleness_frames']
    assert with_partial['stream']['miou'] > without['stream']['miou']
    # the real model: M = 2 with the partial output after 1, times x 50: an iteration takes
    # longer than the 33 ms period, so frames arrive between partial and refined outputs
    net, card = tiny
    runner = StreamDEQRunner(FramePipeline(net, card), 2, partial_iters=1)
    frames = [camera_frames(0, 0, 96, 192, 30.0, 3.0, {})]
    r = evaluate_runner(runner, frames, 30.0, 0.0, CLASSES, speed=0.02)
    assert r['scored'] > 0 and r['partial_used'] > 0
    plain = StreamDEQRunner(FramePipeline(net, card), 2)
    assert evaluate_runner(plain, frames, 30.0, 0.0, CLASSES, speed=0.02)['partial_used'] == 0
    with pytest.raises(ValueError, match='partial_iters'):
        StreamDEQRunner(FramePipeline(net, card), 1, partial_iters=1)


def test_eval_streaming_command(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('x\n%s\nold\n%s\n' % README_STREAMING)
    out = tmp_path / 'out'
    assert cli.main(['eval-streaming', '--model', 'MT=multi_tiny_sur', '--iters', '1', '2',
                     '--single-frame-iters', '0', '--rates', '10', '30', '--clips', '1',
                     '--duration', '1', '--warmup', '0.3', '--threads', '1',
                     '--out', str(out), '--readme', str(readme)]) == 0
    results = json.loads((out / 'results.json').read_text())
    assert set(results['models']) == {'MT M=1', 'MT M=2', 'MT M=2 +partial@1'}
    run = results['models']['MT M=2']['runs']['30.0'][0]
    assert run['frames'] == 30 and set(run['stream']) == {'miou', 'map50', 'pckh'}
    for name in ('table.md', 'streaming_miou_vs_rate.png', 'streaming_pckh_vs_rate.png'):
        assert os.path.getsize(out / name) > 0
    text = readme.read_text()
    assert 'old' not in text and 'streamdeq eval-streaming --model MT=multi_tiny_sur' in text
    assert '| MT M=2 +partial@1 |' in text and 'EMULATED' not in text
    assert cli.main(['eval-streaming', '--model', 'MT=multi_tiny_sur', '--iters', '1',
                     '--single-frame-iters', '0', '--rates', '30', '--clips', '1',
                     '--duration', '0.5', '--warmup', '0', '--speed', '4', '--threads', '1',
                     '--out', str(out)]) == 0
    assert 'EMULATED' in (out / 'table.md').read_text()


@pytest.mark.parametrize('argv, message', [
    (['--rates', '0'], '--rates must be positive'),
    (['--speed', '-1'], '--speed must be positive'),
    (['--duration', '0.5', '--warmup', '1'], 'longer than --warmup'),
    (['--iters', '0'], '--iters must be >= 1'),
    (['--peer', 'nothing'], 'NAME=PATH'),
    (['--rates', '60'], '60 Hz is above the 30 frames per second'),
    (['--duration', 'inf'], '--duration must be finite'),
    (['--duration', '0.3', '--warmup', '0.25', '--rates', '10'], 'leaves no frame after'),
    (['--peer', 'MT=x.pt'], 'two models are named MT'),
    (['--iters', '1', '1'], '--iters lists an M twice'),
    (['--readme', 'MISSING'], '--readme .*MISSING cannot be read'),
    (['--readme', 'PLAIN'], '--readme .*PLAIN has no <!-- streamdeq-streaming:start -->'),
    (['--out', 'FILE/sub'], '--out .*FILE/sub cannot be made'),
])
def test_bad_arguments_are_refused(argv, message, tmp_path):
    # refused before any model is loaded or any frame is measured
    (tmp_path / 'PLAIN').write_text('no markers here\n')
    (tmp_path / 'FILE').write_text('')
    argv = [str(tmp_path / a) if a in ('MISSING', 'PLAIN', 'FILE/sub') else a for a in argv]
    with pytest.raises(SystemExit, match='^streamdeq eval-streaming: .*' + message):
        cli.main(['eval-streaming', '--model', 'MT=multi_tiny_sur', '--out',
                  str(tmp_path / 'out')] + argv)


def test_missing_checkpoint_is_one_sentence(tmp_path):
    with pytest.raises(SystemExit, match='eval-streaming: .*nope'):
        cli.main(['eval-streaming', '--model', 'X=%s' % (tmp_path / 'nope.pt'), '--out',
                  str(tmp_path)])


def test_camera_frame_holds_rgb_and_labels(moving):
    frame = moving[0][0]
    assert isinstance(frame, CameraFrame) and frame.rgb.shape == (96, 192, 3)
    assert frame.labels.mask.shape == (96, 192)
