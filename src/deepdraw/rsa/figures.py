"""Figures of an RSA run (Agg canvas, no pyplot state): percentile RDMs, oracle similarity, CKA and
decoding errors vs depth, t-SNE grids (:func:`write_figures`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .modelinfo import ModelInfo
from .plan import Results, RsaPlan
from .tsne import plot_tsne_grid


def _figure(nrow: int, ncol: int, w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncol, h * nrow), layout="constrained")
    return fig, fig.subplots(nrow, ncol, squeeze=False)


def plot_rdms(images: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Percentile RDM of every layer (name -> square image), one panel each."""
    names = list(images)
    ncol = min(5, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = _figure(nrow, ncol, 2.4, 2.5)
    im = None
    for ax, name in zip(axes.ravel(), names):
        im = ax.imshow(images[name], cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="percentile", shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def _group_lines(df: pd.DataFrame, x: str, y: str):
    """(label, x, mean, std) per (family, task, trained) over seeds."""
    for (fam, task, trained), g in df.groupby(["family", "task", "trained"], sort=True):
        s = g.groupby(x, sort=True)[y].agg(["mean", "std"]).reset_index()
        yield (
            f"{fam} {task} {'trained' if trained else 'untrained'}",
            bool(trained),
            s[x].to_numpy(),
            s["mean"].to_numpy(),
            s["std"].fillna(0).to_numpy(),
        )


def plot_oracle(df: pd.DataFrame, inputs: pd.DataFrame, path: Path) -> Path:
    """Similarity to the category oracle (Pearson r, Kendall tau-b) vs relative depth."""
    fig, axes = _figure(1, 2, 5.0, 3.8)
    for ax, col, lab in zip(
        axes[0], ("oracle_r", "oracle_tau_b"), ("Pearson r with oracle", "Kendall tau-b with oracle")
    ):
        for name, trained, x, m, s in _group_lines(df, "relative_depth", col):
            ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, ls="-" if trained else "--", label=name)
        for (_, r), mk in zip(inputs.iterrows(), "xP*D^v<>"):
            ax.scatter([0.0], [r[col]], marker=mk, s=30, zorder=5, color="k", label=f"input: {r['layer']}")
        ax.set_xlabel("relative depth (layer / n layers)")
        ax.set_ylabel(lab)
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def plot_cka(df: pd.DataFrame, kind: str, path: Path) -> Path:
    """CKA per layer, one panel per family: mean over seeds, band = min..max, thin lines = seeds."""
    fams = sorted(df["family"].unique())
    fig, axes = _figure(1, len(fams), 4.2, 3.4)
    for ax, fam in zip(axes[0], fams):
        d = df[df["family"] == fam]
        for task, g in d.groupby("task_a"):
            s = g.groupby("layer_index")["cka"].agg(["mean", "min", "max"]).reset_index()
            x = s["layer_index"].to_numpy()
            (line,) = ax.plot(x, s["mean"], marker="o", ms=3, label=f"{task} (n={g['seed'].nunique()})")
            ax.fill_between(x, s["min"], s["max"], alpha=0.2, color=line.get_color())
            for _, sg in g.groupby("seed"):
                sg = sg.sort_values("layer_index")
                ax.plot(sg["layer_index"], sg["cka"], lw=0.5, alpha=0.5, color=line.get_color())
        ticks = d.drop_duplicates("layer_index").sort_values("layer_index")
        ax.set_xticks(ticks["layer_index"].to_numpy())
        ax.set_xticklabels(ticks["layer"].to_list(), rotation=60, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(fam, fontsize=9)
        ax.set_ylabel(f"linear CKA, {kind.replace('_', ' ')}")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def plot_decoding(df: pd.DataFrame, path: Path) -> Path:
    """Test errors of the population decoders vs relative depth."""
    cols = [
        ("position_error_cm", "position error (cm)"),
        ("direction_error_deg", "direction error (deg)"),
        ("speed_rmse", "speed RMSE (cm/s)"),
    ]
    fig, axes = _figure(1, 3, 4.0, 3.4)
    for ax, (col, lab) in zip(axes[0], cols):
        for name, trained, x, m, s in _group_lines(df, "relative_depth", col):
            ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, ls="-" if trained else "--", label=name)
        ax.set_xlabel("relative depth")
        ax.set_ylabel(lab)
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_figures(
    out: Path,
    models: list[ModelInfo],
    plan: RsaPlan,
    acc: Results,
    odf: pd.DataFrame,
    cdf: pd.DataFrame,
    ddf: pd.DataFrame,
) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    if not odf.empty:
        layers_df = odf[odf["family"] != "input"]
        figures["oracle_similarity"] = plot_oracle(
            layers_df, odf[odf["family"] == "input"], out / "oracle_similarity.png"
        )
    for kind, g in cdf.groupby("comparison"):
        figures[f"cka_{kind}"] = plot_cka(g, kind, out / f"cka_{kind}.png")
    if not ddf.empty:
        figures["decoding"] = plot_decoding(ddf, out / "decoding.png")
    if acc.input_images:
        figures["rdms/inputs"] = plot_rdms(
            acc.input_images, "input representations (percentile RDMs)", out / "rdms_inputs.png"
        )
    tsne_labels = plan.labels[plan.tsne_sub] if plan.tsne_sub is not None else None
    if acc.input_tsne and tsne_labels is not None:
        plot_tsne_grid(acc.input_tsne, tsne_labels, "input representations (t-SNE)", out / "tsne_inputs.png")
        figures["tsne/inputs"] = out / "tsne_inputs.png"
    for m in models:
        if acc.rdm_images[m.name]:
            figures[f"rdms/{m.name}"] = plot_rdms(
                acc.rdm_images[m.name], f"{m.name} ({m.label})", out / f"rdms_{_safe(m.name)}.png"
            )
        if acc.tsne_embs[m.name] and tsne_labels is not None:
            p = out / f"tsne_{_safe(m.name)}.png"
            plot_tsne_grid(acc.tsne_embs[m.name], tsne_labels, f"{m.name} ({m.label})", p)
            figures[f"tsne/{m.name}"] = p
    return figures
