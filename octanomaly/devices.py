"""Devices: one place that turns ``auto``/``cpu``/``cuda`` into a ``torch.device``."""

from __future__ import annotations

import torch

from octanomaly.errors import OctanomalyError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise OctanomalyError(
            f"--device {device}: unknown device (use auto, cpu or cuda)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OctanomalyError("--device cuda was asked but no CUDA GPU is available")
    return dev
