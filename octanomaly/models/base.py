"""The small interface every anomaly model implements, and its score container.

A model owns its networks and optimisers; the training loop (``octanomaly.training``) only calls
:meth:`AnomalyModel.begin_stage`, :meth:`AnomalyModel.train_step` and the scoring methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import Tensor, nn


class ModelConfig(BaseModel):
    """Settings shared by every model; each model subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid")

    name: str
    patch_size: int | None = None
    """Patch side in pixels; ``None`` takes the preprocessing's patch size (run config)."""

    @field_validator("patch_size")
    @classmethod
    def _power_of_two(cls, v: int | None) -> int | None:
        if v is not None and (v < 16 or v & (v - 1)):
            raise ValueError("must be a power of two >= 16 (e.g. 32, 64, 128)")
        return v

    @property
    def size(self) -> int:
        """The patch size, 64 when neither the model nor the run config set one."""
        return self.patch_size or 64


@dataclass
class PatchScores:
    """Scores of a batch of patches.

    Attributes:
        score: anomaly score per patch, shape ``(B,)``; larger is more anomalous.
        residual: per-pixel residual ``|x - reconstruction|``, shape ``(B, 1, P, P)``.
        parts: the terms the score is made of, each ``(B,)`` (e.g. ``residual_score``).
        embedding: ``(B, dim)`` patch embeddings (models declaring ``embeds_patches``) or None.
    """

    score: Tensor
    residual: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    embedding: Tensor | None = None

    def to(self, device: torch.device | str) -> PatchScores:
        """The same scores on ``device``."""
        return PatchScores(
            self.score.to(device),
            self.residual.to(device),
            {k: v.to(device) for k, v in self.parts.items()},
            None if self.embedding is None else self.embedding.to(device),
        )


class AnomalyModel(nn.Module):
    """Base class: networks as sub-modules, optimisers in :attr:`optimizers`, stages in order."""

    name: ClassVar[str]
    config_cls: ClassVar[type[ModelConfig]]
    stages: ClassVar[tuple[str, ...]]
    #: Networks updated in each stage; the others are frozen (eval mode, no gradients).
    trained_nets: ClassVar[dict[str, tuple[str, ...]]]
    #: Scoring needs autograd (e.g. AnoGAN optimises latent codes): scored under ``no_grad``
    #: with gradients enabled where the model asks, never under ``inference_mode``.
    grad_scoring: ClassVar[bool] = False
    #: :meth:`score` fills :attr:`PatchScores.embedding` (the model's own patch features), so
    #: runs of the model get a feature-bank scoring channel (``scoring.feature_bank``).
    embeds_patches: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.size
        #: Random stream for latent codes and interpolation weights (set by the training loop).
        self.generator: torch.Generator | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        #: bf16 autocast of the forward passes in :meth:`train_step` (CUDA only; set by the loop).
        self.amp = False
        self._wrapped: dict[str, nn.Module] = {}

    # ----------------------------------------------------------------- training interface
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create (and keep in :attr:`optimizers`) one optimiser per trained network."""
        raise NotImplementedError

    def adam(
        self, *nets: str, lr: float, betas: tuple[float, float]
    ) -> dict[str, torch.optim.Optimizer]:
        """One Adam optimiser per named network (``"G"``, ``"D"``, ...), same settings."""
        return {
            n: torch.optim.Adam(getattr(self, n).parameters(), lr=lr, betas=betas) for n in nets
        }

    def train_step(self, real: Tensor, stage: str, step: int) -> dict[str, Tensor]:
        """One optimisation step of ``stage`` on a batch ``(B, 1, P, P)``; detached losses.

        Forward passes and losses run inside :meth:`autocast`; :meth:`update` runs outside it.
        """
        raise NotImplementedError

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for forward passes when :attr:`amp` is on and the model is on CUDA."""
        dev = self.device.type
        return torch.autocast(dev, dtype=torch.bfloat16, enabled=self.amp and dev == "cuda")

    def update(self, net_name: str, loss: Tensor) -> None:
        """Backpropagate ``loss`` and step the optimiser of ``net_name`` (call outside autocast)."""
        opt = self.optimizers[net_name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def begin_stage(self, stage: str) -> None:
        """Put trained networks of ``stage`` in train mode, freeze and eval the others."""
        if stage not in self.stages:
            raise ValueError(f"{self.name} has no stage {stage!r} (stages: {self.stages})")
        trained = self.trained_nets[stage]
        for net_name in self.net_names():
            net = getattr(self, net_name)
            net.train(net_name in trained)
            net.requires_grad_(net_name in trained)
        self._wrapped = {}

    def net_names(self) -> tuple[str, ...]:
        """Names of all networks of the model."""
        return tuple(sorted({n for names in self.trained_nets.values() for n in names}))

    def wrap(self, net_name: str, wrapped: nn.Module) -> None:
        """Route the gradient-carrying forward passes of ``net_name`` through ``wrapped`` (DDP)."""
        self._wrapped[net_name] = wrapped

    def net(self, net_name: str) -> nn.Module:
        """The network to call when its parameters should receive (synchronised) gradients."""
        return self._wrapped.get(net_name) or getattr(self, net_name)

    def randn(self, *shape: int) -> Tensor:
        """Standard-normal noise from the model's generator on the model's device."""
        return torch.randn(*shape, generator=self.generator, device=self.device)

    def rand(self, *shape: int) -> Tensor:
        """Uniform [0, 1) noise from the model's generator on the model's device."""
        return torch.rand(*shape, generator=self.generator, device=self.device)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ scoring interface
    def reconstruct(self, x: Tensor) -> Tensor:
        """The model's healthy-looking reconstruction of ``x`` (same shape)."""
        raise NotImplementedError

    def score(self, x: Tensor) -> PatchScores:
        """Anomaly scores and residuals of ``x`` ``(B, 1, P, P)`` in [-1, 1], in eval mode."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """``n`` generated patches from the prior, or ``None`` when the model has no prior."""
        return None

    def preview(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Patch batches to show at checkpoints: generated and reconstructed patches."""
        out: dict[str, Tensor] = {"real": x}
        with self.evaluating(), torch.no_grad():
            generated = self.sample(x.shape[0], generator)
            if generated is not None:
                out["generated"] = generated
            out["reconstructed"] = self.reconstruct(x)
        return out

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode for every sub-module inside the block; previous modes restored after."""
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
