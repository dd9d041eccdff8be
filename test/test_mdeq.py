"""MDEQ architecture tests: shapes, configs, input checks and the official checkpoint layout."""
import pytest
import torch

from streamdeq_ros.model import get_config, MDEQBackbone, MDEQConfig, official_to_native
from streamdeq_ros.model.heads import SegmentationHead


@pytest.mark.parametrize('name', ['tiny', 'small'])
@torch.no_grad()
def test_shapes_per_branch(name):
    cfg = get_config(name)
    model = MDEQBackbone(cfg).eval()
    x = torch.rand(1, 3, 64, 128)
    u = model.inject(x)
    assert u[0].shape == (1, cfg.num_channels[0], 16, 32) and u[1:] == [None] * 3
    z = model.f(model.zeros(u), u)
    expect = [(1, c, 16 >> i, 32 >> i) for i, c in enumerate(cfg.num_channels)]
    assert [tuple(t.shape) for t in z] == expect
    assert all(torch.isfinite(t).all() for t in z)


def test_configs_round_trip_through_their_dict_form():
    for name in ('tiny', 'small'):
        cfg = get_config(name)
        assert MDEQConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_config_and_input_are_explained():
    with pytest.raises(ValueError, match='not divisible by num_groups'):
        MDEQConfig(num_channels=(6, 12), num_blocks=(1, 1), num_groups=4)
    with pytest.raises(ValueError, match='unknown MDEQ config'):
        get_config('huge')
    model = MDEQBackbone(get_config('tiny'))
    with pytest.raises(ValueError, match='multiples of 32'):
        model.inject(torch.rand(1, 3, 60, 128))
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        model.inject(torch.rand(1, 1, 64, 64))


def _official_layout(cfg, num_classes):
    """Keys and shapes of an official MDEQSegNet state dict, written from the official layout.

    Weight-normed convs store ``weight_g`` (out, 1, 1, 1) and ``weight_v``; the frozen
    ``fullstage_copy`` holds plain ``weight`` tensors; BatchNorms carry running statistics.
    """
    sd = {}
    c, e, n = cfg.num_channels, cfg.expansion, cfg.num_branches

    def bn(prefix, ch):
        sd[prefix + '.weight'] = torch.rand(ch)
        sd[prefix + '.bias'] = torch.rand(ch)
        sd[prefix + '.running_mean'] = torch.rand(ch)
        sd[prefix + '.running_var'] = torch.rand(ch) + 0.5
        sd[prefix + '.num_batches_tracked'] = torch.tensor(7)

    def gn(prefix, ch):
        sd[prefix + '.weight'] = torch.rand(ch)
        sd[prefix + '.bias'] = torch.rand(ch)

    def conv(prefix, cout, cin, k, wn):
        if wn:
            sd[prefix + '.weight_g'] = torch.rand(cout, 1, 1, 1)
            sd[prefix + '.weight_v'] = torch.randn(cout, cin, k, k)
        else:
            sd[prefix + '.weight'] = torch.randn(cout, cin, k, k)

    conv('downsample.0', c[0], 3, 3, False)
    bn('downsample.1', c[0])
    conv('downsample.3', c[0], c[0], 3, False)
    bn('downsample.4', c[0])
    conv('stage0.0', c[0], c[0], 1, False)
    bn('stage0.1', c[0])
    for stage, wn in (('fullstage', cfg.wnorm), ('fullstage_copy', False)):
        for i in range(n):
            for b in range(cfg.num_blocks[i]):
                p = '%s.branches.%d.blocks.%d.' % (stage, i, b)
                conv(p + 'conv1', e * c[i], c[i], 3, wn)
                gn(p + 'gn1', e * c[i])
                conv(p + 'conv2', c[i], e * c[i], 3, wn)
                gn(p + 'gn2', c[i])
                gn(p + 'gn3', c[i])
            for j in range(n):
                p = '%s.fuse_layers.%d.%d.net.' % (stage, i, j)
                if j > i:
                    conv(p + 'conv', c[i], c[j], 1, False)
                    gn(p + 'gnorm', c[i])
                elif j < i:
                    for k in range(i - j):
                        cout = c[i] if k == i - j - 1 else c[j]
                        conv(p + '%d.conv' % k, cout, c[j], 3, False)
                        gn(p + '%d.gnorm' % k, cout)
            conv('%s.post_fuse_layers.%d.conv' % (stage, i), c[i], c[i], 1, wn)
            gn('%s.post_fuse_layers.%d.gnorm' % (stage, i), c[i])
    total = sum(c)
    sd['last_layer.0.weight'] = torch.randn(total, total, 1, 1)
    sd['last_layer.0.bias'] = torch.randn(total)
    bn('last_layer.1', total)
    sd['last_layer.3.weight'] = torch.randn(num_classes, total, 1, 1)
    sd['last_layer.3.bias'] = torch.randn(num_classes)
    return sd


@pytest.mark.parametrize('name', ['small', 'tiny'])
def test_official_state_dict_loads_with_no_missing_or_unexpected_keys(name):
    cfg = get_config(name)
    official = _official_layout(cfg, num_classes=19)
    native, dropped = official_to_native(official)
    assert dropped == {'fullstage_copy': sum(k.startswith('fullstage_copy.') for k in official)}
    backbone = MDEQBackbone(cfg)
    head = SegmentationHead(cfg.num_channels, 19)
    back_sd = {k: v for k, v in native.items() if not k.startswith('last_layer.')}
    head_sd = {k: v for k, v in native.items() if k.startswith('last_layer.')}
    backbone.load_state_dict(back_sd, strict=True)      # raises on missing/unexpected keys
    head.load_state_dict(head_sd, strict=True)
    assert len(back_sd) == len(backbone.state_dict())
    # the weight-normed conv computes w = g * v / ||v|| exactly like the official code
    conv = backbone.fullstage.branches[0].blocks[0].conv1
    g = official['fullstage.branches.0.blocks.0.conv1.weight_g']
    v = official['fullstage.branches.0.blocks.0.conv1.weight_v']
    expect = v * (g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    if cfg.wnorm:
        assert torch.allclose(conv.weight, expect, atol=1e-6)
    bn = backbone.downsample[1]
    assert torch.equal(bn.running_var, official['downsample.1.running_var'])
