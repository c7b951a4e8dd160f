"""Figures of ``deepdraw predict``: the layer-by-model heat map, the best layer per neuron, trained vs
untrained per model and, with repeated trials, explained variance against the noise ceiling.

:func:`draw_figures` draws them all from ``predict.h5`` (:class:`~deepdraw.encode.results.PredictResults`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import store
from .results import PredictResults

FIGURES = ("heatmap.png", "best_layer.png", "trained_untrained.png", "noise_ceiling.png")
"""File names of the figures in a predict folder, in the order of the report."""


def _subplots(figsize: tuple[float, float]):
    """A figure of its own (not pyplot's: the caller's matplotlib backend stays as it is) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    return store.save_figure_atomic(fig, path, dpi=120, format="png")


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


def trained_untrained_figure(summary: pd.DataFrame, pairs: list[tuple[str, str]], path: Path) -> Path:
    """Median explained variance per layer: each trained model file (solid) and its untrained control
    (dashed, same colour). ``summary``: :meth:`PredictResults.summary`."""
    fig, ax = _subplots(figsize=(6.4, 3.4))
    colors = [f"C{i % 10}" for i in range(len(pairs))]
    ticks: dict[int, str] = {}
    for (tr, un), c in zip(pairs, colors):
        for key, style, label in ((tr, "-o", tr[-36:]), (un, "--x", "untrained")):
            s = summary[summary["model"] == key].sort_values("layer_index")
            ax.plot(s["layer_index"], s["median"], style, color=c, ms=4, label=label)
            ticks.update(
                {int(i): str(n) for i, n in zip(s["layer_index"], s["layer"]) if int(i) not in ticks}
            )
    ax.set_xticks(sorted(ticks), [ticks[i] for i in sorted(ticks)], rotation=30, fontsize=8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("median EV over neurons")
    ax.set_title("trained (solid) vs untrained control (dashed)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def ceiling_figure(ev: np.ndarray, ceiling: np.ndarray, label: str, path: Path) -> Path:
    """Per neuron: explained variance of one model layer (``label``) against its split-half noise
    ceiling, with the diagonal (a model at the ceiling predicts all that repeats)."""
    fig, ax = _subplots(figsize=(4.2, 4.0))
    ok = np.isfinite(ev) & np.isfinite(ceiling)
    ax.scatter(ceiling[ok], ev[ok], s=9, alpha=0.7)
    hi = float(max(np.max(ceiling[ok], initial=0.0), np.max(ev[ok], initial=0.0), 0.05)) * 1.05
    lo = float(min(np.min(ev[ok], initial=0.0), 0.0))
    ax.plot([0, hi], [0, hi], color="0.4", lw=0.8, ls="--")
    ax.set_xlim(min(lo, 0), hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("noise ceiling (split-half)")
    ax.set_ylabel("EV")
    ax.set_title(label if len(label) <= 48 else "..." + label[-45:], fontsize=8)
    return _save(fig, path)


def best_model_layer(summary: pd.DataFrame) -> tuple[str, str] | None:
    """(model file, layer) with the highest median EV, among trained model files when there are any."""
    s = summary[summary["trained"]] if summary["trained"].any() else summary
    s = s[np.isfinite(s["median"])]
    if s.empty:
        return None
    r = s.loc[s["median"].idxmax()]
    return str(r["model"]), str(r["layer"])


def _plans(res: PredictResults) -> dict:
    """File name -> function drawing it, for the figures of :data:`FIGURES` that apply to ``res``."""
    summary = res.summary(0.0)
    pairs = res.pairs()
    todo = {
        "heatmap.png": lambda p: heatmap_figure(summary, p),
        "best_layer.png": lambda p: best_layer_figure(res.best(), res.layers, p),
    }
    if pairs:
        todo["trained_untrained.png"] = lambda p: trained_untrained_figure(summary, pairs, p)
    top = best_model_layer(summary)
    if res.has_ceiling and top is not None:
        label = f"{top[0]}: {top[1]}"
        todo["noise_ceiling.png"] = lambda p: ceiling_figure(res.layer_ev(*top), res.ceiling, label, p)
    return todo


def applicable_figures(res: PredictResults) -> list[str]:
    """The names of :data:`FIGURES` that apply: trained vs untrained needs a (trained, untrained) pair
    of model files, the noise ceiling needs repeated trials."""
    return list(_plans(res))


def draw_figures(res: PredictResults, folder: Path, overwrite: bool = False) -> list[Path]:
    """The :func:`applicable_figures` into ``folder``; existing files are kept unless ``overwrite``.
    Returns the files written."""
    written = []
    for name, draw in _plans(res).items():
        if overwrite or not (folder / name).exists():
            written.append(draw(folder / name))
    return written
