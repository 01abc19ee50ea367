"""AnoGAN networks: a DCGAN generator and discriminator (4 strided convs at 64x64)."""

from __future__ import annotations

from torch import Tensor

from octanomaly.models.dcgan import DCGANDecoder, DCGANEncoder


class Generator(DCGANDecoder):
    """``z (B, nz) -> (B, 1, P, P)`` in [-1, 1]."""

    def __init__(self, patch_size: int = 64, nz: int = 100, width: int = 64):
        super().__init__(patch_size, nz, width)


class Discriminator(DCGANEncoder):
    """``(B, 1, P, P) -> logits (B,)``; :meth:`features` is the last feature map ``f``."""

    def __init__(self, patch_size: int = 64, width: int = 64):
        super().__init__(patch_size, 1, width)

    def logits_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Real/fake logits ``(B,)`` and features ``(B, 8w, 4, 4)`` from one pass."""
        out, f = self.forward_features(x)
        return out.flatten(), f

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).flatten()
