"""GANomaly: score ``A(x) = mean((G_E(x) - E(G(x)))^2)`` per patch, always in eval mode.

The official code never calls ``.eval()`` at test time, so its BatchNorm statistics drift on test
data; here scoring always runs in eval mode and leaves the running statistics untouched.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from octanomaly.models.base import ModelConfig, PatchScores
from octanomaly.models.dcgan import DCGANConfig, DCGANPairModel
from octanomaly.models.ganomaly import loss as L
from octanomaly.models.ganomaly.networks import EncDecEnc


class GANomalyConfig(DCGANConfig):
    """GANomaly settings (defaults of the paper: w_adv 1, w_con 50, w_enc 1, nz 100)."""

    name: Literal["ganomaly"] = "ganomaly"
    w_adv: float = Field(1.0, ge=0)
    w_con: float = Field(50.0, ge=0)
    w_enc: float = Field(1.0, ge=0)


class GANomaly(DCGANPairModel):
    """Generator ``G`` (encoder-decoder-encoder) and discriminator ``D``."""

    name: ClassVar[str] = "ganomaly"
    config_cls: ClassVar[type[ModelConfig]] = GANomalyConfig
    #: Patch embedding: the latent code ``z = G_E(x)`` of the first encoder.
    embeds_patches: ClassVar[bool] = True
    cfg: GANomalyConfig

    def __init__(self, cfg: GANomalyConfig):
        super().__init__(cfg, EncDecEnc(cfg.size, cfg.nz, cfg.width))

    def train_step(self, real: Tensor, stage: str, step: int) -> dict[str, Tensor]:
        if stage != "gan":
            raise ValueError(f"unknown stage {stage!r}")
        c = self.cfg
        self.D.requires_grad_(False)
        with self.autocast():
            x_hat, z, z_hat = self.net("G")(real)
            _, feat_real = self.D(real, features=True)
            _, feat_fake = self.D(x_hat, features=True)
            g = L.generator_loss(
                feat_real, feat_fake, real, x_hat, z, z_hat, c.w_adv, c.w_con, c.w_enc
            )
        self.update("G", g["g"])
        self.D.requires_grad_(True)
        with self.autocast():
            disc = self.net("D")
            real_logits, fake_logits = disc(real), disc(x_hat.detach())
            loss_d = L.discriminator_loss(real_logits, fake_logits)
        self.update("D", loss_d)
        return {k: v.detach() for k, v in g.items()} | {"d": loss_d.detach()}

    def reconstruct(self, x: Tensor) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.G(x)[0].float()

    def score(self, x: Tensor) -> PatchScores:
        with self.evaluating(), torch.no_grad():
            x_hat, z, z_hat = self.G(x)
            latent = (z.float() - z_hat.float()).square().mean(dim=1)
            residual = (x.float() - x_hat.float()).abs()
            return PatchScores(
                score=latent,
                residual=residual,
                parts={
                    "latent_score": latent,
                    "residual_score": residual.square().flatten(1).mean(1),
                },
                embedding=z.float(),
            )
