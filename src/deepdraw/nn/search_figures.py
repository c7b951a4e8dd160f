"""Figures of the architecture search (``search/search_results.csv``, :mod:`deepdraw.nn.search_stage`):

- :func:`art_vs_tdt_figure`: the paper's Fig. 3D, the test performance of every candidate, ART accuracy
  against TDT position error, one colour per family, the winners circled;
- :func:`depth_figure`: the paper's Fig. 3—S1, per task: test performance against depth (layers of the
  network) and against parameters (readout not counted), and the overfitting (train minus test
  performance) against depth.

Both read the long table (one row per candidate and task); :func:`search_figures` writes those the table
can make and returns ``(path, caption)`` pairs for the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepdraw.report.common import FAM_COLOR, FAM_LABEL, TASK_LABEL
from deepdraw.store import save_figure_atomic

__all__ = ["FAMILY_LABELS", "spearman", "art_vs_tdt", "art_vs_tdt_figure", "depth_figure", "search_figures"]

FAMILY_LABELS = FAM_LABEL  # the report's one definition of the names, colours and task labels
_COLORS = FAM_COLOR
_TASK_LABEL = TASK_LABEL


def _figure(w: float, h: float):
    """A matplotlib figure on the Agg canvas, without pyplot (no global state, quick to import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary name, then a rename)."""
    return save_figure_atomic(fig, path)


def _families(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["family"].astype(str)))
    return [f for f in _COLORS if f in present] + [f for f in present if f not in _COLORS]


def _performance(task: str, split: str = "test") -> tuple[str, str, float]:
    """``(column, axis label, scale)`` of a task's performance: ART accuracy in %, TDT error in cm."""
    if task == "art":
        return f"{split}_accuracy", "ART test accuracy (%)" if split == "test" else "ART accuracy (%)", 100.0
    return f"{split}_error_cm", f"{_TASK_LABEL.get(task, task)} test position error (cm)", 1.0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of the finite pairs (NaN below 3 pairs or for a constant side)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(spearmanr(x[ok], y[ok]).statistic)


def art_vs_tdt(table: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate with both tasks: ``family``, ``name``, ``art`` (test accuracy), ``tdt`` (test
    position error, cm), ``best``."""
    art = table[table["task"] == "art"].set_index("name")
    tdt = table[table["task"] == "tdt"].set_index("name")
    both = art.index.intersection(tdt.index)
    best = art.loc[both, "best"].astype(bool) if "best" in art.columns else pd.Series(False, index=both)
    return pd.DataFrame(
        {
            "family": art.loc[both, "family"].astype(str),
            "name": both,
            "art": pd.to_numeric(art.loc[both, "test_accuracy"], errors="coerce"),
            "tdt": pd.to_numeric(tdt.loc[both, "test_error_cm"], errors="coerce"),
            "best": best,
        }
    ).reset_index(drop=True)


def art_vs_tdt_figure(table: pd.DataFrame, path: Path) -> Path:
    """Fig. 3D: ART test accuracy (x) against TDT test position error (y, log) of every candidate trained on
    both tasks; the winners of each family circled; Spearman's rho per family in the legend."""
    d = art_vs_tdt(table)
    fig = _figure(5.6, 4.4)
    ax = fig.subplots()
    for fam in _families(d):
        g = d[d["family"] == fam]
        rho = spearman(g["art"], g["tdt"])
        lab = (
            f"{FAMILY_LABELS.get(fam, fam)} (n={len(g)}, ρ={rho:.2f})"
            if math.isfinite(rho)
            else (f"{FAMILY_LABELS.get(fam, fam)} (n={len(g)})")
        )
        ax.scatter(100 * g["art"], g["tdt"], s=22, color=_COLORS.get(fam, "#555"), alpha=0.8, label=lab)
        w = g[g["best"]]
        ax.scatter(100 * w["art"], w["tdt"], s=90, facecolors="none", edgecolors="k", lw=1.2)
    rho = spearman(d["art"], d["tdt"])
    ax.set_xlabel("ART test accuracy (%)")
    ax.set_ylabel("TDT test position error (cm)")
    if (d["tdt"] > 0).any():
        ax.set_yscale("log")
    ax.axvline(5.0, color="0.6", lw=0.8, ls=":")
    ax.set_title(
        "Architecture search: ART vs TDT"
        + (f" (all candidates: Spearman ρ = {rho:.2f})" if math.isfinite(rho) else ""),
        fontsize=10,
    )
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _overfitting(g: pd.DataFrame, task: str) -> pd.Series:
    """Train minus test performance: accuracy points for ART, test minus train error (cm) for TDT, so that
    positive is overfitting for both."""
    if task == "art":
        return 100 * (pd.to_numeric(g["train_accuracy"]) - pd.to_numeric(g["test_accuracy"]))
    return pd.to_numeric(g["test_error_cm"]) - pd.to_numeric(g["train_error_cm"])


def depth_figure(table: pd.DataFrame, path: Path) -> Path:
    """Fig. 3—S1: per task (rows), test performance against depth and against parameters without the
    readout, and overfitting (train minus test) against depth; one colour per family."""
    tasks = [t for t in ("art", "tdt", "tdt_pv") if t in set(table["task"].astype(str))]
    fig = _figure(12, 3.4 * len(tasks))
    axes = fig.subplots(len(tasks), 3, squeeze=False)
    fams = _families(table)
    for row, task in zip(axes, tasks, strict=True):
        col, label, scale = _performance(task)
        t = table[table["task"] == task]
        for k, fam in enumerate(fams):
            g = t[t["family"].astype(str) == fam]
            if g.empty:
                continue
            c = _COLORS.get(fam, "#555")
            x = g["depth"].astype(float) + 0.12 * (k - (len(fams) - 1) / 2)
            y = scale * pd.to_numeric(g[col], errors="coerce")
            row[0].scatter(x, y, s=16, color=c, alpha=0.75, label=FAMILY_LABELS.get(fam, fam))
            row[1].scatter(g["parameters_no_readout"], y, s=16, color=c, alpha=0.75)
            row[2].scatter(x, _overfitting(g, task), s=16, color=c, alpha=0.75)
        for ax in row:
            ax.tick_params(labelsize=8)
        row[0].set_xlabel("depth (layers)")
        row[0].set_ylabel(label)
        row[1].set_xscale("log")
        row[1].set_xlabel("parameters (readout not counted)")
        row[2].set_xlabel("depth (layers)")
        row[2].axhline(0, color="0.6", lw=0.8)
        row[2].set_ylabel("train − test accuracy (points)" if task == "art" else "test − train error (cm)")
        if task != "art":
            row[0].set_yscale("log")
            row[1].set_yscale("log")
        row[0].legend(fontsize=7, frameon=False)
        row[0].set_title(f"{_TASK_LABEL.get(task, task)}: performance vs depth", fontsize=9)
        row[1].set_title("performance vs parameters", fontsize=9)
        row[2].set_title("overfitting vs depth", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def search_figures(table: pd.DataFrame, out_dir: Path) -> list[tuple[Path, str]]:
    """The figures ``table`` can make, written to ``out_dir``: ``[(path, caption)]``."""
    out: list[tuple[Path, str]] = []
    if table.empty or not {"family", "task", "name"} <= set(table.columns):
        return out
    n = table.groupby("family")["name"].nunique().to_dict()
    counts = ", ".join(f"{FAMILY_LABELS.get(f, f)} {n[f]}" for f in _families(table))
    if not art_vs_tdt(table).empty:
        p = art_vs_tdt_figure(table, Path(out_dir) / "search_art_vs_tdt.png")
        out.append(
            (
                p,
                f"Paper Fig. 3D: test performance of every candidate of the architecture search ({counts}), "
                "ART accuracy against TDT position error; circled: the winner of each family (chosen on the "
                'validation metric unless [search] select_by = "test"); ρ: Spearman\'s rank correlation '
                "(the paper: ART and TDT performance correlate across architectures, i.e. a negative ρ "
                "between accuracy and error).",
            )
        )
    if {"depth", "parameters_no_readout"} <= set(table.columns):
        p = depth_figure(table, Path(out_dir) / "search_depth.png")
        out.append(
            (
                p,
                "Paper Fig. 3—S1: test performance against depth (layers of the network: 2N for "
                "spatial-temporal, N for spatiotemporal, N + 1 for the LSTM) and against parameters (readout "
                "not counted), and overfitting (train minus test performance) against depth, one row per "
                "task (the paper: depth matters most; shallow networks overfit more).",
            )
        )
    return out
