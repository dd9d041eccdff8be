"""A small DEQ that is a contraction by construction, for solver and warm-start tests.

f(z; u) = tanh(W z + u) with W a 1x1 convolution whose matrix is ``rho`` times an orthogonal
matrix (every singular value equals ``rho`` < 1, so convergence is slow, like a real DEQ).
tanh is 1-Lipschitz, so f is a contraction with constant ``rho`` in the L2 norm. It has the
backbone interface StreamSession uses (inject, zeros, f, state_matches), with a
two-scale state so that the multiscale code paths are exercised.
"""
import torch
from torch import nn
import torch.nn.functional as F


class ContractiveDEQ(nn.Module):
    """Two-scale contractive DEQ (see module docstring)."""

    def __init__(self, channels=8, rho=0.9, seed=0):
        """Build with a fixed seed so tests are repeatable."""
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Conv2d(3, channels, 3, stride=2, padding=1)
        self.embed2 = nn.Conv2d(3, channels, 3, stride=4, padding=1)
        with torch.no_grad():
            for conv in (self.embed, self.embed2):
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.1)
                conv.bias.zero_()
        self.mix = nn.ParameterList()
        for _ in range(2):
            q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g))
            self.mix.append(nn.Parameter(rho * q))

    def inject(self, x):
        """Injection per scale."""
        return [self.embed(x), self.embed2(x)]

    def zeros(self, u):
        """Zero state shaped like the injection."""
        return [torch.zeros_like(t) for t in u]

    def f(self, z, u):
        """One application of f."""
        return [torch.tanh(F.conv2d(zi, w[:, :, None, None]) + ui)
                for zi, w, ui in zip(z, self.mix, u)]

    def state_matches(self, z, u):
        """Return True when ``z`` can warm-start a frame with injection ``u``."""
        return z is not None and all(a.shape == b.shape and a.device == b.device
                                     for a, b in zip(z, u))
