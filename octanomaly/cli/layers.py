"""``octanomaly layers`` (ILM/BM rows of a volume) and ``octanomaly patches`` (preview of the
training patches the models will learn from)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console
from octanomaly.cli.options import SpacingOption
from octanomaly.errors import InputError


@command()
def layers(
    volume: Annotated[Path, typer.Argument(help="OCT volume of any readable format.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .npz with ilm and bm.")],
    spacing: SpacingOption = None,
) -> None:
    """Find ILM and Bruch's membrane: rows (n_bscans, width) of the input, NaN where absent."""
    import warnings

    import numpy as np

    from octanomaly.io import load_volume
    from octanomaly.io.atomic import atomic_path
    from octanomaly.transforms.layers import detect_layers

    if out.suffix != ".npz":
        raise InputError(out, "output must end in .npz")
    vol = load_volume(volume, spacing=spacing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ilm, bm = detect_layers(vol.data)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
    with atomic_path(out, protect=(volume,)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, ilm=ilm.astype(np.float32), bm=bm.astype(np.float32))
    found = int(np.isfinite(bm).any(axis=1).sum())
    console.print(
        f"wrote {out}  ilm/bm {list(bm.shape)}  retina found in {found}/{len(bm)} B-scans"
    )


@command()
def patches(
    data: Annotated[list[Path], typer.Argument(help="Healthy volumes/B-scan images or folders.")],
    preview: Annotated[Path, typer.Option("--preview", help="PNG to write the preview to.")],
    n_patches: Annotated[int, typer.Option("--n", help="Patches in the grid.")] = 64,
    patch_size: Annotated[int, typer.Option("--patch-size", help="Patch size (pixels).")] = 64,
    flatten: Annotated[
        bool, typer.Option("--flatten/--no-flatten", help="Flatten B-scans on BM.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the draw.")] = 0,
) -> None:
    """Preview sampled training patches and the retina mask over a few B-scans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from octanomaly.data.healthy import load_healthy
    from octanomaly.io.atomic import atomic_path
    from octanomaly.transforms.preprocess import PreprocessingConfig

    if preview.suffix.lower() != ".png":
        raise InputError(preview, "preview must end in .png")
    cfg = PreprocessingConfig(patch_size=patch_size, flatten=flatten)
    train, _ = load_healthy(data, cfg, val_fraction=0.0, seed=seed)
    if train.n_positions == 0:
        raise InputError(data[0], "no retina patches found in the data")
    x = train.sample(n_patches, torch.Generator().manual_seed(seed))[:, 0].numpy()
    k = int(np.ceil(np.sqrt(n_patches)))
    n_show = min(3, len(train))
    rng = np.random.default_rng(seed)
    show = rng.choice(len(train), n_show, replace=False)
    fig = plt.figure(figsize=(12, 4 + 3 * n_show))
    grid = fig.add_gridspec(1 + n_show, 1, height_ratios=[4] + [3] * n_show)
    ax = fig.add_subplot(grid[0])
    canvas = np.full((k * (patch_size + 2), k * (patch_size + 2)), 1.0)
    for i, p in enumerate(x):
        r, c = divmod(i, k)
        canvas[r * (patch_size + 2) : r * (patch_size + 2) + patch_size,
               c * (patch_size + 2) : c * (patch_size + 2) + patch_size] = p  # fmt: skip
    ax.imshow(canvas, cmap="gray", vmin=-1, vmax=1)
    ax.set_title(f"{n_patches} training patches ({patch_size} px) from {len(train)} B-scans")
    ax.axis("off")
    for j, b in enumerate(show):
        ax = fig.add_subplot(grid[1 + j])
        img = train.images[b].numpy()
        ax.imshow(img, cmap="gray", vmin=-1, vmax=1)
        ax.contour(train.masks[b].numpy(), levels=[0.5], colors="c", linewidths=0.8)
        ax.set_title(train.sources[b], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(preview) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    console.print(f"wrote {preview}  ({train.n_positions} valid patch positions)")
