"""Anatomy-preserving augmentation of training patches: left-right flips, intensity jitter.

OCT B-scans are flattened on Bruch's membrane, so layers run left-right: a mirrored patch is
still healthy retina (nasal and temporal swap), an upside-down one is not. Intensity jitter
(a small gain and offset per patch) covers exposure differences between scans. Both draw from
the loop's data generator, so a run stays reproducible and resumes bit-exactly.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class AugmentConfig(BaseModel):
    """What augmentation a training run applies to each sampled patch (default: none)."""

    model_config = ConfigDict(extra="forbid")

    flip: bool = False
    """Mirror half of the patches left-right."""
    intensity: float = Field(0.0, ge=0, le=0.5)
    """Gain ``1 + U(-a, a)`` and offset ``U(-a, a)`` per patch, then clamped to [-1, 1]."""

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.flip or self.intensity > 0


def augment(x: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> Tensor:
    """``x`` ``(B, 1, P, P)`` in [-1, 1] augmented per patch (a new tensor; ``x`` untouched)."""
    if not cfg.active:
        return x
    b = x.shape[0]
    out = x
    if cfg.flip:
        flip = torch.rand(b, generator=generator, device=generator.device) < 0.5
        out = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    if cfg.intensity > 0:
        a = cfg.intensity
        u = torch.rand(2, b, generator=generator, device=generator.device).to(x.device) * 2 - 1
        gain, offset = 1 + a * u[0], a * u[1]
        out = (out * gain[:, None, None, None] + offset[:, None, None, None]).clamp(-1, 1)
    return out
