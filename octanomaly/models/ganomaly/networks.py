"""GANomaly networks (Akcay et al. 2018): the encoder-decoder-encoder generator (its
discriminator is :class:`~octanomaly.models.dcgan.DCGANDiscriminator`)."""

from __future__ import annotations

from torch import Tensor, nn

from octanomaly.models.dcgan import DCGANDecoder, DCGANEncoder


class EncDecEnc(nn.Module):
    """``x -> z = G_E(x) -> x_hat = G_D(z) -> z_hat = E(x_hat)``."""

    def __init__(self, patch_size: int = 64, nz: int = 100, width: int = 64):
        super().__init__()
        self.encoder1 = DCGANEncoder(patch_size, nz, width)
        self.decoder = DCGANDecoder(patch_size, nz, width)
        self.encoder2 = DCGANEncoder(patch_size, nz, width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_hat, z, z_hat)``; codes are ``(B, nz)``."""
        z = self.encoder1(x)
        x_hat = self.decoder(z)
        z_hat = self.encoder2(x_hat)
        return x_hat, z.flatten(1), z_hat.flatten(1)
