"""f-AnoGAN networks after the official code (tSchlegl/f-AnoGAN, ``wgangp_64x64``).

Generator: Linear -> ``8w x 4 x 4`` -> up-sampling residual blocks (BatchNorm) -> BN, ReLU,
3x3 conv -> tanh. Critic: 3x3 conv -> down-sampling residual blocks (layer norm over C, H, W with
per-channel affine, as the official ``LayerNorm``) -> flatten (``f``, 8192 features at width 64)
-> linear. Encoder: the critic's stack with BatchNorm -> linear -> tanh. At 64x64 there are four
resampling blocks; other power-of-two sizes use ``log2(P) - 2`` blocks.

For CPU budgets :func:`build_networks` also offers DCGAN-size networks (``arch: dcgan``): the
DCGAN decoder as generator, the DCGAN discriminator with layer norm as critic, a DCGAN encoder
with tanh as encoder: the same method at a fraction of the cost per patch.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from octanomaly.models.base import dcgan_init
from octanomaly.models.dcgan import DCGANDecoder, DCGANEncoder

Norm = Literal["batch", "layer"]


def _norm(kind: Norm, ch: int) -> nn.Module:
    return nn.BatchNorm2d(ch) if kind == "batch" else nn.GroupNorm(1, ch)


def _n_blocks(patch_size: int) -> int:
    n = int(math.log2(patch_size)) - 2
    if 2 ** (n + 2) != patch_size or n < 2:
        raise ValueError(f"patch size must be a power of two >= 16, got {patch_size}")
    return n


def _multipliers(n: int) -> list[int]:
    """Channel multipliers of the ``n`` generator blocks' outputs: ``[8, 4, 2, 1]`` at 64x64."""
    return ([8] * max(0, n - 3) + [4, 2, 1])[-n:]


class ResidualBlock(nn.Module):
    """Official residual block: norm, ReLU, conv, norm, ReLU, conv (+ resampled 1x1 shortcut)."""

    def __init__(self, c_in: int, c_out: int, resample: Literal["up", "down"], norm: Norm):
        super().__init__()
        self.resample = resample
        self.norm1 = _norm(norm, c_in)
        if resample == "up":
            self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
            self.norm2 = _norm(norm, c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        else:
            self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
            self.norm2 = _norm(norm, c_in)
            self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(x))
        if self.resample == "up":
            short = self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = self.conv2(F.relu(self.norm2(h)))
        else:
            short = self.shortcut(F.avg_pool2d(x, 2))
            h = self.conv1(h)
            h = F.avg_pool2d(self.conv2(F.relu(self.norm2(h))), 2)
        return short + h


class Generator(nn.Module):
    """``z (B, nz) -> (B, 1, P, P)`` in [-1, 1]."""

    def __init__(self, patch_size: int = 64, nz: int = 128, width: int = 64):
        super().__init__()
        mults = _multipliers(_n_blocks(patch_size))
        self.c0 = 8 * width
        self.fc = nn.Linear(nz, 4 * 4 * self.c0)
        chans = [self.c0] + [m * width for m in mults]
        self.blocks = nn.Sequential(
            *[
                ResidualBlock(a, b, "up", "batch")
                for a, b in zip(chans[:-1], chans[1:], strict=True)
            ]
        )
        self.out_norm = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], 1, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)
        h = self.blocks(h)
        return self.out_conv(F.relu(self.out_norm(h))).tanh()


class _DownStack(nn.Module):
    """3x3 conv then down-sampling residual blocks; output flattened (``8w * 4 * 4`` features)."""

    def __init__(self, patch_size: int, width: int, norm: Norm):
        super().__init__()
        n = _n_blocks(patch_size)
        mults = list(reversed(_multipliers(n)))[1:] + [8]
        chans = [width] + [m * width for m in mults]
        self.conv_in = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.Sequential(
            *[ResidualBlock(a, b, "down", norm) for a, b in zip(chans[:-1], chans[1:], strict=True)]
        )
        self.n_features = chans[-1] * 4 * 4

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.conv_in(x)).flatten(1)


class Critic(nn.Module):
    """WGAN critic ``(B, 1, P, P) -> (B,)``; :meth:`features` gives ``f`` for the izi_f loss."""

    def __init__(self, patch_size: int = 64, width: int = 64):
        super().__init__()
        self.stack = _DownStack(patch_size, width, "layer")
        self.fc = nn.Linear(self.stack.n_features, 1)

    def features(self, x: Tensor) -> Tensor:
        """The flattened last feature map ``f(x)``, ``(B, 8w * 16)``."""
        return self.stack(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.stack(x)).squeeze(1)


class Encoder(nn.Module):
    """``(B, 1, P, P) -> z (B, nz)`` in [-1, 1]: the critic's stack with BatchNorm, linear, tanh."""

    def __init__(self, patch_size: int = 64, nz: int = 128, width: int = 64):
        super().__init__()
        self.stack = _DownStack(patch_size, width, "batch")
        self.fc = nn.Linear(self.stack.n_features, nz)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.stack(x)).tanh()


# ------------------------------------------------------------------ DCGAN-size networks (CPU)
class DCGANCritic(nn.Module):
    """A DCGAN discriminator with layer norm instead of BatchNorm (WGAN-GP), ``(B,)`` scores."""

    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.net = DCGANEncoder(patch_size, 1, width, norm="layer")

    def features(self, x: Tensor) -> Tensor:
        """The flattened last feature map ``f(x)``, ``(B, 8w * 16)`` at 64x64."""
        return self.net.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


class DCGANLatentEncoder(nn.Module):
    """``(B, 1, P, P) -> z (B, nz)`` in [-1, 1]: a DCGAN encoder (BatchNorm), tanh."""

    def __init__(self, patch_size: int, nz: int, width: int):
        super().__init__()
        self.net = DCGANEncoder(patch_size, nz, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1).tanh()


Arch = Literal["residual", "dcgan"]


def build_networks(arch: Arch, patch_size: int, nz: int, width: int) -> tuple[nn.Module, ...]:
    """Generator, critic and encoder: the official residual networks, or DCGAN-size ones."""
    if arch == "residual":
        return (
            Generator(patch_size, nz, width),
            Critic(patch_size, width),
            Encoder(patch_size, nz, width),
        )
    nets = (
        DCGANDecoder(patch_size, nz, width),
        DCGANCritic(patch_size, width),
        DCGANLatentEncoder(patch_size, nz, width),
    )
    for net in nets:
        net.apply(dcgan_init)
    return nets
