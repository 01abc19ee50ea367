"""AnoGAN latent mapping: find ``z`` with ``G(z) ~ x`` for many patches at once.

Every patch has its own ``z`` and its own loss ``(1-lam) * sum|x - G(z)| + lam * D-term``; the
batch objective is the sum of the per-patch losses, so with G and D in eval mode and Adam's
element-wise update each patch's trajectory does not depend on the others in the batch. Early
stopping is per patch too: a patch whose loss has not improved by ``rel_tol`` for ``patience``
steps keeps its ``z``; the loop ends when all patches have stopped (checked every
``check_every`` steps, the only host synchronisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from octanomaly.models.dcgan import DCGANDecoder, DCGANDiscriminator


@dataclass
class MappingResult:
    """Outcome of :func:`map_latent` (all per patch)."""

    z: Tensor
    reconstruction: Tensor
    residual_loss: Tensor
    discrimination_loss: Tensor
    loss: Tensor
    steps: Tensor


def _terms(
    G: DCGANDecoder,
    D: DCGANDiscriminator,
    x: Tensor,
    f_x: Tensor,
    z: Tensor,
    discrimination: Literal["feature", "reference"],
) -> tuple[Tensor, Tensor, Tensor]:
    rec = G(z)
    r = (x.float() - rec.float()).abs().flatten(1).sum(1)
    logits, f_rec = D.logits_and_features(rec)
    if discrimination == "feature":
        d = (f_x.float() - f_rec.float()).abs().flatten(1).sum(1)
    else:
        d = F.binary_cross_entropy_with_logits(
            logits.float(), torch.ones_like(logits, dtype=torch.float32), reduction="none"
        )
    return rec, r, d


def map_latent(
    G: DCGANDecoder,
    D: DCGANDiscriminator,
    x: Tensor,
    nz: int,
    *,
    steps: int = 500,
    lam: float = 0.1,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
    early_stop: bool = True,
    patience: int = 50,
    rel_tol: float = 1e-3,
    check_every: int = 25,
    discrimination: Literal["feature", "reference"] = "feature",
    z0: Tensor | None = None,
) -> MappingResult:
    """Optimise one latent code per patch of ``x`` ``(B, 1, P, P)`` with Adam; G, D frozen.

    The caller puts G and D in eval mode. The search starts at ``z0`` ``(B, nz)`` (a warm start,
    e.g. an encoder's codes) or, without it, at random codes: ``generator`` seeds them (row ``i``
    of ``randn(B, nz)``), so a run is reproducible.
    """
    b = x.shape[0]
    if z0 is None:
        z0 = torch.randn(b, nz, generator=generator, device=x.device)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.no_grad():
        _, f_x = D.logits_and_features(x)
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    best = torch.full((b,), float("inf"), device=x.device)
    stall = torch.zeros(b, dtype=torch.long, device=x.device)
    n_steps = torch.zeros(b, dtype=torch.long, device=x.device)
    with torch.enable_grad():
        for t in range(steps):
            _, r, d = _terms(G, D, x, f_x, z, discrimination)
            loss = (1 - lam) * r + lam * d
            (grad,) = torch.autograd.grad(loss.sum(), z)
            z_before = z.detach().clone()
            z.grad = grad
            opt.step()
            with torch.no_grad():
                n_steps += active.long()
                if early_stop:
                    loss = loss.detach()
                    improved = loss < best * (1 - rel_tol)
                    best = torch.where(improved, loss, best)
                    stall = torch.where(improved, torch.zeros_like(stall), stall + 1)
                    z.copy_(torch.where(active[:, None], z, z_before))
                    active = active & (stall < patience)
                    if (t + 1) % check_every == 0 and not bool(active.any()):
                        break
    with torch.no_grad():
        rec, r, d = _terms(G, D, x, f_x, z.detach(), discrimination)
    return MappingResult(
        z=z.detach(),
        reconstruction=rec.float(),
        residual_loss=r,
        discrimination_loss=d,
        loss=(1 - lam) * r + lam * d,
        steps=n_steps,
    )
