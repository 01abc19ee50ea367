"""f-AnoGAN losses: WGAN-GP critic and generator terms (encoder: ``models.latent_encoder``)."""

from __future__ import annotations

import torch
from torch import Tensor


def gradient_penalty(critic_out: Tensor, interp: Tensor) -> Tensor:
    """``mean((||d critic / d interp||_2 - 1)^2)``; keeps the graph for the critic's backward."""
    (grad,) = torch.autograd.grad(critic_out.sum(), interp, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).square().mean()


def critic_loss(d_real: Tensor, d_fake: Tensor, gp: Tensor, gp_weight: float) -> Tensor:
    """WGAN-GP critic loss ``E[D(fake)] - E[D(real)] + lambda * GP``."""
    return d_fake.float().mean() - d_real.float().mean() + gp_weight * gp


def generator_loss(d_fake: Tensor) -> Tensor:
    """WGAN generator loss ``-E[D(G(z))]``."""
    return -d_fake.float().mean()
