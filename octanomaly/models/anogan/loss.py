"""AnoGAN losses: the standard (non-saturating) minimax GAN loss with logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``BCE(D(x), 1) + BCE(D(G(z)), 0)``, means over the batch."""
    real = F.binary_cross_entropy_with_logits(
        real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32)
    )
    fake = F.binary_cross_entropy_with_logits(
        fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32)
    )
    return real + fake


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``BCE(D(G(z)), 1)``."""
    return F.binary_cross_entropy_with_logits(
        fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32)
    )
