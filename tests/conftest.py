"""Shared fixtures: temporary folders, the real-data folder (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real data folder ../shared/data is absent")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, map-calibrated f-AnoGAN run folder (patch 32, width 4; trained a few steps on
    phantom volumes, a few seconds). Shared: copy it before changing anything in it."""
    from octanomaly.config import load_config
    from octanomaly.data.healthy import load_healthy
    from octanomaly.data.phantom import make_phantom
    from octanomaly.io.nifti import write_volume
    from octanomaly.scoring import calibrate_run
    from octanomaly.training import train

    root = tmp_path_factory.mktemp("tiny_run")
    for seed in range(3):
        write_volume(
            make_phantom(seed, n_bscans=8, depth=128, width=128).volume, root / f"h{seed}.nii.gz"
        )
    cfg = load_config(model="fanogan", overrides={
        "model": {"width": 4, "nz": 16},
        "preprocessing": {"patch_size": 32, "score_stride": 16},
        "training": {"batch_size": 8, "steps": {"gan": 3, "encoder": 3}, "calibration_patches": 64,
                     "score_batch_size": 64, "checkpoint_every": 100},
    })  # fmt: skip
    train_s, val_s = load_healthy([root], cfg.preprocessing, val_fraction=0.34, seed=0)
    run = train(cfg, train_s, val_s, root / "run", device="cpu", progress=False)
    healthy = [root / f"h{seed}.nii.gz" for seed in range(3)]  # >= 20 healthy B-scans
    calibrate_run(run, healthy, device="cpu", progress=False)
    return run
