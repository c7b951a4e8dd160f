"""Figures of ``deepdraw predict``: the layer-by-model heat map and the best layer per neuron."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import store


def _subplots(figsize: tuple[float, float]):
    """A figure of its own (not pyplot's: the caller's matplotlib backend stays as it is) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    tmp = store.tmp_path_for(path)
    fig.savefig(tmp, dpi=120, format="png")
    store.atomic_replace(tmp, path)
    return path


def heatmap_figure(summary: pd.DataFrame, path: Path) -> Path:
    """Median explained variance over neurons: one row per model file, one column per layer index."""
    models = list(dict.fromkeys(summary["model"]))
    L = int(summary["layer_index"].max()) + 1
    grid = np.full((len(models), L), np.nan)
    for r in summary.itertuples():
        grid[models.index(r.model), int(r.layer_index)] = r.median
    names = summary.drop_duplicates("layer_index").set_index("layer_index")["layer"]
    fig, ax = _subplots(figsize=(4.5 + 0.75 * L, 1.4 + 0.35 * len(models)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(models)), [m if len(m) <= 44 else "..." + m[-41:] for m in models], fontsize=7)
    ax.set_xticks(range(L), [str(names.get(i, i)) for i in range(L)], rotation=30, fontsize=8)
    ax.set_xlabel("layer")
    fig.colorbar(im, ax=ax, label="median EV")
    ax.set_title("neurons predicted from each layer (cross-validated)", fontsize=9)
    return _save(fig, path)


def best_layer_figure(best: pd.DataFrame, layers: dict[str, list[str]], path: Path) -> Path:
    """Per model file: how many neurons each layer predicts best."""
    models = list(layers)
    L = max(len(v) for v in layers.values())
    fig, ax = _subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        counts = np.bincount(best.loc[best["model"] == m, "layer_index"].astype(int), minlength=L)
        ax.bar(np.arange(L) + i * width, counts, width, label=m[-40:])
    ax.set_xlabel("best layer (0 = input)")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=6)
    return _save(fig, path)
