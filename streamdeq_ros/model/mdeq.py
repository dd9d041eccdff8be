"""Multiscale deep equilibrium model (MDEQ): configs, injection stem and the block f(z; u).

The architecture follows the MDEQ paper (Bai, Koltun, Kolter 2020) and the configuration
semantics of its official code, so an official checkpoint loads through one name map
(:mod:`streamdeq_ros.model.official`). Module and parameter names match the official ones:

``downsample``  the stem: two 3x3 convs (stride 2 for the first ``downsample_times`` of them),
                each followed by BatchNorm and ReLU.
``stage0``      1x1 conv + BatchNorm + ReLU; its output is the injection u into branch 0
                (the other branches get no injection, as in the official code). Absent, as
                officially, with ``downsample_times`` 0 and at most two branches: u is then
                the stem's output.
``fullstage``   the equilibrium block f(z; u): per branch one residual block (hidden width
                ``expansion`` x channels, GroupNorm, optional weight norm and variational
                dropout, injection added inside the block), then multiscale fusion
                (strided 3x3 convs down, 1x1 conv + nearest upsample up, summed) and a
                post-fusion ReLU -> 1x1 conv -> GroupNorm per branch (a single branch
                returns its block's output, as officially).

Weight normalisation uses ``torch.nn.utils.parametrizations.weight_norm``; the official
``weight_g`` / ``weight_v`` names map to ``parametrizations.weight.original0`` / ``original1``.
"""
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


@dataclass(frozen=True)
class MDEQConfig:
    """Hyper-parameters of an MDEQ backbone (official YAML key in brackets)."""

    num_channels: tuple = (32, 64, 128, 256)   # FULL_STAGE.NUM_CHANNELS
    num_blocks: tuple = (1, 1, 1, 1)           # FULL_STAGE.NUM_BLOCKS
    expansion: int = 5                         # EXPANSION_FACTOR
    num_groups: int = 8                        # NUM_GROUPS
    wnorm: bool = True                         # WNORM
    dropout: float = 0.05                      # DROPOUT
    downsample_times: int = 2                  # DOWNSAMPLE_TIMES
    f_thres: int = 27                          # F_THRES (Broyden budget for single frames)
    num_layers: int = 3                        # NUM_LAYERS (unrolled pre-training depth)
    bn_momentum: float = 0.01                  # BN momentum of the segmentation model
    b_thres: int = 30                          # B_THRES (backward solver budget, IL)
    name: str = field(default='custom', compare=False)

    def __post_init__(self):
        """Check that the numbers describe a buildable network."""
        if len(self.num_channels) < 1:
            raise ValueError('MDEQConfig: num_channels must name at least one branch')
        if len(self.num_blocks) != len(self.num_channels):
            raise ValueError('MDEQConfig: num_blocks has %d entries but num_channels has %d'
                             % (len(self.num_blocks), len(self.num_channels)))
        for c in self.num_channels:
            if c % self.num_groups:
                raise ValueError('MDEQConfig: %d channels are not divisible by num_groups=%d'
                                 % (c, self.num_groups))
        if not 0 <= self.downsample_times <= 2:
            raise ValueError('MDEQConfig: downsample_times must be 0, 1 or 2')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError('MDEQConfig: dropout must be in [0, 1)')

    @property
    def num_branches(self) -> int:
        """Number of resolutions (branches)."""
        return len(self.num_channels)

    @property
    def has_stage0(self) -> bool:
        """Whether the injection has its own 1x1 layer (``stage0``).

        The official code leaves it out when DOWNSAMPLE_TIMES is 0 and there are at most two
        branches (its CIFAR models): the injection is then the stem's output itself.
        """
        return not (self.downsample_times == 0 and self.num_branches <= 2)

    @property
    def stride(self) -> int:
        """Input pixels per pixel of the lowest-resolution branch."""
        return 2 ** (self.downsample_times + self.num_branches - 1)

    def to_dict(self) -> dict:
        """Plain-data form (for model cards and checkpoints)."""
        d = asdict(self)
        d['num_channels'] = list(self.num_channels)
        d['num_blocks'] = list(self.num_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> 'MDEQConfig':
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError('MDEQConfig: unknown keys %s' % sorted(unknown))
        d = dict(d)
        for key in ('num_channels', 'num_blocks'):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def from_official(cls, cfg: dict, name: str = 'official') -> 'MDEQConfig':
        """Build from an official MDEQ experiment YAML (already parsed to a dict).

        Configurations the official code builds differently than this package are refused
        with the reason: another block or fusion, more than one module, a missing key.
        """
        try:
            model = cfg['MODEL']
            stage = model['EXTRA']['FULL_STAGE']
            block, fuse = stage.get('BLOCK', 'BASIC'), stage.get('FUSE_METHOD', 'SUM')
            if block != 'BASIC' or fuse != 'SUM':
                raise ValueError('MDEQConfig: the official configuration uses BLOCK=%s and '
                                 'FUSE_METHOD=%s; only BASIC with SUM exists here'
                                 % (block, fuse))
            if int(stage.get('NUM_MODULES', 1)) != 1:
                raise ValueError('MDEQConfig: NUM_MODULES=%s; MDEQ has exactly one module'
                                 % stage['NUM_MODULES'])
            if stage['NUM_BRANCHES'] != len(stage['NUM_CHANNELS']):
                raise ValueError('MDEQConfig: NUM_BRANCHES=%d does not match the %d entries '
                                 'of NUM_CHANNELS' % (stage['NUM_BRANCHES'],
                                                      len(stage['NUM_CHANNELS'])))
            return cls(num_channels=tuple(stage['NUM_CHANNELS']),
                       num_blocks=tuple(stage['NUM_BLOCKS']),
                       expansion=int(model['EXPANSION_FACTOR']),
                       num_groups=int(model['NUM_GROUPS']),
                       wnorm=bool(model['WNORM']),
                       dropout=float(model['DROPOUT']),
                       downsample_times=int(model['DOWNSAMPLE_TIMES']),
                       f_thres=int(model['F_THRES']),
                       b_thres=int(model.get('B_THRES', model['F_THRES'])),
                       num_layers=int(model.get('NUM_LAYERS', 4)),
                       name=name)
        except KeyError as exc:
            raise ValueError('MDEQConfig: the official configuration has no %s' % exc) from None


CONFIGS = {
    # The official Cityscapes segmentation MDEQ-Small (seg_mdeq_SMALL.yaml as of the released
    # pretrained models: expansion 5, dropout 0.05, F_THRES 27, B_THRES 30, 3 layers).
    'small': MDEQConfig(name='small'),
    # seg_mdeq_LARGE.yaml and seg_mdeq_XL.yaml of the same release
    'large': MDEQConfig(num_channels=(80, 160, 320, 640), expansion=5, dropout=0.03,
                        f_thres=26, b_thres=26, num_layers=3, name='large'),
    'xl': MDEQConfig(num_channels=(88, 176, 352, 704), expansion=6, dropout=0.04,
                     f_thres=26, b_thres=26, num_layers=3, name='xl'),
    # Sized for CPU training and tests on two cores.
    # (f_thres 26 and num_layers 4: the values its bundled models were trained with)
    'tiny': MDEQConfig(num_channels=(8, 16, 32, 64), expansion=2, num_groups=4,
                       dropout=0.0, bn_momentum=0.1, f_thres=26, num_layers=4, name='tiny'),
}


def get_config(name: str) -> MDEQConfig:
    """Return a named config (``tiny``, ``small``, ``large`` or ``xl``)."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError('unknown MDEQ config %r (known: %s)'
                         % (name, ', '.join(sorted(CONFIGS)))) from None


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class VariationalDropout2d(nn.Module):
    """Dropout whose channel mask is drawn once per solve and reused at every iteration."""

    def __init__(self, p: float = 0.0):
        """Create with drop probability ``p``."""
        super().__init__()
        self.p = p
        self.mask: Optional[torch.Tensor] = None

    def reset_mask(self, like: torch.Tensor):
        """Draw a new (N, C, 1, 1) mask for tensors shaped like ``like``."""
        if self.p > 0:
            keep = torch.empty_like(like[:, :, :1, :1]).bernoulli_(1.0 - self.p)
            self.mask = keep / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the current mask in training mode; identity otherwise."""
        if not self.training or self.p == 0:
            return x
        if self.mask is None or self.mask.shape[:2] != x.shape[:2]:
            self.reset_mask(x)
        return x * self.mask


class BasicBlock(nn.Module):
    """Residual block of one branch: conv-GN-ReLU-conv(+drop)(+u)-GN, +x, ReLU, GN."""

    def __init__(self, channels: int, cfg: MDEQConfig):
        """Build for ``channels`` channels with ``cfg``'s expansion, groups and dropout."""
        super().__init__()
        hidden = cfg.expansion * channels
        self.conv1 = conv3x3(channels, hidden)
        self.gn1 = nn.GroupNorm(cfg.num_groups, hidden)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(hidden, channels)
        self.gn2 = nn.GroupNorm(cfg.num_groups, channels)
        self.gn3 = nn.GroupNorm(cfg.num_groups, channels)
        self.relu3 = nn.ReLU()
        self.drop = VariationalDropout2d(cfg.dropout)
        if cfg.wnorm:
            weight_norm(self.conv1, name='weight', dim=0)
            weight_norm(self.conv2, name='weight', dim=0)

    def forward(self, x: torch.Tensor, injection: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Return the block output for state ``x`` and optional injection."""
        out = self.relu(self.gn1(self.conv1(x)))
        out = self.drop(self.conv2(out))
        if injection is not None:
            out = out + injection
        out = self.gn2(out) + x
        return self.gn3(self.relu3(out))


class BranchNet(nn.Module):
    """The residual blocks of one resolution; the injection enters the first block."""

    def __init__(self, blocks: Sequence[nn.Module]):
        """Wrap ``blocks`` (named ``blocks`` as in the official code)."""
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x, injection=None):
        """Run the blocks in order."""
        y = self.blocks[0](x, injection)
        for block in self.blocks[1:]:
            y = block(y)
        return y


class DownsampleModule(nn.Module):
    """Branch j -> coarser branch i: (i - j) stride-2 3x3 convs with GroupNorm (ReLU between)."""

    def __init__(self, channels: Sequence[int], in_res: int, out_res: int, groups: int):
        """Build the chain from resolution ``in_res`` to ``out_res`` (> in_res)."""
        super().__init__()
        steps = out_res - in_res
        layers = []
        for k in range(steps):
            last = k == steps - 1
            cout = channels[out_res] if last else channels[in_res]
            parts = [('conv', nn.Conv2d(channels[in_res], cout, 3, stride=2, padding=1,
                                        bias=False)),
                     ('gnorm', nn.GroupNorm(groups, cout))]
            if not last:
                parts.append(('relu', nn.ReLU()))
            layers.append(nn.Sequential(OrderedDict(parts)))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        """Downsample ``x``."""
        return self.net(x)


class UpsampleModule(nn.Module):
    """Branch j -> finer branch i: 1x1 conv, GroupNorm, nearest upsampling by 2**(j - i)."""

    def __init__(self, channels: Sequence[int], in_res: int, out_res: int, groups: int):
        """Build the step from resolution ``in_res`` to ``out_res`` (< in_res)."""
        super().__init__()
        self.net = nn.Sequential(OrderedDict([
            ('conv', nn.Conv2d(channels[in_res], channels[out_res], 1, bias=False)),
            ('gnorm', nn.GroupNorm(groups, channels[out_res])),
            ('upsample', nn.Upsample(scale_factor=2 ** (in_res - out_res), mode='nearest')),
        ]))

    def forward(self, x):
        """Upsample ``x``."""
        return self.net(x)


class MDEQModule(nn.Module):
    """The equilibrium block f(z; u) over all branches."""

    def __init__(self, cfg: MDEQConfig):
        """Build branches, fusion and post-fusion layers for ``cfg``."""
        super().__init__()
        ch = cfg.num_channels
        n = cfg.num_branches
        self.num_branches = n
        self.branches = nn.ModuleList(
            BranchNet([BasicBlock(ch[i], cfg) for _ in range(cfg.num_blocks[i])])
            for i in range(n))
        if n > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(
                    None if i == j else
                    (UpsampleModule(ch, j, i, cfg.num_groups) if j > i
                     else DownsampleModule(ch, j, i, cfg.num_groups))
                    for j in range(n))
                for i in range(n))
        else:
            self.fuse_layers = None
        self.post_fuse_layers = nn.ModuleList(
            nn.Sequential(OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', nn.Conv2d(ch[i], ch[i], 1, bias=False)),
                ('gnorm', nn.GroupNorm(max(cfg.num_groups // 2, 1), ch[i])),
            ])) for i in range(n))
        if cfg.wnorm:
            for layer in self.post_fuse_layers:
                weight_norm(layer.conv, name='weight', dim=0)

    def reset_dropout(self, z: Sequence[torch.Tensor]):
        """Draw new variational-dropout masks (once per solve, in training)."""
        for branch, zi in zip(self.branches, z):
            for block in branch.blocks:
                block.drop.reset_mask(zi)

    def forward(self, z: Sequence[torch.Tensor],
                injection: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        """Return f(z; u) as a list of per-branch tensors."""
        blocks = [self.branches[i](z[i], injection[i]) for i in range(self.num_branches)]
        if self.fuse_layers is None:
            # one branch: the official code returns the block's output, without the post-fusion
            # layers (which it still builds, so their weights are in its checkpoints)
            return blocks
        out = []
        for i in range(self.num_branches):
            y = blocks[i]
            for j in range(self.num_branches):
                if j != i:
                    y = y + self.fuse_layers[i][j](blocks[j])
            out.append(self.post_fuse_layers[i](y))
        return out


class MDEQBackbone(nn.Module):
    """MDEQ backbone: ``inject`` once per frame, then iterate ``f`` (see ``solvers``)."""

    def __init__(self, cfg: MDEQConfig):
        """Build the stem, injection and equilibrium block for ``cfg``."""
        super().__init__()
        self.cfg = cfg
        c0 = cfg.num_channels[0]
        mom = cfg.bn_momentum
        self.downsample = nn.Sequential(
            conv3x3(3, c0, stride=2 if cfg.downsample_times >= 1 else 1),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU(),
            conv3x3(c0, c0, stride=2 if cfg.downsample_times >= 2 else 1),
            nn.BatchNorm2d(c0, momentum=mom),
            nn.ReLU())
        self.stage0 = nn.Sequential(nn.Conv2d(c0, c0, 1, bias=False),
                                    nn.BatchNorm2d(c0, momentum=mom),
                                    nn.ReLU()) if cfg.has_stage0 else None
        self.fullstage = MDEQModule(cfg)
        self.init_weights()

    def init_weights(self, std: float = 0.01):
        """Initialise as the official code: conv weights N(0, std), norms to identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if parametrize.is_parametrized(m, 'weight'):
                    with torch.no_grad():
                        v = torch.randn_like(m.parametrizations.weight.original1) * std
                        m.parametrizations.weight.original1.copy_(v)
                        norm = v.flatten(1).norm(dim=1).view_as(
                            m.parametrizations.weight.original0)
                        m.parametrizations.weight.original0.copy_(norm)
                else:
                    nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, std)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor):
        """Raise ValueError unless ``x`` is (N, 3, H, W) with H, W multiples of the stride."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError('MDEQ expects a (N, 3, H, W) image tensor, got shape %s'
                             % (tuple(x.shape),))
        s = self.cfg.stride
        if x.shape[2] % s or x.shape[3] % s or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError('MDEQ input height and width must be positive multiples of %d '
                             '(config %r), got %dx%d; resize or pad the image'
                             % (s, self.cfg.name, x.shape[3], x.shape[2]))

    def inject(self, x: torch.Tensor) -> List[Optional[torch.Tensor]]:
        """Compute the injection u = (stage0(stem(x)), None, ...) once per frame."""
        self.check_input(x)
        u0 = self.downsample(x)
        if self.stage0 is not None:
            u0 = self.stage0(u0)
        return [u0] + [None] * (self.cfg.num_branches - 1)

    def state_shapes(self, u: Sequence[Optional[torch.Tensor]]) -> List[tuple]:
        """Per-branch state shapes for injection ``u``."""
        n, _, h, w = u[0].shape
        return [(n, c, h >> i, w >> i) for i, c in enumerate(self.cfg.num_channels)]

    def zeros(self, u: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        """Return the all-zero state z = 0 matching ``u`` (device and dtype of u)."""
        return [u[0].new_zeros(s) for s in self.state_shapes(u)]

    def f(self, z: Sequence[torch.Tensor], u: Sequence[Optional[torch.Tensor]]):
        """Apply the equilibrium block once to the state, with injection ``u``."""
        return self.fullstage(z, u)

    def state_matches(self, z: Optional[Sequence[torch.Tensor]], u) -> bool:
        """Return True when a stored state ``z`` can warm-start a frame with injection ``u``."""
        if z is None:
            return False
        shapes = self.state_shapes(u)
        return (len(z) == len(shapes)
                and all(tuple(t.shape) == s for t, s in zip(z, shapes))
                and all(t.device == u[0].device and t.dtype == u[0].dtype for t in z))
