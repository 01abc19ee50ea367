"""Training an encoder into a frozen GAN's latent space (f-AnoGAN's ``izi_f``), for any model.

f-AnoGAN scores with it; AnoGAN starts its iterative latent search from it (warm start).
``izi_f``: ``MSE(x, G(E(x))) + kappa * MSE(f(x), f(G(E(x))))`` with ``f`` the discriminator's
(critic's) last features; ``izi`` drops the feature term; ``ziz``: ``MSE(z, E(G(z)))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, Field
from torch import Tensor, nn

EncoderMode = Literal["izi_f", "izi", "ziz"]


class EncoderSettings(BaseModel):
    """Config fields of a model that trains an encoder with :func:`encoder_loss` (a mixin)."""

    encoder_mode: EncoderMode = "izi_f"
    encoder_lr: float = Field(5e-5, gt=0)
    kappa: float = Field(1.0, ge=0)
    """Weight of the feature term (``izi_f``)."""


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference per sample over all other dimensions, ``(B,)``."""
    return (a.float() - b.float()).square().flatten(1).mean(dim=1)


def izi_f_terms(x: Tensor, x_rec: Tensor, f_x: Tensor, f_rec: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample image and feature terms of ``izi_f``: ``MSE(x, G(E(x)))``, ``MSE(f(x), f(.))``."""
    return per_sample_mse(x, x_rec), per_sample_mse(f_x, f_rec)


def encoder_loss(
    mode: EncoderMode,
    real: Tensor,
    G: nn.Module,
    E: nn.Module,
    features: Callable[[Tensor], Tensor],
    prior: Callable[[int], Tensor],
    kappa: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The encoder's training loss on a batch of ``real`` patches and its detached parts.

    ``G`` and the feature network are frozen (the caller's stage); ``features(x)`` gives the
    discriminator's last features ``(B, ...)``; ``prior(n)`` draws ``n`` latent codes (``ziz``).
    """
    if mode == "ziz":
        z = prior(real.shape[0])
        with torch.no_grad():
            fake = G(z)
        loss = per_sample_mse(z, E(fake)).mean()
        return loss, {"enc": loss.detach()}
    rec = G(E(real))
    if mode == "izi_f":
        f_x, f_rec = features(torch.cat([real, rec])).split(real.shape[0])
        img, feat = izi_f_terms(real, rec, f_x, f_rec)
        img, feat = img.mean(), feat.mean()
        loss = img + kappa * feat
        return loss, {"enc": loss.detach(), "img": img.detach(), "feat": feat.detach()}
    loss = per_sample_mse(real, rec).mean()
    return loss, {"enc": loss.detach()}
