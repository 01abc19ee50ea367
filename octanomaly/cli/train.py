"""``octanomaly train``: learn healthy appearance from volumes/B-scans with a GAN."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console, err_console


@command()
def train(
    data: Annotated[
        list[Path],
        typer.Argument(help="Healthy volumes, B-scan images or folders of them."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder to create, e.g. runs/NAME.")],
    model: Annotated[
        str | None,
        typer.Option("--model", help="A registered model: fanogan (default), anogan, ganomaly."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML config file, or a shipped config's name: fanogan, anogan, ganomaly "
            "(GPU sizes, the default for --model) or fanogan-cpu, anogan-cpu, ganomaly-cpu "
            "(about an hour on 2 CPU cores).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Cap the steps of every stage.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Patches per step (per GPU).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")
    ] = False,
) -> None:
    """Train a model on healthy data; writes weights, config, logs and calibration to --out."""
    from octanomaly.config import CONFIG_DIR, load_config
    from octanomaly.data.healthy import load_healthy
    from octanomaly.devices import resolve_device
    from octanomaly.training import train as run_training

    training: dict[str, int] = {}
    if batch_size is not None:
        training["batch_size"] = batch_size
    if seed is not None:
        training["seed"] = seed
    if resume and config is None and (out / "checkpoint" / "config.yaml").is_file():
        config = out / "checkpoint" / "config.yaml"
    cfg = load_config(config, model=model, overrides={"training": training} if training else None)
    dev = resolve_device(device)
    cpu_config = CONFIG_DIR / f"{cfg.model.name}-cpu.yaml"
    if config is None and dev.type == "cpu" and cpu_config.is_file():
        err_console.print(
            f"octanomaly: note: training the GPU-size {cfg.model.name} config on the CPU; "
            f"--config {cpu_config.stem} trains it in about an hour on 2 cores",
            markup=False,
            highlight=False,
        )
    train_s, val_s = load_healthy(
        data,
        cfg.preprocessing,
        val_fraction=cfg.training.val_fraction,
        seed=cfg.training.seed,
        device=dev,
    )
    run_dir = run_training(cfg, train_s, val_s, out, device=dev, resume=resume, max_steps=max_steps)
    console.print(f"trained {cfg.model.name}: {run_dir}")
