"""f-AnoGAN (Schlegl et al. 2019): WGAN-GP on healthy patches, then an encoder into its latent.

Stage ``gan`` updates the critic every step and the generator every ``n_critic``-th step (one
batch of real patches per step). Stage ``encoder`` trains E with G and D frozen, using
``izi_f`` (default), ``izi`` or ``ziz``. Score ``A(x) = MSE(x, G(E(x))) + kappa * MSE(f(x),
f(G(E(x))))``; residual ``|x - G(E(x))|``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from octanomaly.models.base import AnomalyModel, ModelConfig, PatchScores
from octanomaly.models.fanogan import loss as L
from octanomaly.models.fanogan.networks import Arch, build_networks
from octanomaly.models.latent_encoder import EncoderSettings, encoder_loss, izi_f_terms


class FAnoGANConfig(ModelConfig, EncoderSettings):
    """f-AnoGAN settings (defaults from the paper and the official code, width for CPU use)."""

    name: Literal["fanogan"] = "fanogan"
    arch: Arch = "residual"
    """``residual`` (the official networks) or ``dcgan`` (DCGAN-size networks, for CPU)."""
    width: int = Field(16, ge=1, description="base channels (official 64)")
    nz: int = Field(128, ge=1)
    latent: Literal["uniform", "normal"] = "uniform"
    n_critic: int = Field(5, ge=1)
    gp_weight: float = Field(10.0, ge=0)
    gp_every: int = Field(1, ge=1)
    """Lazy gradient penalty: computed every ``gp_every``-th critic step, weighted by
    ``gp_every`` (as StyleGAN2 does with R1), so the penalty per step is the same on average."""
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)


class FAnoGAN(AnomalyModel):
    """WGAN-GP generator ``G``, critic ``D`` and encoder ``E``."""

    name: ClassVar[str] = "fanogan"
    config_cls: ClassVar[type[ModelConfig]] = FAnoGANConfig
    #: Patch embedding: the encoder's latent code ``z = E(x)``.
    embeds_patches: ClassVar[bool] = True
    stages: ClassVar[tuple[str, ...]] = ("gan", "encoder")
    trained_nets: ClassVar[dict[str, tuple[str, ...]]] = {"gan": ("G", "D"), "encoder": ("E",)}
    cfg: FAnoGANConfig

    def __init__(self, cfg: FAnoGANConfig):
        super().__init__(cfg)
        self.G, self.D, self.E = build_networks(cfg.arch, self.patch_size, cfg.nz, cfg.width)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        self.optimizers = self.adam("G", "D", lr=c.lr, betas=c.betas)
        self.optimizers["E"] = torch.optim.RMSprop(self.E.parameters(), lr=c.encoder_lr)
        return self.optimizers

    def prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent codes ``(n, nz)`` from the prior (uniform in [-1, 1] or standard normal)."""
        gen = generator if generator is not None else self.generator
        shape = (n, self.cfg.nz)
        if self.cfg.latent == "normal":
            return torch.randn(shape, generator=gen, device=self.device)
        return torch.rand(shape, generator=gen, device=self.device) * 2 - 1

    def train_step(self, real: Tensor, stage: str, step: int) -> dict[str, Tensor]:
        if stage == "gan":
            return self._gan_step(real, step)
        if stage == "encoder":
            return self._encoder_step(real)
        raise ValueError(f"unknown stage {stage!r}")

    def _gan_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        b = real.shape[0]
        lazy = self.cfg.gp_every
        with_gp = step % lazy == 0
        with self.autocast():
            with torch.no_grad():
                fake = self.G(self.prior(b))
            batch = [real, fake]
            if with_gp:
                eps = self.rand(b, 1, 1, 1)
                interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
                batch.append(interp)
            out = self.net("D")(torch.cat(batch)).split(b)
            d_real, d_fake = out[0], out[1]
            gp = L.gradient_penalty(out[2], interp) if with_gp else real.new_zeros(())
            loss_d = L.critic_loss(d_real, d_fake, gp, self.cfg.gp_weight * lazy)
        self.update("D", loss_d)
        losses = {
            "d": loss_d.detach(),
            **({"gp": gp.detach()} if with_gp else {}),
            "wdist": (d_real.float().mean() - d_fake.float().mean()).detach(),
        }
        if step % self.cfg.n_critic == self.cfg.n_critic - 1:
            self.D.requires_grad_(False)
            with self.autocast():
                loss_g = L.generator_loss(self.D(self.net("G")(self.prior(b))))
            self.update("G", loss_g)
            self.D.requires_grad_(True)
            losses["g"] = loss_g.detach()
        return losses

    def _encoder_step(self, real: Tensor) -> dict[str, Tensor]:
        with self.autocast():
            loss, losses = self._encoder_loss(real)
        self.update("E", loss)
        return losses

    def _encoder_loss(self, real: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg
        return encoder_loss(
            c.encoder_mode, real, self.G, self.net("E"), self.D.features, self.prior, c.kappa
        )

    def reconstruct(self, x: Tensor) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.G(self.E(x)).float()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.G(self.prior(n, generator)).float()

    def score(self, x: Tensor) -> PatchScores:
        with self.evaluating(), torch.no_grad():
            z = self.E(x)
            rec = self.G(z)
            f_x, f_rec = self.D.features(torch.cat([x, rec])).split(x.shape[0])
            img, feat = izi_f_terms(x, rec, f_x, f_rec)
            return PatchScores(
                score=img + self.cfg.kappa * feat,
                residual=(x.float() - rec.float()).abs(),
                parts={"residual_score": img, "feature_score": feat},
                embedding=z.float(),
            )
