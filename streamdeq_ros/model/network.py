"""A StreamDEQ network: one MDEQ backbone and any subset of task heads reading its state."""
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from .heads.segmentation import SegmentationHead
from .mdeq import get_config, MDEQBackbone, MDEQConfig

#: ImageNet statistics, the normalisation of the official MDEQ models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StreamDEQNet(nn.Module):
    """Backbone + heads. ``readout(z)`` maps a fixed-point state to ``{head: output}``."""

    def __init__(self, cfg: MDEQConfig, heads: Mapping[str, dict],
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        """Build for ``cfg`` with heads described as ``{'segmentation': {'num_classes': C}}``."""
        super().__init__()
        self.cfg = cfg
        self.backbone = MDEQBackbone(cfg)
        self.heads = nn.ModuleDict()
        for name, spec in heads.items():
            if name == 'segmentation':
                self.heads[name] = SegmentationHead(cfg.num_channels, int(spec['num_classes']),
                                                    cfg.bn_momentum)
            else:
                raise ValueError('unknown head %r (known: segmentation)' % (name,))
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Turn (N, 3, H, W) RGB in [0, 1] (float) or 0..255 (uint8) into the network's input."""
        x = images.to(self.mean.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std

    def readout(self, z: List[torch.Tensor],
                heads: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """Run the heads (all, or the named ones) on the state ``z``."""
        names = self.heads.keys() if heads is None else heads
        return {name: self.heads[name](z) for name in names}


def build_net(card: Mapping) -> StreamDEQNet:
    """Build an untrained network from a model card's ``config``, ``heads`` and ``input``."""
    cfg = card.get('config')
    cfg = MDEQConfig.from_dict(cfg) if isinstance(cfg, Mapping) else get_config(cfg or 'tiny')
    inp = card.get('input', {})
    return StreamDEQNet(cfg, card.get('heads', {}), inp.get('mean', IMAGENET_MEAN),
                        inp.get('std', IMAGENET_STD))
