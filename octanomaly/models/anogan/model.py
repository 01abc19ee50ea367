"""AnoGAN (Schlegl et al. 2017): a DCGAN on healthy patches, scored by latent mapping.

Stage ``gan`` is the standard minimax GAN (non-saturating generator loss, BCE with logits), one
discriminator and one generator update per step. Stage ``encoder`` trains an encoder ``E`` into
the frozen generator's latent space (f-AnoGAN's ``izi_f``), only to *start* the search: scoring
still optimises ``z`` per patch (:mod:`octanomaly.models.anogan.mapping`), the method's defining
part, but from ``E(x)`` instead of a random code (``mapping.init: encoder``), so a few tens of
steps replace 500. ``A(x) = (1-lam) R(x) + lam D(x)``, residual ``|x - G(z)|``; the patch
embedding is the mapped ``z``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from octanomaly.models.anogan import loss as L
from octanomaly.models.anogan.mapping import MappingResult, map_latent
from octanomaly.models.base import ModelConfig, PatchScores, dcgan_init
from octanomaly.models.dcgan import DCGANConfig, DCGANDecoder, DCGANEncoder, DCGANPairModel
from octanomaly.models.latent_encoder import EncoderSettings, encoder_loss


class MappingConfig(BaseModel):
    """Latent mapping settings (Gamma steps, lambda, Adam on z, per-patch early stop)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(500, ge=1)
    lam: float = Field(0.1, ge=0, le=1)
    lr: float = Field(0.05, gt=0)
    early_stop: bool = True
    patience: int = Field(50, ge=1)
    rel_tol: float = Field(1e-3, ge=0)
    discrimination: Literal["feature", "reference"] = "feature"
    seed: int = 0
    init: Literal["encoder", "random"] = "encoder"
    """Start of the search: the trained encoder's ``E(x)`` (warm start) or a random code."""


class AnoGANConfig(DCGANConfig, EncoderSettings):
    """AnoGAN settings: DCGAN width, latent size, Adam 2e-4 / beta1 0.5, mapping."""

    name: Literal["anogan"] = "anogan"
    mapping: MappingConfig = MappingConfig()
    encoder_lr: float = Field(1e-4, gt=0)


class AnoGAN(DCGANPairModel):
    """DCGAN generator ``G``, discriminator ``D`` and the warm-start encoder ``E``."""

    name: ClassVar[str] = "anogan"
    config_cls: ClassVar[type[ModelConfig]] = AnoGANConfig
    stages: ClassVar[tuple[str, ...]] = ("gan", "encoder")
    trained_nets: ClassVar[dict[str, tuple[str, ...]]] = {"gan": ("G", "D"), "encoder": ("E",)}
    grad_scoring: ClassVar[bool] = True  # latent mapping backpropagates to z
    #: Patch embedding: the latent code the mapping found.
    embeds_patches: ClassVar[bool] = True
    cfg: AnoGANConfig

    def __init__(self, cfg: AnoGANConfig):
        super().__init__(cfg, DCGANDecoder(cfg.size, cfg.nz, cfg.width))
        self.E = DCGANEncoder(cfg.size, cfg.nz, cfg.width)
        self.E.apply(dcgan_init)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        super().configure_optimizers()
        self.optimizers |= self.adam("E", lr=self.cfg.encoder_lr, betas=self.cfg.betas)
        return self.optimizers

    def encode(self, x: Tensor) -> Tensor:
        """The encoder's latent code ``(B, nz)`` of ``x`` (the mapping's starting point)."""
        return self.E(x).flatten(1)

    def _features(self, x: Tensor) -> Tensor:
        return self.D.logits_and_features(x)[1].flatten(1)

    def train_step(self, real: Tensor, stage: str, step: int) -> dict[str, Tensor]:
        if stage == "encoder":
            c = self.cfg
            with self.autocast():
                loss, losses = encoder_loss(
                    c.encoder_mode,
                    real,
                    self.G,
                    lambda x: self.net("E")(x).flatten(1),
                    self._features,
                    lambda n: self.randn(n, c.nz),
                    c.kappa,
                )
            self.update("E", loss)
            return losses
        if stage != "gan":
            raise ValueError(f"unknown stage {stage!r}")
        with self.autocast():
            fake = self.net("G")(self.randn(real.shape[0], self.cfg.nz))
            disc = self.net("D")
            real_logits, fake_logits = disc(real), disc(fake.detach())
            loss_d = L.discriminator_loss(real_logits, fake_logits)
        self.update("D", loss_d)
        self.D.requires_grad_(False)
        with self.autocast():
            loss_g = L.generator_loss(self.D(fake))
        self.update("G", loss_g)
        self.D.requires_grad_(True)
        return {
            "d": loss_d.detach(),
            "g": loss_g.detach(),
            "d_real": real_logits.detach().float().sigmoid().mean(),
            "d_fake": fake_logits.detach().float().sigmoid().mean(),
        }

    def map(
        self, x: Tensor, generator: torch.Generator | None = None, **overrides
    ) -> MappingResult:
        """Latent mapping of ``x`` with the configured settings (``overrides`` replace some)."""
        m = self.cfg.mapping.model_copy(update=overrides)
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(m.seed)
        with self.evaluating():
            z0 = None
            if m.init == "encoder":
                with torch.no_grad():
                    z0 = self.encode(x).float()
            return map_latent(
                self.G,
                self.D,
                x,
                self.cfg.nz,
                z0=z0,
                steps=m.steps,
                lam=m.lam,
                lr=m.lr,
                generator=generator,
                early_stop=m.early_stop,
                patience=m.patience,
                rel_tol=m.rel_tol,
                discrimination=m.discrimination,
            )

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.map(x).reconstruction

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        with self.evaluating(), torch.no_grad():
            z = torch.randn(n, self.cfg.nz, generator=generator, device=self.device)
            return self.G(z).float()

    def preview(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        out = {"real": x, "generated": self.sample(x.shape[0], generator)}
        out["reconstructed"] = self.map(x, steps=min(self.cfg.mapping.steps, 100)).reconstruction
        return out

    def score(self, x: Tensor, generator: torch.Generator | None = None) -> PatchScores:
        res = self.map(x, generator)
        return PatchScores(
            score=res.loss,
            residual=(x.float() - res.reconstruction).abs(),
            parts={
                "residual_score": res.residual_loss,
                "discrimination_score": res.discrimination_loss,
            },
            embedding=res.z.float(),
        )
