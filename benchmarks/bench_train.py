"""Training and scoring throughput of the models (patches/s, achieved FLOP rate).

    python benchmarks/bench_train.py --device cuda --model fanogan --width 64 --batch 64
    python benchmarks/bench_train.py --device cpu --threads 2 --widths 16 32 64 --steps 3
    python benchmarks/bench_train.py --device cpu --models fanogan --patch 32 --widths 32 \
        --set arch=dcgan gp_every=4

Training counts real patches per second through ``train_step`` (for f-AnoGAN's GAN stage one
step = one critic update, plus a generator update every ``n_critic`` steps). Scoring counts
patches per second through ``model.score`` (AnoGAN: one mapping *step* per patch, reported as
such, since a full mapping is ``steps`` times slower). FLOPs come from
``torch.utils.flop_counter``; on CUDA the rate is compared with the bf16 matrix peak.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from octanomaly.models import MODELS, build_model

PEAK_BF16 = 790e12


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev: torch.device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t) / steps


def _flops(fn) -> float:
    """FLOPs of one call; NaN where the counter cannot follow (AnoGAN's autograd.grad on z)."""
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    except RuntimeError:
        return float("nan")
    return counter.get_total_flops()


def bench(
    name: str,
    width: int,
    patch: int,
    batch: int,
    score_batch: int,
    steps: int,
    dev: torch.device,
    amp: bool,
    overrides: dict | None = None,
) -> dict:
    """Throughput of one model configuration (``overrides``: other model config fields)."""
    torch.manual_seed(0)
    cls = MODELS[name].config_cls
    sizes = {"width": width, "mapping": {"steps": 1, "early_stop": False}}  # where they apply
    sizes = {k: v for k, v in sizes.items() if k in cls.model_fields}
    extra = {k: v for k, v in (overrides or {}).items() if k in cls.model_fields}
    cfg = cls.model_validate({"name": name, "patch_size": patch, **sizes, **extra})
    model = build_model(cfg).to(dev)
    cl = dev.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    model.configure_optimizers()
    model.generator = torch.Generator(device=dev).manual_seed(1)
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = (torch.rand(batch, 1, patch, patch, device=dev) * 2 - 1).contiguous(memory_format=fmt)
    xs = (torch.rand(score_batch, 1, patch, patch, device=dev) * 2 - 1).contiguous(
        memory_format=fmt
    )
    use_amp = amp and dev.type == "cuda"
    model.amp = amp  # train_step autocasts its forward passes (CUDA only)
    stage = model.stages[0]
    model.begin_stage(stage)
    counter = iter(range(10**9))

    def train_step() -> None:
        model.train_step(x, stage, next(counter))

    def score() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            model.score(xs)

    n_critic = getattr(cfg, "n_critic", 1)
    t_train = _timed(train_step, dev, steps * n_critic, n_critic)
    f_train = sum(_flops(train_step) for _ in range(n_critic)) / n_critic
    t_score = _timed(score, dev, steps, 1)
    f_score = _flops(score)
    out = {
        "model": name,
        "width": width,
        "patch": patch,
        **extra,
        "device": str(dev),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_patches_per_s": round(batch / t_train, 1),
        "train_TFLOPs": round(f_train / t_train / 1e12, 3),
        "score_patches_per_s": round(score_batch / t_score, 1),
        "score_TFLOPs": round(f_score / t_score / 1e12, 3),
        "score_GFLOP_per_patch": round(f_score / score_batch / 1e9, 3),
    }
    if dev.type == "cuda":
        out["train_pct_of_bf16_peak"] = round(100 * f_train / t_train / PEAK_BF16, 2)
        out["score_pct_of_bf16_peak"] = round(100 * f_score / t_score / PEAK_BF16, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    ap.add_argument("--widths", nargs="+", type=int, default=[64])
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--score-batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="model config fields, e.g. arch=dcgan gp_every=4 (where the model has them)",
    )
    a = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(
        "cuda"
        if a.device == "auto" and torch.cuda.is_available()
        else ("cpu" if a.device == "auto" else a.device)
    )
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for name in a.models:
        for w in a.widths:
            r = bench(
                name, w, a.patch, a.batch, a.score_batch, a.steps, dev, not a.no_amp, overrides
            )
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
