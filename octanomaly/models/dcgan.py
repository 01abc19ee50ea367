"""DCGAN building blocks shared by AnoGAN and GANomaly: a strided-conv encoder and its mirror.

For a ``P x P`` patch the encoder halves the size with 4x4 stride-2 convolutions down to 4x4
(``log2(P) - 2`` of them; four at 64x64, widths ``w, 2w, 4w, 8w``) and ends with a 4x4 valid
convolution to ``n_out`` channels; the decoder mirrors it with transposed convolutions and tanh.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


def _n_levels(patch_size: int) -> int:
    n = int(math.log2(patch_size)) - 2
    if 2 ** (n + 2) != patch_size or n < 2:
        raise ValueError(f"patch size must be a power of two >= 16, got {patch_size}")
    return n


class DCGANEncoder(nn.Module):
    """``(B, C, P, P) -> (B, n_out, 1, 1)``; :attr:`features` is everything but the last conv."""

    def __init__(self, patch_size: int, n_out: int, width: int, in_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = width
        for _ in range(_n_levels(patch_size) - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch *= 2
        self.features = nn.Sequential(*layers)
        self.final = nn.Conv2d(ch, n_out, 4, 1, 0, bias=False)
        self.feature_channels = ch

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(output, last features)``; output ``(B, n_out, 1, 1)``, features ``(B, 8w, 4, 4)``."""
        f = self.features(x)
        return self.final(f), f

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.features(x))


class DCGANDecoder(nn.Module):
    """``(B, nz, 1, 1) -> (B, C, P, P)`` in [-1, 1]: transposed convs with BatchNorm, tanh."""

    def __init__(self, patch_size: int, nz: int, width: int, out_channels: int = 1):
        super().__init__()
        n = _n_levels(patch_size)
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.net(z)
