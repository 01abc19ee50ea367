"""DCGAN building blocks shared by AnoGAN and GANomaly: a strided-conv encoder, its mirror, the
discriminator, and :class:`DCGANPairModel` (a generator ``G`` and that discriminator ``D``).

For a ``P x P`` patch the encoder halves the size with 4x4 stride-2 convolutions down to 4x4
(``log2(P) - 2`` of them; four at 64x64, widths ``w, 2w, 4w, 8w``) and ends with a 4x4 valid
convolution to ``n_out`` channels; the decoder mirrors it with transposed convolutions and tanh.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from octanomaly.models.base import AnomalyModel, ModelConfig, dcgan_init


def _n_levels(patch_size: int) -> int:
    n = int(math.log2(patch_size)) - 2
    if 2 ** (n + 2) != patch_size or n < 2:
        raise ValueError(f"patch size must be a power of two >= 16, got {patch_size}")
    return n


def _norm(kind: Literal["batch", "layer"], ch: int) -> nn.Module:
    """BatchNorm, or layer norm over (C, H, W) with per-channel affine (a WGAN-GP critic must not
    mix the samples of a batch, so it takes ``layer``)."""
    return nn.BatchNorm2d(ch) if kind == "batch" else nn.GroupNorm(1, ch)


class DCGANEncoder(nn.Module):
    """``(B, C, P, P) -> (B, n_out, 1, 1)``; :attr:`features` is everything but the last conv."""

    def __init__(
        self,
        patch_size: int,
        n_out: int,
        width: int,
        in_channels: int = 1,
        norm: Literal["batch", "layer"] = "batch",
    ):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = width
        for _ in range(_n_levels(patch_size) - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                _norm(norm, ch * 2),
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


class DCGANDiscriminator(DCGANEncoder):
    """``(B, 1, P, P) -> logits (B,)``; with ``features=True`` also the last feature map
    ``(B, 8w, 4, 4)`` (feature matching), from the same pass."""

    def __init__(self, patch_size: int = 64, width: int = 64):
        super().__init__(patch_size, 1, width)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        out, f = self.forward_features(x)
        return (out.flatten(), f) if features else out.flatten()

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B,), features (B, 8w, 4, 4))``."""
        return self.forward(x, features=True)


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


class DCGANConfig(ModelConfig):
    """Settings of a :class:`DCGANPairModel`: width, latent size, Adam 2e-4 / beta1 0.5."""

    width: int = Field(32, ge=1)
    nz: int = Field(100, ge=1)
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)


class DCGANPairModel(AnomalyModel):
    """A generator ``G`` (given by the subclass) and a :class:`DCGANDiscriminator` ``D``, DCGAN
    initialised, trained together in one ``gan`` stage with Adam (``cfg.lr``, ``cfg.betas``)."""

    stages: ClassVar[tuple[str, ...]] = ("gan",)
    trained_nets: ClassVar[dict[str, tuple[str, ...]]] = {"gan": ("G", "D")}

    cfg: DCGANConfig

    def __init__(self, cfg: DCGANConfig, generator: nn.Module):
        super().__init__(cfg)
        self.G = generator
        self.D = DCGANDiscriminator(self.patch_size, cfg.width)
        self.apply(dcgan_init)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = self.adam("G", "D", lr=self.cfg.lr, betas=self.cfg.betas)
        return self.optimizers
