"""CUDA paths: bf16 autocast + channels-last training and GPU scoring (skipped without CUDA)."""

from __future__ import annotations

import json

import pytest
import torch

from octanomaly.models import MODELS
from octanomaly.runs import load_model
from octanomaly.scoring.patch_scores import score_patches
from octanomaly.training import TensorSampler, train
from tests._patches import layered_patches
from tests.test_training import tiny_cfg

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_training_with_bf16_and_channels_last_gives_finite_losses(name, tmp_path):
    cfg = tiny_cfg(name, amp=True, channels_last=True)
    data = TensorSampler(layered_patches(64, cfg.preprocessing.patch_size).cuda())
    val = TensorSampler(layered_patches(16, cfg.preprocessing.patch_size, 99).cuda())
    run = train(cfg, data, val, tmp_path / "run", device="cuda", progress=False)
    for line in (run / "log.jsonl").read_text().splitlines():
        losses = json.loads(line).get("losses", {})
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    model, _, _ = load_model(run, "cuda")
    assert next(model.parameters()).is_cuda


def test_cuda_scores_match_cpu_scores(tmp_path):
    cfg = tiny_cfg("fanogan", amp=False)
    data = TensorSampler(layered_patches(64, cfg.preprocessing.patch_size))
    run = train(cfg, data, data, tmp_path / "run", device="cpu", progress=False)
    patches = layered_patches(32, cfg.preprocessing.patch_size, 5).numpy()
    cpu = score_patches(load_model(run, "cpu")[0], patches, amp=False)
    gpu = score_patches(load_model(run, "cuda")[0], patches, amp=False)
    torch.testing.assert_close(
        torch.from_numpy(gpu.score), torch.from_numpy(cpu.score), rtol=1e-3, atol=1e-4
    )
    torch.testing.assert_close(
        torch.from_numpy(gpu.residual), torch.from_numpy(cpu.residual), rtol=1e-3, atol=1e-3
    )
