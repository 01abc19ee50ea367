"""GANomaly losses: adversarial feature matching, contextual L1, latent L2, discriminator BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def l2(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference (the official ``l2_loss``)."""
    return (a.float() - b.float()).square().mean()


def generator_loss(
    feat_real: Tensor,
    feat_fake: Tensor,
    x: Tensor,
    x_hat: Tensor,
    z: Tensor,
    z_hat: Tensor,
    w_adv: float,
    w_con: float,
    w_enc: float,
) -> dict[str, Tensor]:
    """``w_adv ||f(x) - f(x_hat)||^2 + w_con ||x - x_hat||_1 + w_enc ||z - z_hat||^2`` and terms."""
    adv = l2(feat_real, feat_fake)
    con = (x.float() - x_hat.float()).abs().mean()
    enc = l2(z, z_hat)
    return {"g": w_adv * adv + w_con * con + w_enc * enc, "adv": adv, "con": con, "enc": enc}


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``(BCE(D(x), 1) + BCE(D(x_hat), 0)) / 2``."""
    real = F.binary_cross_entropy_with_logits(
        real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32)
    )
    fake = F.binary_cross_entropy_with_logits(
        fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32)
    )
    return 0.5 * (real + fake)
