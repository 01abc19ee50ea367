"""f-AnoGAN: WGAN-GP with residual networks plus an encoder (fast, one-pass scoring)."""

from octanomaly.models.fanogan.model import FAnoGAN, FAnoGANConfig

__all__ = ["FAnoGAN", "FAnoGANConfig"]
