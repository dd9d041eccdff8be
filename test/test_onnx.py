"""The exported ONNX graphs under onnxruntime against eager torch, and the node's backend param.

20 frames stream through the same pipeline code with both networks: states and logits agree to
1e-4, masks are identical except at ties, boxes and keypoints agree; frames without persons
work. The node runs its default ``backend`` (``auto``: onnxruntime on the CPU) over DDS.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import onnx
import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String
import torch

from node_harness import spin_until
from streamdeq_ros.data.street import StreetClip
from streamdeq_ros.model.checkpoint import CheckpointError, load_net
from streamdeq_ros.model.mdeq import get_config, MDEQBackbone
from streamdeq_ros.model.network import StreamDEQNet
from streamdeq_ros.models import bundled_checkpoint
from streamdeq_ros.ros.image_conv import fill_image
from streamdeq_ros.runtime import backends, ort_backend
from streamdeq_ros.runtime.backends import choose_backend, open_net
from streamdeq_ros.runtime.executables import executable
from streamdeq_ros.runtime.onnx_export import export_graph, export_onnx, f_graph_plan
from streamdeq_ros.runtime.ort_backend import export_problem, ort_net, ort_session, OrtNet
from streamdeq_ros.runtime.pipeline import FramePipeline
from streamdeq_ros.runtime.tracking import IoUTracker

MODEL = bundled_checkpoint('multi_tiny_sur')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('onnx'))
    return out, export_onnx(MODEL, out)


def test_export_writes_one_graph_per_part_with_dynamic_axes_and_a_card(exported):
    out, info = exported
    assert sorted(os.listdir(out)) == ['card.json', 'f.onnx', 'heads_detection.onnx',
                                       'heads_segmentation.onnx', 'inject.onnx']
    card = json.load(open(os.path.join(out, 'card.json')))
    assert card['heads_outputs'] == ['seg_logits', 'boxes', 'labels', 'scores', 'keypoints']
    assert card['heads_graphs'] == {'heads_segmentation': ['seg_logits'],
                                    'heads_detection': ['boxes', 'labels', 'scores',
                                                        'keypoints']}
    seg = onnx.load(os.path.join(out, 'heads_segmentation.onnx'))
    assert seg.graph.input[0].type.tensor_type.shape.dim[0].dim_param == 'batch'
    assert card['input_size'] == [96, 192] and card['card']['variant'] == 'sur'
    f = onnx.load(os.path.join(out, 'f.onnx'))
    dims = [d.dim_param for d in f.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == 'batch' and dims[2:] == ['height', 'width']


def test_twenty_frames_agree_with_eager_torch(exported):
    out, _ = exported
    net, card = load_net(MODEL)
    eager, ort = FramePipeline(net, card), FramePipeline(OrtNet(net, out), card)
    a, b = eager.new_session('torch'), ort.new_session('ort')
    ta, tb = IoUTracker(), IoUTracker()
    clip = StreetClip(40, 150, 300)
    persons = []
    for t in range(20):
        frame = clip[t][0]
        thr = 1.01 if t == 10 else 0.5                   # frame 10: no person passes
        ra, oa = eager.process(a, frame, iters=2, partial_at=[1], tracker=ta,
                               score_threshold=thr)
        rb, ob = ort.process(b, frame, iters=2, partial_at=[1], tracker=tb,
                             score_threshold=thr)
        for x, y in zip(a.state, b.state):
            assert torch.allclose(x, y, atol=1e-4, rtol=1e-4)
        with torch.inference_mode():
            la = net.perceive(a.state, heads=['segmentation']).seg_logits
            lb = ort.net.perceive(b.state).seg_logits
            seg_only = ort.net.perceive(b.state, heads=['segmentation'])
            det_only = ort.net.perceive(b.state, heads=['detection'], score_threshold=thr)
        assert torch.allclose(la, lb, atol=1e-4, rtol=1e-4)
        # the named heads only: the same outputs, the others' graphs not run
        assert torch.equal(seg_only.seg_logits, lb) and seg_only.detections is None
        assert det_only.seg_logits is None and det_only.keypoints is None
        assert torch.equal(det_only.detections[0]['boxes'], ob_boxes(ort, b, thr))
        assert ra.final_residual == pytest.approx(rb.final_residual, rel=1e-4)
        assert (oa.mask == ob.mask).mean() > 0.999
        assert np.allclose(oa.detections.boxes, ob.detections.boxes, atol=1e-3)
        assert (oa.detections.ids == ob.detections.ids).all()
        assert oa.keypoints.shape == ob.keypoints.shape
        assert np.allclose(oa.keypoints, ob.keypoints, atol=1e-3)
        persons.append(len(oa.keypoints))
    assert persons[10] == 0 and max(persons) > 0         # with and without persons


def ob_boxes(pipeline, session, thr):
    """Return the detector's boxes for the session's state, every head read."""
    with torch.inference_mode():
        return pipeline.net.perceive(session.state, score_threshold=thr).detections[0]['boxes']


def test_the_cache_exports_once_and_a_missing_runtime_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path))
    root = os.path.join(str(tmp_path), 'onnx')
    first, _ = ort_net(MODEL)
    [entry] = os.listdir(root)
    card = os.path.join(root, entry, 'card.json')
    stamp = os.path.getmtime(card)
    again, _ = ort_net(MODEL)
    assert os.listdir(root) == [entry] and os.path.getmtime(card) == stamp
    assert again.info['checkpoint_sha256'] == first.info['checkpoint_sha256']
    # a directory of the earlier layout (one heads graph, no format) is refused by name
    old = tmp_path / 'old'
    old.mkdir()
    (old / 'card.json').write_text(json.dumps({'graphs': {'heads': 'heads.onnx'}}))
    with pytest.raises(ValueError, match='export format 1; this version reads format 3'):
        OrtNet(load_net(MODEL)[0], str(old))
    import builtins
    real = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == 'onnxruntime':
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_ort)
    with pytest.raises(ImportError, match='pip install onnxruntime onnx'):
        ort_net(MODEL)


def test_a_damaged_cache_is_exported_again_and_killed_exports_are_removed(tmp_path,
                                                                          monkeypatch):
    # the review's cases: a half-length f.onnx, a folder without card.json, a killed export
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path))
    root = os.path.join(str(tmp_path), 'onnx')
    net, _ = ort_net(MODEL)
    [entry] = os.listdir(root)
    directory = os.path.join(root, entry)
    f = os.path.join(directory, 'f.onnx')
    size = os.path.getsize(f)
    with open(f, 'r+b') as fh:
        fh.truncate(size // 2)
    assert 'f.onnx has %d bytes, card.json says %d' % (size // 2, size) in \
        export_problem(directory)
    with pytest.raises(ValueError, match='damaged or cut short'):
        OrtNet(net.torch_net, directory)                     # a directory given: refused
    again, _ = ort_net(MODEL)                                # the cache: exported again
    assert os.path.getsize(f) == size and export_problem(directory) is None
    os.remove(os.path.join(directory, 'card.json'))
    assert export_problem(directory).endswith('has no card.json')
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = os.path.join(root, entry + '.tmp%d' % dead.pid)
    os.makedirs(stale)
    ort_net(MODEL)
    assert export_problem(directory) is None and not os.path.exists(stale)
    assert os.listdir(root) == [entry]


def test_the_first_export_prints_no_known_warnings(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'streamdeq_ros.tools.cli', 'export',
                          '--checkpoint', MODEL, '--out', str(tmp_path / 'graphs')],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'Warning' not in out.stderr and out.stderr.strip().count('\n') == 0, out.stderr


def test_auto_is_onnxruntime_on_the_cpu_and_torch_on_cuda(monkeypatch):
    assert choose_backend('auto', 'cpu') == ('onnxruntime', 'auto: onnxruntime on the CPU')
    assert choose_backend('auto', 'cuda:0') == ('torch', 'auto: torch on CUDA')
    assert choose_backend('torch', 'cpu') == ('torch', '')
    assert choose_backend('onnxruntime', 'cuda') == ('onnxruntime', '')
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        choose_backend('tensorrt', 'cpu')
    monkeypatch.setattr(backends, 'onnxruntime_installed', lambda: False)
    assert choose_backend('auto', 'cpu') == ('torch',
                                             'auto: torch, onnxruntime is not installed')
    net, _, device, runtime = open_net(MODEL, 'auto', 'cpu')
    assert isinstance(net, StreamDEQNet) and device == 'cpu'
    assert runtime == 'torch; auto: torch, onnxruntime is not installed'


def test_auto_runs_torch_when_the_export_fails(tmp_path, monkeypatch):
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path))

    def broken(*args, **kwargs):
        raise RuntimeError('Unsupported: ONNX export of operator frobnicate')
    monkeypatch.setattr(ort_backend, 'export_onnx', broken)
    net, _, device, runtime = open_net(MODEL, 'auto', 'cpu')
    assert isinstance(net, StreamDEQNet) and device == 'cpu'
    assert runtime.startswith('torch; auto: torch, cannot export %s' % MODEL)
    assert 'frobnicate' in runtime
    with pytest.raises(ValueError, match='cannot export .*frobnicate'):
        open_net(MODEL, 'onnxruntime', 'cpu')
    monkeypatch.undo()
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path))

    def no_session(*args, **kwargs):
        raise RuntimeError('[ONNXRuntimeError] : 10 : INVALID_GRAPH\nline two\nline three')
    monkeypatch.setattr(ort_backend, 'ort_session', no_session)
    net, _, _, runtime = open_net(MODEL, 'auto', 'cpu')     # a session that fails: torch too
    assert isinstance(net, StreamDEQNet)
    assert runtime == 'torch; auto: torch, [ONNXRuntimeError] : 10 : INVALID_GRAPH'
    with pytest.raises(RuntimeError, match='INVALID_GRAPH'):
        open_net(MODEL, 'onnxruntime', 'cpu')
    monkeypatch.undo()
    import builtins
    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == 'onnxruntime':
            raise ImportError('libonnxruntime.so: cannot open shared object file')
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', broken)   # installed, but it does not import
    net, _, _, runtime = open_net(MODEL, 'auto', 'cpu')
    assert isinstance(net, StreamDEQNet) and 'cannot open shared object file' in runtime
    monkeypatch.undo()
    with pytest.raises(CheckpointError):                   # a bad checkpoint stops either way
        open_net(str(tmp_path / 'missing.pt'), 'auto', 'cpu')
    monkeypatch.setenv('STREAMDEQ_CACHE', str(tmp_path))
    net, _, device, runtime = open_net(MODEL, 'auto', 'cpu')
    assert isinstance(net, OrtNet) and device == 'cpu'
    assert runtime == 'onnxruntime (CPUExecutionProvider); auto: onnxruntime on the CPU'


def test_the_node_runs_the_onnxruntime_backend_by_default(tmp_path):
    # no backend parameter: 'auto', which on this CPU is onnxruntime
    env = dict(os.environ, STREAMDEQ_CACHE=str(tmp_path))
    proc = subprocess.Popen(
        [executable('streamdeq_node'), '--ros-args', '-p', 'cameras:=[/onnx_test/cam]',
         '-p', 'checkpoint:=%s' % MODEL,
         '-p', 'input_qos:=reliable'], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    rclpy.init()
    node = Node('onnx_test_client')
    status = []
    node.create_subscription(String, '/streamdeq/status',
                             lambda m: status.append(json.loads(m.data)), 10)
    pub = node.create_publisher(Image, '/onnx_test/cam',
                                QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    try:
        clip = StreetClip(41, 96, 192)
        for t in range(3):
            msg = fill_image(Image(), clip[t][0], 'rgb8')
            msg.header.stamp.sec = 10 + t
            assert spin_until(node, lambda: pub.get_subscription_count() > 0, 60)
            pub.publish(msg)
            assert spin_until(node, lambda: any(s['stamp'][0] == 10 + t for s in status), 60)
        assert status[-1]['iters'] == 2 and status[-1]['warm']
        assert status[-1]['device'] == 'cpu'
        assert status[-1]['backend'] == ('onnxruntime (CPUExecutionProvider); auto: '
                                         'onnxruntime on the CPU')
        assert os.listdir(os.path.join(str(tmp_path), 'onnx'))      # exported at configure
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and 'onnxruntime (CPUExecutionProvider)' in err


def test_onnxruntime_sessions_wait_as_asked_and_refuse_other_modes(tmp_path):
    model = MDEQBackbone(get_config('tiny')).eval()
    with torch.inference_mode():
        u = model.inject(torch.zeros(1, 3, 32, 32))
        z = model.zeros(u)
    path = str(tmp_path / 'f.onnx')
    module, args, inputs, outputs, axes = f_graph_plan(model, z, u[0])
    export_graph(module, args, path, inputs, outputs, axes)
    for mode, allow, stop in (('off', '0', False), ('on', '1', False), ('in-run', '1', True)):
        opts = ort_session(path, 1, spinning=mode).get_session_options()
        assert opts.get_session_config_entry('session.intra_op.allow_spinning') == allow, mode
        if stop:
            assert opts.get_session_config_entry('session.force_spinning_stop') == '1'
        else:                                    # onnxruntime's default: spinning goes on
            with pytest.raises(RuntimeError, match='force_spinning_stop'):
                opts.get_session_config_entry('session.force_spinning_stop')
    with pytest.raises(ValueError, match="spinning must be one of off, on, in-run, not 'yes'"):
        ort_session(path, 1, spinning='yes')
