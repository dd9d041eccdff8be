"""Official MDEQ checkpoints load strictly in each released layout; what differs is refused.

The layouts are written from this package's own modules, renamed to the official names (the
official weight norm's ``weight_g``/``weight_v``, no ``backbone.``/``heads.`` prefixes) with
the extra entries each official layout carries.
"""
import pytest
import torch

from streamdeq_ros.model import get_config, load_official, MDEQBackbone, MDEQConfig
from streamdeq_ros.model.checkpoint import CheckpointError
from streamdeq_ros.model.network import StreamDEQNet
from streamdeq_ros.tools.training import init_from

SMALL_YAML = {'MODEL': {'NUM_LAYERS': 3, 'DROPOUT': 0.05, 'F_THRES': 27, 'B_THRES': 30,
                        'WNORM': True, 'DOWNSAMPLE_TIMES': 2, 'NUM_GROUPS': 8,
                        'EXPANSION_FACTOR': 5,
                        'EXTRA': {'FINAL_CONV_KERNEL': 1,
                                  'FULL_STAGE': {'NUM_MODULES': 1, 'NUM_BRANCHES': 4,
                                                 'BLOCK': 'BASIC', 'NUM_BLOCKS': [1, 1, 1, 1],
                                                 'NUM_CHANNELS': [32, 64, 128, 256],
                                                 'FUSE_METHOD': 'SUM'}}}}


def test_small_is_the_current_official_segmentation_config():
    cfg = get_config('small')
    assert (cfg.expansion, cfg.dropout, cfg.f_thres, cfg.b_thres, cfg.num_layers) == \
        (5, 0.05, 27, 30, 3)
    assert MDEQConfig.from_official(SMALL_YAML) == cfg


def _official_name(key: str) -> str:
    key = key.replace('parametrizations.weight.original0', 'weight_g')
    key = key.replace('parametrizations.weight.original1', 'weight_v')
    for prefix in ('backbone.', 'heads.segmentation.'):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def official_layout(net: StreamDEQNet, layout: str) -> dict:
    """Return the state dict the official code would save for ``net`` in ``layout``."""
    sd = {_official_name(k): v.clone() for k, v in net.state_dict().items()}
    fullstage = {k: v for k, v in sd.items() if k.startswith('fullstage.')}
    copy = {}
    for k, v in fullstage.items():          # the frozen copy holds plain weights
        if k.endswith('weight_v'):
            g = fullstage[k[:-1] + 'g']
            copy[k[:-len('weight_v')] + 'weight'] = v * (g / v.flatten(1).norm(dim=1).view(
                -1, 1, 1, 1))
        elif not k.endswith('weight_g'):
            copy[k] = v
    copy = {'fullstage_copy.' + k[len('fullstage.'):]: v for k, v in copy.items()}
    sd.update(copy)
    sd.update({'deq.func.' + k[len('fullstage.'):]: v for k, v in fullstage.items()})
    sd.update({'deq.func_copy.' + k[len('fullstage_copy.'):]: v for k, v in copy.items()})
    if layout == 'released':
        sd = {'model.' + k: v for k, v in sd.items()}
        sd['loss.criterion.weight'] = torch.ones(19)
    elif layout == 'imagenet':
        sd = {k: v for k, v in sd.items() if not k.startswith('last_layer.')}
        sd['incre_modules.0.0.conv1.weight'] = torch.randn(24, 32, 1, 1)
        sd['downsamp_modules.0.0.weight'] = torch.randn(192, 96, 3, 3)
        sd['final_layer.0.weight'] = torch.randn(2048, 768, 1, 1)
        sd['classifier.weight'] = torch.randn(1000, 2048)
        sd['classifier.bias'] = torch.randn(1000)
    return sd


def _net(cfg, classes=19, kernel=1):
    torch.manual_seed(1)
    net = StreamDEQNet(cfg, {'segmentation': {'num_classes': classes,
                                              'final_conv_kernel': kernel}}).eval()
    with torch.no_grad():                   # non-trivial norms and statistics
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.rand_like(t) * 0.1)
    return net


def _same_outputs(a: StreamDEQNet, b: StreamDEQNet, heads=True):
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ua, ub = a.backbone.inject(x), b.backbone.inject(x)
        assert torch.equal(ua[0], ub[0])
        za, zb = a.backbone.f(a.backbone.zeros(ua), ua), b.backbone.f(b.backbone.zeros(ub), ub)
        for s, t in zip(za, zb):
            assert torch.allclose(s, t, atol=1e-6)
        if heads:
            assert torch.allclose(a.perceive(za).seg_logits, b.perceive(zb).seg_logits,
                                  atol=1e-6)


@pytest.mark.parametrize('layout', ['bare', 'released'])
def test_segmentation_layouts_load_strictly(tmp_path, layout):
    src = _net(get_config('small'))
    path = str(tmp_path / 'seg.pth')
    torch.save(official_layout(src, layout), path)
    net, sentence = load_official(path, 'small')
    _same_outputs(src, net)
    assert net.heads['segmentation'].num_classes == 19
    assert 'kept %d tensors for the backbone and segmentation head (19 classes) of config ' \
        "'small'" % len(src.state_dict()) in sentence
    assert "dropped 196 deq.* keys (the solver wrapper's second names" in sentence
    assert 'dropped 92 fullstage_copy.* keys (the frozen copy of f' in sentence
    if layout == 'released':
        assert "stripped the training wrapper's 'model.' prefix" in sentence
        assert "dropped 1 loss.* keys (the training criterion's state)" in sentence
    assert '\n' not in sentence


def test_an_imagenet_classification_checkpoint_gives_the_backbone(tmp_path):
    src = _net(get_config('small'))
    path = str(tmp_path / 'imagenet.pth')
    torch.save({'state_dict': official_layout(src, 'imagenet')}, path)
    net, sentence = load_official(path, 'small', num_classes=8)
    _same_outputs(src, net, heads=False)
    assert net.heads['segmentation'].num_classes == 8
    for module in ('incre_modules', 'downsamp_modules', 'final_layer', 'classifier'):
        assert 'dropped %d %s.* keys (the ImageNet classification head)' % (
            2 if module == 'classifier' else 1, module) in sentence
    backbone_only, _ = load_official(path, 'small')
    assert 'segmentation' not in backbone_only.heads


def test_train_init_official_takes_the_backbone_and_a_matching_head(tmp_path):
    src = _net(get_config('small'))
    path = str(tmp_path / 'seg.pth')
    torch.save(official_layout(src, 'released'), path)
    same = StreamDEQNet(get_config('small'), {'segmentation': {'num_classes': 19}})
    assert 'initialised %d of %d tensors' % ((len(src.state_dict()),) * 2) in \
        init_from(same, 'official:' + path)
    _same_outputs(src, same.eval())
    other = StreamDEQNet(get_config('small'), {'segmentation': {'num_classes': 8}})
    note = init_from(other, 'official:' + path)
    assert "kept this network's own heads.segmentation.last_layer.3.bias, " \
        'heads.segmentation.last_layer.3.weight (another class count)' in note
    _same_outputs(src, other.eval(), heads=False)


def test_a_mismatch_names_the_first_keys(tmp_path):
    path = str(tmp_path / 'tiny.pth')
    torch.save(official_layout(_net(get_config('tiny')), 'bare'), path)
    with pytest.raises(CheckpointError, match=r"does not fit the backbone of config 'small': "
                                              r'downsample.0.weight has shape \(8, 3, 3, 3\) '
                                              r'there and \(32, 3, 3, 3\) here'):
        load_official(path, 'small')
    sd = official_layout(_net(get_config('tiny')), 'bare')
    sd['fullstage.extra.weight'] = torch.zeros(1)
    del sd['stage0.0.weight']
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match='missing stage0.0.weight; unexpected '
                                              'fullstage.extra.weight'):
        load_official(path, 'tiny')
    torch.save({'a': [1, 2]}, path)
    with pytest.raises(CheckpointError, match='is not a state dict of tensors'):
        load_official(path, 'tiny')


def test_a_3x3_final_conv_is_read_from_the_file(tmp_path):
    src = _net(get_config('tiny'), classes=5, kernel=3)
    assert src.heads['segmentation'].last_layer[3].kernel_size == (3, 3)
    path = str(tmp_path / 'k3.pth')
    torch.save(official_layout(src, 'bare'), path)
    net, _ = load_official(path, 'tiny')
    _same_outputs(src, net)
    with pytest.raises(ValueError, match='final_conv_kernel must be 1 or 3'):
        StreamDEQNet(get_config('tiny'), {'segmentation': {'num_classes': 5,
                                                           'final_conv_kernel': 5}})


def test_the_official_cifar_shapes_are_reproduced():
    # DOWNSAMPLE_TIMES 0 with at most two branches: no stage0, the injection is the stem output
    two = MDEQConfig(num_channels=(8, 16), num_blocks=(1, 1), num_groups=4, downsample_times=0)
    b = MDEQBackbone(two).eval()
    assert b.stage0 is None and not any(k.startswith('stage0') for k in b.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(b.inject(x)[0], b.downsample(x))
    three = MDEQConfig(num_channels=(8, 16, 32), num_blocks=(1, 1, 1), num_groups=4,
                       downsample_times=0)
    assert MDEQBackbone(three).stage0 is not None           # the official CIFAR TINY has it
    # one branch: f is the residual block alone (the post-fusion layers exist, unused)
    one = MDEQBackbone(MDEQConfig(num_channels=(8,), num_blocks=(1,), num_groups=4)).eval()
    assert any(k.startswith('fullstage.post_fuse_layers.0') for k in one.state_dict())
    with torch.no_grad():
        u = one.inject(torch.rand(1, 3, 32, 32))
        z = [torch.rand_like(u[0])]
        assert torch.equal(one.f(z, u)[0], one.fullstage.branches[0](z[0], u[0]))


@pytest.mark.parametrize('change, reason', [
    (lambda m: m['EXTRA']['FULL_STAGE'].update(BLOCK='BOTTLENECK'),
     'uses BLOCK=BOTTLENECK and FUSE_METHOD=SUM; only BASIC with SUM exists here'),
    (lambda m: m['EXTRA']['FULL_STAGE'].update(NUM_MODULES=2),
     'NUM_MODULES=2; MDEQ has exactly one module'),
    (lambda m: m['EXTRA']['FULL_STAGE'].update(NUM_BRANCHES=3),
     'NUM_BRANCHES=3 does not match the 4 entries of NUM_CHANNELS'),
    (lambda m: m.pop('WNORM'), "has no 'WNORM'"),
    (lambda m: m.update(DOWNSAMPLE_TIMES=3), 'downsample_times must be 0, 1 or 2'),
])
def test_configurations_that_are_not_reproduced_are_refused(change, reason):
    import copy
    cfg = copy.deepcopy(SMALL_YAML)
    change(cfg['MODEL'])
    with pytest.raises(ValueError, match=reason.replace('(', r'\(').replace(')', r'\)')):
        MDEQConfig.from_official(cfg)
