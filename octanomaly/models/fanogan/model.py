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
from octanomaly.models.fanogan.networks import Critic, Encoder, Generator


class FAnoGANConfig(ModelConfig):
    """f-AnoGAN settings (defaults from the paper and the official code, width for CPU use)."""

    name: Literal["fanogan"] = "fanogan"
    width: int = Field(16, ge=1, description="base channels (official 64)")
    nz: int = Field(128, ge=1)
    latent: Literal["uniform", "normal"] = "uniform"
    n_critic: int = Field(5, ge=1)
    gp_weight: float = Field(10.0, ge=0)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    encoder_mode: Literal["izi_f", "izi", "ziz"] = "izi_f"
    encoder_lr: float = Field(5e-5, gt=0)
    kappa: float = Field(1.0, ge=0)


class FAnoGAN(AnomalyModel):
    """WGAN-GP generator ``G``, critic ``D`` and encoder ``E``."""

    name: ClassVar[str] = "fanogan"
    config_cls: ClassVar[type[ModelConfig]] = FAnoGANConfig
    stages: ClassVar[tuple[str, ...]] = ("gan", "encoder")
    trained_nets: ClassVar[dict[str, tuple[str, ...]]] = {"gan": ("G", "D"), "encoder": ("E",)}
    cfg: FAnoGANConfig

    def __init__(self, cfg: FAnoGANConfig):
        super().__init__(cfg)
        p = self.patch_size
        self.G = Generator(p, cfg.nz, cfg.width)
        self.D = Critic(p, cfg.width)
        self.E = Encoder(p, cfg.nz, cfg.width)

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
        with self.autocast():
            with torch.no_grad():
                fake = self.G(self.prior(b))
            eps = self.rand(b, 1, 1, 1)
            interp = (eps * real + (1 - eps) * fake).requires_grad_(True)
            out = self.net("D")(torch.cat([real, fake, interp]))
            d_real, d_fake, d_interp = out.split(b)
            gp = L.gradient_penalty(d_interp, interp)
            loss_d = L.critic_loss(d_real, d_fake, gp, self.cfg.gp_weight)
        self.update("D", loss_d)
        losses = {
            "d": loss_d.detach(),
            "gp": gp.detach(),
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
        enc = self.net("E")
        if self.cfg.encoder_mode == "ziz":
            z = self.prior(real.shape[0])
            with torch.no_grad():
                fake = self.G(z)
            loss = L.per_sample_mse(z, enc(fake)).mean()
            return loss, {"enc": loss.detach()}
        rec = self.G(enc(real))
        if self.cfg.encoder_mode == "izi_f":
            f = self.D.features(torch.cat([real, rec]))
            img, feat = L.izi_f_terms(real, rec, *f.split(real.shape[0]))
            img, feat = img.mean(), feat.mean()
            loss = img + self.cfg.kappa * feat
            return loss, {"enc": loss.detach(), "img": img.detach(), "feat": feat.detach()}
        loss = L.per_sample_mse(real, rec).mean()
        return loss, {"enc": loss.detach()}

    def reconstruct(self, x: Tensor) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.G(self.E(x)).float()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.G(self.prior(n, generator)).float()

    def score(self, x: Tensor) -> PatchScores:
        with self.evaluating(), torch.no_grad():
            rec = self.G(self.E(x))
            f_x, f_rec = self.D.features(torch.cat([x, rec])).split(x.shape[0])
            img, feat = L.izi_f_terms(x, rec, f_x, f_rec)
            return PatchScores(
                score=img + self.cfg.kappa * feat,
                residual=(x.float() - rec.float()).abs(),
                parts={"residual_score": img, "feature_score": feat},
            )
