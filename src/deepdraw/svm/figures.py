"""Figures of the SVM stage: pairwise accuracy matrices, multi-class accuracy per subset, the linear
TDT baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import LETTERS, N_CLASSES
from ..store import save_figure_atomic

__all__ = ["pairwise_figure", "multiclass_figure", "tdt_figure"]


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kw: Any):
    """A figure of its own (not pyplot's: the caller's matplotlib backend, e.g. a notebook's inline one,
    stays as it is) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig: Any, path: Path) -> None:
    save_figure_atomic(fig, path, dpi=130, bbox_inches="tight")


def pairwise_figure(path: Path, inputs: Sequence[str], mats: np.ndarray, subset: str) -> None:
    """Fig. 3B-like: the 20 x 20 matrix of best validation accuracy, one panel per input."""
    n = len(inputs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    im = None
    for k, key in enumerate(inputs):
        ax = axes[k // cols][k % cols]
        M = mats[k]
        im = ax.imshow(M, vmin=0.5, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(N_CLASSES), list(LETTERS), fontsize=7)
        ax.set_yticks(range(N_CLASSES), list(LETTERS), fontsize=7)
        iu = np.triu_indices(N_CLASSES, 1)
        v = M[iu][np.isfinite(M[iu])]
        ax.set_title(
            f"{key}\nval acc {100 * v.mean():.1f} ± {100 * v.std():.1f} % (n={v.size})" if v.size else key,
            fontsize=9,
        )
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="pairwise validation accuracy")
    fig.suptitle(f"Pairwise linear SVMs (subset: {subset})", fontsize=11)
    _save(fig, path)


def multiclass_figure(path: Path, df: Any) -> None:
    """Fig. 3C-like: one-vs-one test accuracy per input, for full variability and each subset."""
    inputs = list(dict.fromkeys(df["input"]))
    subsets = list(dict.fromkeys(df["subset"]))
    fig, ax = _subplots(figsize=(max(5.0, 0.9 * len(subsets) * max(1, len(inputs)) * 0.35 + 3), 3.8))
    width = 0.8 / max(1, len(inputs))
    x = np.arange(len(subsets))
    for k, key in enumerate(inputs):
        d = df[df["input"] == key].set_index("subset")
        vals = [100 * float(d.loc[s, "accuracy"]) if s in d.index else np.nan for s in subsets]
        ax.bar(x + (k - (len(inputs) - 1) / 2) * width, vals, width, label=key)
    chance = 100.0 / max(1, int(df["n_classes"].max()))
    ax.axhline(chance, color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks(
        x,
        subsets,
        rotation=45 if len(subsets) > 3 else 0,
        ha="right" if len(subsets) > 3 else "center",
        fontsize=8,
    )
    ax.set_ylabel("one-vs-one test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Multi-class linear SVM (one-vs-one) per input and suppressed latent", fontsize=10)
    _save(fig, path)


def tdt_figure(path: Path, decode: dict[str, Any]) -> None:
    """Linear TDT baseline: distribution of the 3-D test error and its mean per frame."""
    a = decode["arrays"]
    fig, (ax1, ax2) = _subplots(1, 2, figsize=(9, 3.4))
    edges = np.arange(61) * 0.1
    ax1.bar(edges[:-1], a["error_hist_0p1cm"], width=0.1, align="edge")
    ax1.axvline(decode["error_cm"], color="r", lw=1, label=f"mean {decode['error_cm']:.2f} cm")
    ax1.axvline(1.72, color="k", ls="--", lw=1, label="paper 1.72 cm")
    ax1.set_xlabel("3-D error per test frame (cm; last bin: beyond)")
    ax1.set_ylabel("frames")
    ax1.legend(fontsize=8)
    ax2.plot(a["error_cm_per_frame"])
    ax2.set_xlabel("frame")
    ax2.set_ylabel("mean error (cm)")
    fig.suptitle(
        f"Linear decoding of hand position from {decode['input']} (window {decode['window']})", fontsize=10
    )
    _save(fig, path)
