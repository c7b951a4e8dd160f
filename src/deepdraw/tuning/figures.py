"""Figures of the tuning stage (Agg canvas, no pyplot state): per model, score distributions, preferred
directions and example tuning curves; per architecture, over seeds (mean and 95 % CI), the fractions of
tuned units (paper Fig. 5C/D), the 90th percentiles, and preferred-direction uniformity and invariance
(Figs. 7-8), with the layers where the paired tests over seeds are significant marked (Bonferroni
p < 0.05: ``*`` ART vs TDT, ``+`` trained vs untrained).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..settings import TuningConfig
from ..store import save_figure_atomic
from .models import MODEL_NAMES, TUNING_TYPES, TYPE_NAMES
from .summary import direction_summary, layer_scores, pd_histogram

if TYPE_CHECKING:
    from .results import LayerFit, ModelResult

__all__ = ["write_figures", "safe_name"]


def safe_name(name: str) -> str:
    """A model or architecture name as a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _new_figure(w: float, h: float, **adjust: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    kw = {"left": 0.07, "right": 0.98, "bottom": 0.15, "top": 0.85, "wspace": 0.35, "hspace": 0.6}
    kw.update(adjust)
    fig.subplots_adjust(**kw)
    return fig


def _save(fig: Any, path: Path) -> Path:
    return save_figure_atomic(fig, path, format="png")


def _main_orientation(lf: LayerFit) -> str:
    return "horizontal" if "horizontal" in lf.orient else next(iter(lf.orient))


def _fig_scores(r: ModelResult, t: TuningConfig, path: Path) -> Path:
    """Distributions of test scores per layer and tuning type (paper Fig. 5E)."""
    fig = _new_figure(13, 6.5, bottom=0.12, top=0.9, hspace=0.55)
    labels = [lf.name for lf in r.layers]
    for k, ttype in enumerate(TYPE_NAMES):
        ax = fig.add_subplot(2, 4, k + 1)
        for lf in r.layers:
            sc, dead = layer_scores(lf, _main_orientation(lf), ttype, t)
            v = sc[np.isfinite(sc) & ~dead]
            v = v[v >= t.exclude_below]
            if v.size >= 2 and np.ptp(v) > 0:
                parts = ax.violinplot([v], positions=[lf.index], widths=0.8, showmedians=True)
                for body in parts["bodies"]:
                    body.set_alpha(0.5)
            elif v.size:
                ax.plot([lf.index] * v.size, v, "k_", ms=8)
        ax.axhline(t.r2_threshold, color="0.5", lw=0.8, ls="--")
        ax.set_title(ttype)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_ylim(min(t.exclude_below, 0) - 0.02, 1.02)
        if k % 4 == 0:
            ax.set_ylabel("test R$^2$ (labels: 2(AUC-0.5))", fontsize=8)
    fig.suptitle(f"{r.name} ({r.task}, {'trained' if r.trained else 'untrained'})", fontsize=9)
    return _save(fig, path)


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 5)
    return math.ceil(n / cols), cols


def _fig_pd(r: ModelResult, t: TuningConfig, path: Path) -> Path:
    """Polar histograms of the preferred directions of direction-tuned units per layer (Fig 7)."""
    nr, nc = _grid(len(r.layers))
    fig = _new_figure(
        2.4 * nc, 3.0 * nr, left=0.04, right=0.96, bottom=0.05, top=1 - 0.75 / (3.0 * nr), wspace=0.5
    )
    width = 2 * np.pi / t.pd_bins
    centres = -np.pi + width * (np.arange(t.pd_bins) + 0.5)
    for k, lf in enumerate(r.layers):
        ax = fig.add_subplot(nr, nc, k + 1, projection="polar")
        ds = direction_summary(lf, _main_orientation(lf), t)
        counts = pd_histogram(ds["pd"], t.pd_bins)
        ax.bar(centres, counts, width=width, color="tab:blue", alpha=0.7, edgecolor="k", lw=0.3)
        ax.set_title(f"{lf.name}\nn={counts.sum()}, dev={ds['uniformity']:.2f}", fontsize=7, pad=12)
        ax.tick_params(labelsize=5)
        ax.set_yticklabels([])
    fig.suptitle(f"preferred directions, {r.name}", fontsize=9)
    return _save(fig, path)


def _fig_curves(r: ModelResult, t: TuningConfig, path: Path) -> Path:
    """Example direction tuning curves (polar): the best direction unit of each layer."""
    nr, nc = _grid(len(r.layers))
    fig = _new_figure(
        2.4 * nc, 3.0 * nr, left=0.04, right=0.96, bottom=0.05, top=1 - 0.75 / (3.0 * nr), wspace=0.5
    )
    width = 2 * np.pi / t.pd_bins
    bc = -np.pi + width * (np.arange(t.pd_bins) + 0.5)
    th = np.linspace(-np.pi, np.pi, 181)
    mi = MODEL_NAMES.index(TUNING_TYPES["dir"])
    for k, lf in enumerate(r.layers):
        ax = fig.add_subplot(nr, nc, k + 1, projection="polar")
        of = lf.orient[_main_orientation(lf)]
        r2 = of.r2("dir")
        ax.tick_params(labelsize=5)
        if not np.isfinite(r2).any():
            ax.set_title(f"{lf.name}\n(no fit)", fontsize=7, pad=12)
            continue
        u = int(np.nanargmax(r2))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = of.curve_sum[:, u] / of.curve_n
        c = of.coef[u, mi]
        fit = c[0] * np.cos(th) + c[1] * np.sin(th) + c[2]
        lo = np.nanmin(np.concatenate([mean[np.isfinite(mean)], fit]))
        hi = np.nanmax(np.concatenate([mean[np.isfinite(mean)], fit]))
        span = hi - lo if hi > lo else 1.0
        ok = np.isfinite(mean)
        ax.plot(np.append(bc[ok], bc[ok][:1]), np.append((mean[ok] - lo) / span, (mean[ok][:1] - lo) / span), "o-",
                ms=2, lw=0.8, label="data")  # fmt: skip
        ax.plot(th, (fit - lo) / span, "r-", lw=1, label="fit")
        ax.set_yticklabels([])
        ax.set_title(f"{lf.name} unit {u}\nR$^2$={r2[u]:.2f}", fontsize=7, pad=12)
    fig.suptitle(f"direction tuning curves, {r.name}", fontsize=9)
    return _save(fig, path)


_MARKS = (
    ("art_vs_tdt", None, "*", "tab:red", 0.97),
    ("trained_vs_untrained", "art", "+", "tab:blue", 0.90),
    ("trained_vs_untrained", "tdt", "+", "tab:orange", 0.83),
)
"""Significance marks: comparison, task (None: any), symbol, colour, height (axes fraction)."""


def _plot_groups(ax: Any, g: pd.DataFrame, title: str, stats: pd.DataFrame | None = None) -> None:
    """Mean +- 95 % CI over seeds per layer, one line per (task, trained); layers where a paired test of
    ``stats`` (already restricted to this panel's metric, type and orientation) is significant are marked."""
    for (task, trained), gg in g.groupby(["task", "trained"], sort=True):
        gg = gg.sort_values("layer_index")
        x = gg["layer_index"].to_numpy()
        m = gg["mean"].to_numpy(float)
        lo, hi = gg["ci_low"].to_numpy(float), gg["ci_high"].to_numpy(float)
        err = np.vstack([np.where(np.isfinite(lo), m - lo, 0), np.where(np.isfinite(hi), hi - m, 0)])
        ax.errorbar(x, m, yerr=err, marker="o", ms=3, capsize=2, lw=1,
                    label=f"{task} {'trained' if trained else 'untrained'}")  # fmt: skip
    if stats is not None and not stats.empty:
        for comparison, task, sym, colour, y in _MARKS:
            sel = stats[(stats["comparison"] == comparison) & stats["significant"].astype(bool)]
            if task is not None:
                sel = sel[sel["task"] == task]
            for li in sorted(set(sel["layer_index"].astype(int))):
                ax.text(li, y, sym, color=colour, ha="center", va="top", fontsize=9,
                        transform=ax.get_xaxis_transform())  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("layer (0 = input)", fontsize=7)
    ax.tick_params(labelsize=6)


def _panel_stats(stats: pd.DataFrame | None, metric: str, ttype: str, o: str) -> pd.DataFrame | None:
    if stats is None or stats.empty:
        return None
    return stats[(stats["metric"] == metric) & (stats["tuning_type"] == ttype) & (stats["orientation"] == o)]


def _fig_group_directions(
    arch: str, groups: pd.DataFrame, path: Path, stats: pd.DataFrame | None = None
) -> Path:
    """Uniformity and invariance of preferred directions per layer, mean +- 95% CI over seeds (paper Fig. 7D-E)."""
    fig = _new_figure(12, 3.6, bottom=0.15, top=0.85, wspace=0.3)
    panels = [("uniformity", "horizontal", "PD deviation from uniform (horizontal)"),
              ("invariance", "horizontal", "PD invariance MAD (horizontal), rad"),
              ("invariance", "vertical", "PD invariance MAD (vertical), rad")]  # fmt: skip
    for k, (metric, o, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        sel = groups[(groups.metric == metric) & (groups.orientation == o)]
        _plot_groups(ax, sel, title, _panel_stats(stats, metric, "dir", o))
        if k == 0:
            ax.legend(fontsize=6)
    fig.suptitle(f"{arch}   (* ART vs TDT, + trained vs untrained: paired t over seeds, Bonferroni p < 0.05)",
                 fontsize=9)  # fmt: skip
    return _save(fig, path)


def _fig_group_types(
    arch: str, groups: pd.DataFrame, path: Path, metric: str, label: str, stats: pd.DataFrame | None = None
) -> Path:
    """One panel per tuning type: ``metric`` (``q90`` or ``fraction_tuned``) per layer, mean +- 95% CI
    over seeds (``fraction_tuned``: paper Fig. 5C/D)."""
    fig = _new_figure(13, 6.5, bottom=0.1, top=0.9, hspace=0.5)
    for k, ttype in enumerate(TYPE_NAMES):
        ax = fig.add_subplot(2, 4, k + 1)
        o = "all" if ttype == "labels" else "horizontal"
        sel = groups[(groups.metric == metric) & (groups.tuning_type == ttype) & (groups.orientation == o)]
        if sel.empty and o == "horizontal":
            o = "vertical"
            sel = groups[
                (groups.metric == metric) & (groups.tuning_type == ttype) & (groups.orientation == o)
            ]
        _plot_groups(ax, sel, f"{label} {ttype}", _panel_stats(stats, metric, ttype, o))
        if metric == "fraction_tuned":
            ax.set_ylim(-0.02, 1.1)
        if k == 0:
            ax.legend(fontsize=6)
    fig.suptitle(f"{arch}   (* ART vs TDT, + trained vs untrained: paired t over seeds, Bonferroni p < 0.05)",
                 fontsize=9)  # fmt: skip
    return _save(fig, path)


def write_figures(
    results: Sequence[ModelResult],
    tables: Mapping[str, pd.DataFrame],
    t: TuningConfig,
    fig_dir: Path,
    quiet: bool = False,
) -> list[Path]:
    """All PNG figures of a tuning run: three per model, three per architecture (over seeds)."""
    out: list[Path] = []
    groups = tables.get("groups", pd.DataFrame())
    stats = tables.get("stats", pd.DataFrame())
    archs = sorted(groups["arch"].unique()) if not groups.empty else []
    with tqdm(
        total=3 * len(results) + 3 * len(archs), desc="tuning figures", disable=quiet, leave=False
    ) as bar:
        for r in results:
            s = safe_name(r.name)
            for fn, suffix in ((_fig_scores, "scores"), (_fig_pd, "pd"), (_fig_curves, "curves")):
                out.append(fn(r, t, fig_dir / f"{s}_{suffix}.png"))
                bar.update(1)
        for arch in archs:
            g = groups[groups.arch == arch]
            st = stats[stats.arch == arch] if not stats.empty else None
            a = safe_name(arch)
            out.append(_fig_group_directions(arch, g, fig_dir / f"{a}_directions.png", st))
            out.append(_fig_group_types(arch, g, fig_dir / f"{a}_q90.png", "q90", "q90", st))
            out.append(
                _fig_group_types(
                    arch, g, fig_dir / f"{a}_fractions.png", "fraction_tuned", "tuned fraction", st
                )
            )
            bar.update(3)
    return out
