"""GANomaly: encoder-decoder-encoder GAN scored in latent space (one pass per patch)."""

from octanomaly.models.ganomaly.model import GANomaly, GANomalyConfig

__all__ = ["GANomaly", "GANomalyConfig"]
