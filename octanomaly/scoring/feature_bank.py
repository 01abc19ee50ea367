"""A PatchCore-style feature bank: the model's own embeddings of healthy patches.

Models that declare ``embeds_patches`` return an embedding of every scored patch (GANomaly: the
latent code of its first encoder). The bank keeps a seeded random coreset of at most
:data:`BANK_SIZE` healthy patch embeddings, standardised per dimension with the healthy mean and
std. A patch's ``bank`` channel value is the Euclidean distance of its standardised embedding to
the nearest bank entry (``torch.cdist`` in batches); the distances are spread over the pixels of
each patch like the patch score map (:func:`octanomaly.transforms.patches.stitch`).

Stored as ``feature_bank.safetensors`` (``bank``, ``mean``, ``std``); no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from octanomaly.errors import OctanomalyError

#: Most healthy patch embeddings kept (a seeded random coreset beyond this).
BANK_SIZE: int = 10_000
#: Query patches per ``torch.cdist`` batch.
QUERY_BATCH: int = 2048


@dataclass(frozen=True)
class FeatureBank:
    """Healthy patch embeddings ``bank`` ``(n, dim)`` (standardised) with the ``mean``/``std``."""

    bank: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.bank.shape[1])

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, rng: np.random.Generator, size: int = BANK_SIZE
    ) -> FeatureBank:
        """Bank of healthy ``embeddings`` ``(N, dim)``: a random coreset of ``size`` (``rng``)."""
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise OctanomalyError("feature bank: no healthy patch embeddings to fit")
        if not np.isfinite(x).all():
            raise OctanomalyError(
                "feature bank: healthy patch embeddings hold NaN or infinite values"
            )
        mean = x.mean(0)
        std = x.std(0) + 1e-6
        if x.shape[0] > size:
            x = x[np.sort(rng.choice(x.shape[0], size, replace=False))]
        bank = cls(
            ((x - mean) / std).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)
        )
        bank.validate("feature bank")
        return bank

    def validate(self, where: str, dim: int | None = None) -> None:
        """:class:`OctanomalyError` naming ``where`` unless the bank is usable (and of ``dim``)."""
        if self.bank.ndim != 2 or self.bank.shape[0] == 0:
            raise OctanomalyError(f"{where}: feature bank is empty")
        d = self.bank.shape[1]
        if dim is not None and d != dim:
            raise OctanomalyError(f"{where}: feature bank has dimension {d}, expected {dim}")
        if self.mean.shape != (d,) or self.std.shape != (d,):
            raise OctanomalyError(f"{where}: feature bank mean/std do not have dimension {d}")
        if not all(np.isfinite(a).all() for a in (self.bank, self.mean, self.std)):
            raise OctanomalyError(f"{where}: feature bank holds NaN or infinite values")
        if not (self.std > 0).all():
            raise OctanomalyError(f"{where}: feature bank std must be > 0")

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Nearest-neighbour distance ``(N,)`` float32 of each embedding to the bank."""
        x = np.asarray(embeddings, dtype=np.float32)
        if len(x) == 0:  # no patch scored (e.g. a B-scan without retina)
            return np.zeros(0, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise OctanomalyError(
                f"the model's patch embeddings have shape {x.shape[1:]}, the feature bank "
                f"dimension {self.dim}; re-calibrate the run"
            )
        bank = torch.from_numpy(self.bank)
        z = torch.from_numpy((x - self.mean) / self.std)
        out = np.empty(len(x), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(x), QUERY_BATCH):
                out[s : s + QUERY_BATCH] = torch.cdist(z[s : s + QUERY_BATCH], bank).amin(1).numpy()
        return out

    # ------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write ``bank``/``mean``/``std`` as safetensors (atomically)."""
        from safetensors.numpy import save_file

        from octanomaly.io.atomic import atomic_path

        arrays = {"bank": self.bank, "mean": self.mean, "std": self.std}
        with atomic_path(Path(path)) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))

    @classmethod
    def load(cls, path: str | Path, dim: int) -> FeatureBank:
        """Read and validate ``path`` (safetensors, embeddings of ``dim``); one-line errors."""
        from octanomaly.scoring.normative import load_arrays

        path = Path(path)
        arrays = load_arrays(path, "feature bank", ("bank", "mean", "std"))
        bank = cls(*(arrays[k].astype(np.float32) for k in ("bank", "mean", "std")))
        bank.validate(str(path), dim)
        return bank


def distance_map(
    distances: np.ndarray, coords: np.ndarray, shape: tuple[int, int, int], patch_size: int
) -> np.ndarray:
    """Per-pixel map ``shape`` float32: the mean bank distance of the patches covering a pixel."""
    from octanomaly.transforms.patches import stitch

    return stitch(np.asarray(distances, dtype=np.float32), coords, shape, patch_size).astype(
        np.float32
    )
