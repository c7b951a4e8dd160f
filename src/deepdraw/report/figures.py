"""Section 2: the paper's Figures 2-7 from this run (the stages' PNGs, plus training curves and
per-model test performance made here, and the search's figures).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

from ..paths import RunPaths
from .common import (
    FAM_COLOR,
    FAM_LABEL,
    PAPER_ART,
    PAPER_PV,
    PAPER_TDT,
    SHOWN_MODELS,
    TASK_LABEL,
    FigureGroup,
    FigureItem,
    RunView,
    describe_model,
    family_of,
    fmt_num,
    is_num,
    parse_model,
    png_size,
    read_csv,
    read_json,
)
from .facts import FAMILIES

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ own figures
def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _histories(rp: RunPaths) -> list[dict]:
    runs: list[dict] = []
    if not rp.models.is_dir():
        return runs
    for p in sorted([*rp.models.glob("*/metrics.json"), *rp.models.glob("tdt_pv/*/metrics.json")]):
        d = read_json(p)
        if not d or not isinstance(d.get("epochs"), list) or not d["epochs"]:
            continue
        name = str(d.get("model_name") or p.parent.name)
        task = str(d.get("task") or ("tdt_pv" if p.parent.parent.name == "tdt_pv" else "art"))
        runs.append(
            {"name": name, "task": task, "family": str(d.get("family") or family_of(name)), "h": d["epochs"]}
        )
    return runs


def plot_training_curves(runs: list[dict], task: str, path: Path) -> Path:
    """Loss and validation metric per epoch of every run of one task (train dashed, validation solid)."""
    metric = "accuracy" if task == "art" else "error_cm"
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    seen: set[str] = set()
    for r in runs:
        ep = [row.get("epoch", i + 1) for i, row in enumerate(r["h"])]
        col = FAM_COLOR.get(r["family"], "#555555")
        lab = FAM_LABEL.get(r["family"], r["family"]) if r["family"] not in seen else None
        seen.add(r["family"])
        for key, ls in (("train_loss", "--"), ("val_loss", "-")):
            y = [row.get(key, math.nan) for row in r["h"]]
            ax1.plot(ep, y, ls, color=col, lw=1, alpha=0.8, label=lab if key == "val_loss" else None)
        y = [row.get(f"val_{metric}", math.nan) for row in r["h"]]
        if metric == "accuracy":
            y = [100 * x if is_num(x) else math.nan for x in y]
        ax2.plot(ep, y, "-", color=col, lw=1, alpha=0.8)
        yt = [row.get(f"train_{metric}", math.nan) for row in r["h"]]
        if metric == "accuracy":
            yt = [100 * x if is_num(x) else math.nan for x in yt]
        ax2.plot(ep, yt, "--", color=col, lw=0.8, alpha=0.5)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (train --, validation —)")
    if task != "art":
        ax1.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)" if metric == "accuracy" else "hand position error (cm)")
    if metric != "accuracy":
        ax2.set_yscale("log")
    if seen:
        ax1.legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"{TASK_LABEL.get(task, task)}: training curves ({len(runs)} run{'s' if len(runs) != 1 else ''})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_test_performance(df, path: Path) -> Path:
    """Test accuracy (ART) / error (TDT, TDT-PV) of every model, trained and untrained, with the paper's value."""
    tasks = [t for t in ("art", "tdt", "tdt_pv") if t in set(df["task"].astype(str))]
    fig = _figure(3.6 * max(len(tasks), 1), 3.6)
    axes = fig.subplots(1, max(len(tasks), 1), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        col = "test_accuracy" if task == "art" else "test_error_cm"
        t = df[df["task"].astype(str) == task]
        fams = [f for f in (*FAMILIES, "temporal_spatial") if f in set(t["family"].astype(str))]
        fams += sorted(set(t["family"].astype(str)) - set(fams))
        paper = {"art": PAPER_ART, "tdt": PAPER_TDT, "tdt_pv": PAPER_PV}[task]
        for i, fam in enumerate(fams):
            g = t[t["family"].astype(str) == fam]
            for trained, marker in ((True, "o"), (False, "x")):
                y = [float(x) for x in g[g["_trained"] == trained].get(col, []) if is_num(x)]
                if task == "art":
                    y = [100 * x for x in y]
                xs = [i + (-0.12 if trained else 0.12)] * len(y)
                ax.scatter(
                    xs,
                    y,
                    marker=marker,
                    s=22,
                    color=FAM_COLOR.get(fam, "#555"),
                    alpha=0.85,
                    label=("trained" if trained else "untrained") if i == 0 else None,
                )
            if fam in paper:
                ax.hlines(paper[fam], i - 0.3, i + 0.3, color="k", lw=1.5, label="paper" if i == 0 else None)
        ax.set_xticks(
            range(len(fams)), [FAM_LABEL.get(f, f).replace("-", "-\n", 1) for f in fams], fontsize=8
        )
        ax.set_xlim(-0.6, len(fams) - 0.4)
        if task == "art":
            ax.set_ylabel("test accuracy (%)")
            ax.axhline(5.0, color="0.6", lw=0.8, ls=":")
        else:
            ax.set_ylabel("test position error (cm)")
            ax.set_yscale("log")
        ax.set_title(TASK_LABEL[task], fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path


RSA_CAPTIONS = (
    (
        r"^cka_trained_vs_untrained",
        "Fig. 4A (CKA)",
        "linear CKA between trained and untrained models, per layer",
    ),
    (r"^cka_art_vs_tdt", "Fig. 4F (CKA)", "linear CKA between ART- and TDT-trained models, per layer"),
    (r"^cka_", "Fig. 4A/F (CKA)", "linear CKA per layer"),
    (r"^tsne_inputs", "Fig. 4B / 4—S1A (t-SNE)", "t-SNE of the input representations, coloured by character"),
    (r"^tsne_", "Fig. 4B (t-SNE)", "t-SNE per layer, coloured by character"),
    (r"^rdms_inputs", "Fig. 4C (RDMs)", "percentile RDMs of the input representations"),
    (r"^rdms_", "Fig. 4C (RDMs)", "percentile RDMs per layer"),
    (
        r"^oracle_similarity",
        "Fig. 4D",
        "similarity of each layer's RDM to the category oracle vs relative depth",
    ),
    (r"^decoding", "Fig. 4E and Fig. 6", "population decoding of hand kinematics (ridge) per layer"),
)
TUNING_CAPTIONS = (
    (r"_scores$", "Fig. 5E", "test scores (R² / label index) per layer and tuning type"),
    (r"_curves$", "Fig. 5A–B", "polar tuning curves of the best direction-tuned unit per layer"),
    (r"_q90$", "Fig. 5F", "90th-percentile tuning scores per layer, mean and 95 % CI over seeds"),
    (
        r"_fractions$",
        "Fig. 5C–D",
        "fraction of tuned units per layer and tuning type, mean and 95 % CI over seeds; * ART vs TDT, "
        "+ trained vs untrained significant (paired t, Bonferroni)",
    ),
    (r"_pd$", "Fig. 7B–C", "preferred-direction histograms per layer"),
    (
        r"_directions$",
        "Fig. 7D–E",
        "uniformity of preferred directions (Fig. 7D) and their invariance across planes (Fig. 7E)",
    ),
)


def _model_of(stem: str) -> str | None:
    """The model (or architecture) name a stage figure is about, from its file name."""
    s = stem
    for pre in ("rdms_", "tsne_"):
        if s.startswith(pre):
            s = s[len(pre) :]
    for suf in ("_scores", "_curves", "_pd", "_q90", "_fractions", "_directions"):
        if s.endswith(suf):
            s = s[: -len(suf)]
    return s if parse_model(s) is not None else None


def _caption(stem: str, table: Sequence[tuple[str, str, str]]) -> tuple[str, int]:
    for k, (pat, fig, text) in enumerate(table):
        if re.search(pat, stem):
            model = _model_of(stem)
            who = f" — {model} ({describe_model(model)})" if model else ""
            return f"Paper {fig}: {text}{who}.", k
    return f"{stem} (no paper figure assigned).", len(table)


def _is_wide(w: int, h: int) -> bool:
    """Figures that get a whole row: wide panels (RDMs per layer) and large multi-panel figures."""
    return bool(h) and (w / h > 2.2 or w >= 1400)


def figures_dataset(run: RunView) -> FigureGroup:
    items, missing = [], []
    fixed = {
        "sample_train_0.png": "Paper Fig. 2: one training sample from pen path to proprioceptive inputs "
        "(character trajectory, augmented hand path in its plane, joint angles, muscle lengths and "
        "velocities).",
        "dataset_summary.png": "Paper Fig. 2 / Table 1: the assembled dataset (classes, planes, latents, "
        "movement durations).",
    }
    for name, cap in fixed.items():
        p = run.rp.figures / name
        if p.exists():
            items.append(FigureItem(run.copy_figure(p, "dataset"), cap, wide=True))
        else:
            missing.append(run.miss(f"figures/{name}", "not found (stage assemble)"))
    for p in run.pngs(run.rp.figures):
        if p.name not in fixed:
            items.append(
                FigureItem(run.copy_figure(p, "dataset"), f"Dataset figure {p.stem} (cf. paper Fig. 2).")
            )
    return FigureGroup("Figure 2 — the proprioceptive character dataset", "", items, missing)


def figures_svm(run: RunView) -> FigureGroup:
    items, missing = [], []
    pngs = run.pngs(run.rp.svm)
    if not pngs:
        missing.append(run.miss("svm/*.png", "no SVM figures (stage svm)"))
    for p in pngs:
        st = p.stem.lower()
        if "pair" in st or "matrix" in st:
            cap = "Paper Fig. 3B: pairwise linear SVM accuracy on the character pairs."
        elif "multi" in st or "ovo" in st:
            cap = "Paper Fig. 3C: multi-class (one-vs-one) SVM accuracy per input representation."
        elif "tdt" in st or "linear" in st or "regress" in st:
            cap = "Paper Fig. 3C (right): linear decoding of the hand position (TDT baseline)."
        else:
            cap = f"Paper Fig. 3B–C: SVM baseline ({p.stem})."
        items.append(FigureItem(run.copy_figure(p, "svm"), cap))
    return FigureGroup("Figure 3B–C — linear baselines (SVM)", "", items, missing)


def figures_models(run: RunView, df) -> FigureGroup:
    items, missing = [], []
    out = run.dest / "figures" / "models"
    out.mkdir(parents=True, exist_ok=True)
    runs = _histories(run.rp)
    if not runs:
        missing.append(run.miss("models/*/metrics.json", "no training history (stage train)"))
    for task in ("art", "tdt", "tdt_pv"):
        rs = [r for r in runs if r["task"] == task]
        if rs:
            p = plot_training_curves(rs, task, out / f"training_curves_{task}.png")
            items.append(
                FigureItem(
                    f"figures/models/{p.name}",
                    f"Training curves, {TASK_LABEL[task]} (cf. paper Fig. 3E and §Methods “Network training and evaluation procedure”; the "
                    "paper shows no curves): loss and "
                    + ("accuracy" if task == "art" else "hand position error")
                    + " per epoch, train dashed, validation solid, coloured by family.",
                    wide=True,
                )
            )
    if df is None:
        missing.append(run.miss("models/summary.csv", "not found (stage train)"))
    else:
        p = plot_test_performance(df, out / "test_performance.png")
        items.append(
            FigureItem(
                "figures/models/test_performance.png",
                "Paper Fig. 3E: test performance of every trained model (dots, one per seed) and its untrained "
                "control (crosses): ART accuracy, TDT / TDT-PV position error; black bars: the paper's values "
                "(Sandbrink et al. 2023, Fig. 3E and §Results; TDT-PV: §Results “Single unit encoding properties "
                "and decodability”); dotted line: chance (5 %).",
                wide=True,
            )
        )
    return FigureGroup("Figure 3E — networks: training and test performance", "", items, missing)


def figures_search(run: RunView) -> FigureGroup | None:
    """Fig. 3D and Fig. 3—S1 from ``search/search_results.csv`` (None when the run has no search table)."""
    from ..nn.search_figures import search_figures

    path = run.rp.root / "search" / "search_results.csv"
    sdf = read_csv(path)
    if sdf is None:
        return None
    if "task" not in sdf.columns:
        run.miss(
            run.rel(path), "a table of an older deepdraw (ART only, no task column): rerun 'deepdraw search'"
        )
        return None
    out = run.dest / "figures" / "search"
    items = [FigureItem(f"figures/search/{p.name}", cap, wide=True) for p, cap in search_figures(sdf, out)]
    intro = ""
    best = read_csv(run.rp.root / "search" / "best_per_family.csv")
    if best is not None and {"family", "name", "metric"} <= set(best.columns):
        won = [
            f"{r['family']}: {r['name']} ({r['metric']} {fmt_num(r.get(r['metric']), 4)})"
            for _, r in best.iterrows()
        ]
        intro = (
            f"{sdf['name'].nunique()} candidates, tasks {', '.join(dict.fromkeys(sdf['task'].astype(str)))}. "
            "Winners (search/best_per_family.csv; ranks in search/ranking.csv): " + "; ".join(won) + "."
        )
    return FigureGroup("Figure 3D and Fig. 3—S1 — architecture search", intro, items, [])


def figures_from(
    run: RunView, stage: str, folder: Path, table, title: str, intro: str, missing_msg: str
) -> FigureGroup:
    items, missing = [], []
    pngs = run.pngs(folder)
    if not pngs:
        missing.append(run.miss(f"{stage}/*.png", missing_msg))
    keyed = []
    models = {p: parse_model(_model_of(p.stem) or "") for p in pngs}
    seeds = [m["seed"] for m in models.values() if m and m["seed"] is not None]
    first = min(seeds) if seeds else None
    for p in pngs:
        cap, order = _caption(p.stem, table)
        m = models[p]
        # 0: figures of no single model; 1: first seed, trained; 2: other seeds and untrained controls
        if m is None or m["seed"] is None:
            rank = 0
        else:
            rank = 1 if m["seed"] == first and not m["untrained"] else 2
        keyed.append((rank, order, p.stem, p, cap))
    shown_models = 0
    for rank, _o, _s, p, cap in sorted(keyed, key=lambda t: t[:3]):
        w, h = png_size(p)
        folded = rank == 2 or (rank == 1 and shown_models >= SHOWN_MODELS)
        shown_models += int(rank == 1 and not folded)
        items.append(FigureItem(run.copy_figure(p, stage), cap, wide=_is_wide(w, h), folded=folded))
    return FigureGroup(title, intro, items, missing)
