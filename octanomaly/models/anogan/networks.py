"""AnoGAN networks: a DCGAN generator (its discriminator is :class:`DCGANDiscriminator`)."""

from __future__ import annotations

from octanomaly.models.dcgan import DCGANDecoder


class Generator(DCGANDecoder):
    """``z (B, nz) -> (B, 1, P, P)`` in [-1, 1]."""

    def __init__(self, patch_size: int = 64, nz: int = 100, width: int = 64):
        super().__init__(patch_size, nz, width)
