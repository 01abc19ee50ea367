"""AnoGAN: a DCGAN scored by iterative latent mapping (slow, the reference method)."""

from octanomaly.models.anogan.mapping import MappingResult, map_latent
from octanomaly.models.anogan.model import AnoGAN, AnoGANConfig

__all__ = ["AnoGAN", "AnoGANConfig", "MappingResult", "map_latent"]
