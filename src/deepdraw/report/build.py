"""``deepdraw report CONFIG``: one self-contained HTML page about a run.

:func:`build_report` reads whatever the run folder holds (every part may be missing) and writes
``<out_dir>/report/index.html`` with every figure copied into ``report/figures/`` and the small result
tables into ``report/data/``, so the folder opens offline (inline CSS, no scripts, no external links).
The report is built in a temporary folder next to it and renamed in one step: a killed build never
leaves a half-written report.

Sections:

1. overview: scale of the run (candidates, samples, models, seeds, epochs), the stage table (status from
   the stamps, wall time, peak memory) and the list of missing parts;
2. the paper's Figures 2-7 made from this run's data: the stages' PNGs, plus training curves, per-model
   test performance made here from ``models/`` and, when the run has ``search/search_results.csv``,
   the search's Fig. 3D and Fig. 3—S1 (:mod:`deepdraw.nn.search_figures`);
3. paper vs this run: every number of :data:`deepdraw.report.facts.FACTS` the run computed, with the
   scale of the run beside it and, as source, the paper's figure, table or section (preprint-era values:
   the original repository's file);
4. provenance: the resolved config, git commit and library versions recorded in the artifacts, time and
   peak memory per stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import math
import os
import re
import shutil
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import DeepDrawError
from ..names import identify
from ..paths import RunPaths
from .facts import FACTS, FAMILIES, PAPER_SCALE, Fact
from .stats import compare_tests, paired_tests_html

__all__ = ["build_report", "collect_values", "FigureItem"]

log = logging.getLogger(__name__)

MAX_DATA_MB = 20.0
"""CSV tables larger than this are not copied into the report (they are named, not linked)."""
SHOWN_MODELS = 6
"""Per-model figures shown open per group (seed-1 trained models first); the rest are folded under a
<details>. Figures of no single model (summaries, inputs) are always shown."""
"""Tokens after the family (and the regression marker) in an architecture name: layers, kernels..., code."""
_FAM_LABEL = {
    "spatial_temporal": "spatial-temporal",
    "spatiotemporal": "spatiotemporal",
    "temporal_spatial": "temporal-spatial",
    "lstm": "LSTM",
}
_TASK_LABEL = {"art": "ART", "tdt": "TDT", "tdt_pv": "TDT-PV"}
_FAM_COLOR = {
    "spatial_temporal": "#1f77b4",
    "spatiotemporal": "#d62728",
    "lstm": "#2ca02c",
    "temporal_spatial": "#9467bd",
}
_FACT = {f.key: f for f in FACTS}
_PAPER_ART = {fam: _FACT[f"models.art_test_accuracy.{fam}"].paper for fam in FAMILIES}
_PAPER_TDT = {fam: _FACT[f"models.tdt_test_error_cm.{fam}"].paper for fam in FAMILIES}
_PAPER_PV = {fam: _FACT[f"models.tdt_pv_test_error_cm.{fam}"].paper for fam in FAMILIES}


# ----------------------------------------------------------------------------------------- helpers
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _read_json(p: Path) -> dict | None:
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _flatten(d: dict, prefix: str, out: dict[str, float]) -> None:
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if _is_num(v):
            out[key] = float(v)
        elif isinstance(v, dict):
            _flatten(v, key, out)


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "trained")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def _family(name: str) -> str:
    parts = identify(str(name))
    return parts.family if parts is not None else str(name)


def parse_model(name: str) -> dict[str, Any] | None:
    """Family, regression marker, seed and untrained flag of a model or architecture name (None: not one;
    :func:`deepdraw.names.identify`).

    ``spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_2r`` -> family spatial_temporal, regression,
    seed 2, untrained; an architecture name (no seed) gives seed None.
    """
    parts = identify(str(name))
    if parts is None:
        return None
    return {
        "family": parts.family,
        "regression": parts.regression,
        "seed": parts.seed,
        "untrained": parts.untrained,
        "arch": parts.arch,
    }


def describe_model(name: str, task: str | None = None) -> str:
    """Plain words for a model name: family, task, seed, trained or untrained."""
    m = parse_model(name)
    if m is None:
        return name
    if task is None:
        task = "tdt" if m["regression"] else "art"
    words = [_FAM_LABEL.get(m["family"], m["family"]), _TASK_LABEL.get(task, task.upper())]
    if m["seed"] is not None:
        words.append(f"seed {m['seed']}")
        words.append("untrained" if m["untrained"] else "trained")
    else:
        words.append("all seeds")
    return ", ".join(words)


def _fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table cell: integers with thousands separators, else ``digits`` significant."""
    if x is None or not math.isfinite(x):
        return "—"
    if digits == 0 or (abs(x) >= 10**digits and float(x).is_integer()):
        return f"{x:,.0f}"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    s = f"{x:.{digits}g}"
    if "e" in s:
        s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return s


def _png_size(p: Path) -> tuple[int, int]:
    """Width and height of a PNG from its header ((0, 0) when unreadable)."""
    try:
        with open(p, "rb") as f:
            head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
    except OSError:
        pass
    return 0, 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def _h5_rows(path: Path) -> tuple[int | None, dict[str, Any]]:
    """Number of samples (length of ``label``) and a few columns of a PCRT file; (None, {}) if unreadable."""
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            if "label" not in f:
                return None, {}
            n = int(f["label"].shape[0])
            cols: dict[str, Any] = {"label": f["label"][()]}
            if "plane" in f and "startpt" in f:
                cols["plane"] = np.array(
                    [p.decode() if isinstance(p, bytes) else str(p) for p in f["plane"][()]]
                )
                cols["startpt"] = f["startpt"][()]
            return n, cols
    except (OSError, KeyError, ValueError):
        return None, {}


def _h5_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of an HDF5 artifact (JSON fields decoded); None if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            out: dict[str, Any] = {}
            for k, v in f.attrs.items():
                if isinstance(v, bytes):
                    v = v.decode()
                if k in ("config", "seeds", "inputs", "versions") and isinstance(v, str):
                    with contextlib.suppress(ValueError):
                        v = json.loads(v)
                out[k] = v
            return out
    except OSError:
        return None


def _read_csv(p: Path):
    import pandas as pd

    try:
        return pd.read_csv(p)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------- the model
@dataclasses.dataclass
class FigureItem:
    """One figure of the report: its path relative to the report folder and its caption."""

    src: str
    caption: str
    wide: bool = False
    folded: bool = False  # shown under "more figures"


@dataclasses.dataclass
class FigureGroup:
    title: str
    intro: str
    items: list[FigureItem]
    missing: list[str]


class _Run:
    """Everything the report reads from one run folder."""

    def __init__(self, cfg: Config, dest: Path) -> None:
        self.cfg = cfg
        self.rp = RunPaths.of(cfg)
        self.dest = dest
        self.missing: list[tuple[str, str]] = []  # (what, why)
        self.copied: set[str] = set()

    # ---- file handling
    def rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.rp.root))
        except ValueError:
            return str(p)

    def miss(self, what: str, why: str) -> str:
        self.missing.append((what, why))
        return f"{what}: {why}"

    def copy_figure(self, src: Path, stage: str) -> str:
        """Copy a PNG into ``figures/<stage>/``; its path relative to the report folder."""
        sub = src.parent.relative_to(self._stage_root(stage)) if self._under(src, stage) else Path()
        name = _safe("_".join([*sub.parts, src.name])) if sub.parts else _safe(src.name)
        rel = f"figures/{stage}/{name}"
        k = 1
        while rel in self.copied:
            k += 1
            rel = f"figures/{stage}/{Path(name).stem}_{k}{Path(name).suffix}"
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dest / rel)
        self.copied.add(rel)
        return rel

    def copy_data(self, src: Path, stage: str) -> str | None:
        """Copy a small table into ``data/<stage>/``; None (and noted) when too large."""
        size = src.stat().st_size / 2**20
        if size > MAX_DATA_MB:
            self.miss(
                self.rel(src), f"{size:.0f} MB, not copied into the report (limit {MAX_DATA_MB:.0f} MB)"
            )
            return None
        rel = f"data/{stage}/{_safe(src.name)}"
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dest / rel)
        return rel

    def _stage_root(self, stage: str) -> Path:
        return {"dataset": self.rp.figures}.get(stage, self.rp.root / stage)

    def _under(self, p: Path, stage: str) -> bool:
        try:
            p.relative_to(self._stage_root(stage))
            return True
        except ValueError:
            return False

    def pngs(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*.png") if p.is_file() and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------- values
def _models_table(rp: RunPaths):
    df = _read_csv(rp.models / "summary.csv")
    if df is None or df.empty or "model" not in df.columns:
        return None
    if "state" in df.columns:
        df["_trained"] = df["state"].astype(str).str.lower() == "trained"
    elif "trained" in df.columns:
        df["_trained"] = df["trained"].map(_truthy)
    else:
        df["_trained"] = ~df["model"].astype(str).str.match(r".*_\d+r$")
    if "family" not in df.columns:
        df["family"] = df["model"].map(_family)
    if "task" not in df.columns:
        df["task"] = df["model"].map(lambda n: "tdt" if "_r_" in str(n) else "art")
    if "architecture" not in df.columns:
        df["architecture"] = df["model"].map(lambda n: (parse_model(str(n)) or {"arch": str(n)})["arch"])
    df["architecture"] = df["architecture"].astype(str).str.replace("_r_", "_", regex=False)
    return df


def _mean_sem(vals: Sequence[float]) -> tuple[float, float, float, int]:
    import numpy as np

    v = np.asarray([x for x in vals if _is_num(x)], dtype=float)
    if not v.size:
        return math.nan, math.nan, math.nan, 0
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), sd / math.sqrt(v.size) if v.size > 1 else math.nan, sd, int(v.size)


def _model_values(df, out: dict[str, float]) -> None:
    tr = df[df["_trained"]]
    art = tr[tr["task"] == "art"]
    best_arch: dict[str, str] = {}
    for fam in sorted(set(df["family"].astype(str))):
        a = art[art["family"] == fam]
        if "test_accuracy" in a.columns and a["test_accuracy"].notna().any():
            best_arch[fam] = str(a.groupby("architecture")["test_accuracy"].mean().idxmax())
    for task, col, better in (
        ("art", "test_accuracy", "max"),
        ("tdt", "test_error_cm", "min"),
        ("tdt_pv", "test_error_cm", "min"),
        ("tdt_pv", "test_rmse_scaled", "min"),
    ):
        t = tr[tr["task"] == task]
        if col not in t.columns:
            continue
        for fam, g in t.groupby("family"):
            g = g[g[col].notna()]
            if g.empty:
                continue
            means = g.groupby("architecture")[col].mean()
            arch = best_arch.get(str(fam))
            if arch not in means.index:
                arch = str(means.idxmax() if better == "max" else means.idxmin())
            mean, sem, sd, n = _mean_sem(list(g[g["architecture"] == arch][col]))
            key = f"models.{task}_{col}.{fam}"
            out[key] = mean
            out[key + ".sem"] = sem
            out[key + ".n"] = n
    un = df[(~df["_trained"]) & (df["task"] == "art")]
    if "test_accuracy" in un.columns and un["test_accuracy"].notna().any():
        mean, _sem, sd, n = _mean_sem(list(un["test_accuracy"]))
        out["models.untrained_art_test_accuracy"] = mean
        out["models.untrained_art_test_accuracy.sd"] = sd
        out["models.untrained_art_test_accuracy.n"] = n


def _rsa_values(odf, out: dict[str, float]) -> None:
    need = {"family", "layer", "layer_index", "oracle_r", "model"}
    if odf is None or odf.empty or not need <= set(odf.columns):
        return
    odf = odf.copy()
    odf["_trained"] = odf["trained"].map(_truthy) if "trained" in odf.columns else True
    inp = odf[odf["family"].astype(str) == "input"]
    for layer, g in inp.groupby("layer"):
        out[f"rsa.oracle_input.{layer}"] = float(g["oracle_r"].mean())
    net = odf[odf["family"].astype(str) != "input"]
    if net.empty:
        return
    task = net["task"].astype(str) if "task" in net.columns else net["model"].map(lambda n: "art")
    for fam in sorted(set(net["family"].astype(str))):
        sel = net[(net["family"].astype(str) == fam) & (task == "art") & net["_trained"]]
        if sel.empty:
            continue
        last = sel.loc[sel.groupby("model")["layer_index"].idxmax()]
        mean, _sem, sd, n = _mean_sem(list(last["oracle_r"]))
        out[f"rsa.oracle_final_art.{fam}"] = mean
        out[f"rsa.oracle_final_art.{fam}.sd"] = sd
        out[f"rsa.oracle_final_art.{fam}.n"] = n
    un = net[(~net["_trained"]) & (net["layer_index"] > 0)]
    if not un.empty:
        keys = [c for c in ("family", "arch", "task", "layer_index") if c in un.columns]
        out["rsa.oracle_untrained_max"] = float(un.groupby(keys)["oracle_r"].mean().max())


def _label_values(summary: dict | None, tdf, out: dict[str, float]) -> None:
    """``tuning.label_selectivity_final`` (+ ``.sem``, ``_unit_max``): ART spatial-temporal, trained."""

    def wanted(name: str) -> bool:
        m = parse_model(name)
        return (
            m is not None
            and m["seed"] is not None
            and not m["untrained"]
            and not m["regression"]
            and (m["family"] == "spatial_temporal")
        )

    per_model = (summary or {}).get("label_selectivity_final")
    vals: list[float] = []
    if isinstance(per_model, dict):
        vals = [float(v) for k, v in per_model.items() if wanted(str(k)) and _is_num(v)]
        umax = (summary or {}).get("label_selectivity_final_unit_max")
        if isinstance(umax, dict):
            u = [float(v) for k, v in umax.items() if wanted(str(k)) and _is_num(v)]
            if u:
                out["tuning.label_selectivity_final_unit_max"] = max(u)
    if (
        not vals
        and tdf is not None
        and not tdf.empty
        and {"tuning_type", "layer_index", "median", "model"} <= set(tdf.columns)
    ):
        lab = tdf[tdf["tuning_type"].astype(str) == "labels"]
        if "task" in lab.columns:
            lab = lab[lab["task"].astype(str) == "art"]
        if "trained" in lab.columns:
            lab = lab[lab["trained"].map(_truthy)]
        lab = lab[lab["model"].astype(str).map(lambda n: _family(n) == "spatial_temporal")]
        if not lab.empty:
            last = lab.loc[lab.groupby("model")["layer_index"].idxmax()]
            vals = [float(v) for v in last["median"] if _is_num(v)]
    if vals:
        mean, sem, _sd, n = _mean_sem(vals)
        out["tuning.label_selectivity_final"] = mean
        out["tuning.label_selectivity_final.sem"] = sem
        out["tuning.label_selectivity_final.n"] = n


def collect_values(cfg: Config) -> tuple[dict[str, float], dict[str, str]]:
    """The run values the facts registry names (see :mod:`deepdraw.report.facts`) and the run's scale.

    Returns ``(values, scale)``: ``values`` is a flat dict of floats, ``scale`` one phrase per group
    (dataset, svm, models, rsa, tuning) describing how big this run is.
    """
    import numpy as np

    rp = RunPaths.of(cfg)
    v: dict[str, float] = {}
    scale: dict[str, str] = {}
    # dataset
    n_tr, c_tr = _h5_rows(rp.pcrt_train)
    n_te, c_te = _h5_rows(rp.pcrt_test)
    if n_tr is not None or n_te is not None:
        v["dataset.n_candidates"] = float(cfg.kinematics.n_candidates)
    if n_tr is not None:
        v["dataset.n_train"] = n_tr
    if n_te is not None:
        v["dataset.n_test"] = n_te
    if n_tr is not None and n_te is not None:
        v["dataset.n_samples"] = n_tr + n_te
        if n_tr + n_te:
            v["dataset.test_percent"] = 100.0 * n_te / (n_tr + n_te)
        labels = np.concatenate([c_tr.get("label", np.zeros(0)), c_te.get("label", np.zeros(0))])
        if labels.size:
            v["dataset.n_classes"] = float(np.unique(labels).size)
        for plane, axis in (("horizontal", 2), ("vertical", 0)):
            pts = [c["startpt"][c["plane"] == plane, axis] for c in (c_tr, c_te) if "plane" in c]
            if pts:
                lv = np.concatenate(pts)
                v[f"dataset.n_{plane}_planes"] = float(np.unique(np.round(lv, 1)).size)
        scale["dataset"] = (
            f"{_fmt(cfg.kinematics.n_candidates, 0)} candidates → {_fmt(n_tr + n_te, 0)} samples"
        )
        scale["dataset.short"] = f"{_fmt(n_tr + n_te, 0)} samples"
    # svm
    s = _read_json(rp.svm / "summary.json")
    if s is not None:
        _flatten(s, "svm", v)
    if n_tr is not None and n_te is not None:
        mt = cfg.svm.max_train
        used = v.get("svm.n_train_used", min(n_tr, mt) if mt else n_tr)
        pairs = f", {_fmt(v['svm.n_pairs'], 0)} pairs" if "svm.n_pairs" in v else ""
        scale["svm"] = f"{_fmt(used, 0)} train / {_fmt(n_te, 0)} test samples{pairs}"
        scale["svm.short"] = f"{_fmt(used, 0)} / {_fmt(n_te, 0)} samples"
    # models
    df = _models_table(rp)
    if df is not None:
        _model_values(df, v)
        tr = df[df["_trained"]]
        seeds = sorted({int(x) for x in tr["seed"] if _is_num(x)}) if "seed" in tr.columns else []
        ep = [float(x) for x in tr.get("epochs", []) if _is_num(x)]
        n_train = _first_metric(rp, "n_train")
        bits = [f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"]
        if ep:
            bits.append(f"{_span(ep)} epochs (max {cfg.train.max_epochs})")
        if n_train:
            bits.append(f"{_fmt(n_train, 0)} train samples")
        scale["models"] = ", ".join(bits)
        scale["models.short"] = f"{len(seeds)} seeds · {_span(ep)} ep." if ep else bits[0]
    # rsa
    rs = _read_json(rp.rsa / "summary.json")
    if rs is not None:
        _flatten(rs, "rsa", v)
    _rsa_values(_read_csv(rp.rsa / "rsa_oracle.csv"), v)
    n_act = min(cfg.activations.n_samples, n_te) if n_te else cfg.activations.n_samples
    if any(k.startswith("rsa.") for k in v):
        scale["rsa"] = f"{_fmt(n_act, 0)} test samples ({cfg.rsa.per_class} per class for RDMs)"
        scale["rsa.short"] = f"{_fmt(n_act, 0)} samples"
    # tuning
    ts = _read_json(rp.tuning / "summary.json")
    if ts is not None:
        _flatten(ts, "tuning", v)
    _label_values(ts, _read_csv(rp.tuning / "tuning_summary.csv"), v)
    if any(k.startswith("tuning.") for k in v):
        nm = (ts or {}).get("n_models")
        scale["tuning"] = f"{_fmt(n_act, 0)} test samples" + (f", {nm} models" if _is_num(nm) else "")
        scale["tuning.short"] = f"{_fmt(n_act, 0)} samples"
    return v, scale


def _span(xs: Sequence[float]) -> str:
    lo, hi = min(xs), max(xs)
    return _fmt(lo, 0) if lo == hi else f"{_fmt(lo, 0)}–{_fmt(hi, 0)}"


def _first_metric(rp: RunPaths, key: str) -> float | None:
    for p in sorted(rp.models.glob("*/metrics.json")) if rp.models.is_dir() else []:
        d = _read_json(p)
        if d and _is_num(d.get(key)):
            return float(d[key])
    return None


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
        d = _read_json(p)
        if not d or not isinstance(d.get("epochs"), list) or not d["epochs"]:
            continue
        name = str(d.get("model_name") or p.parent.name)
        task = str(d.get("task") or ("tdt_pv" if p.parent.parent.name == "tdt_pv" else "art"))
        runs.append(
            {"name": name, "task": task, "family": str(d.get("family") or _family(name)), "h": d["epochs"]}
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
        col = _FAM_COLOR.get(r["family"], "#555555")
        lab = _FAM_LABEL.get(r["family"], r["family"]) if r["family"] not in seen else None
        seen.add(r["family"])
        for key, ls in (("train_loss", "--"), ("val_loss", "-")):
            y = [row.get(key, math.nan) for row in r["h"]]
            ax1.plot(ep, y, ls, color=col, lw=1, alpha=0.8, label=lab if key == "val_loss" else None)
        y = [row.get(f"val_{metric}", math.nan) for row in r["h"]]
        if metric == "accuracy":
            y = [100 * x if _is_num(x) else math.nan for x in y]
        ax2.plot(ep, y, "-", color=col, lw=1, alpha=0.8)
        yt = [row.get(f"train_{metric}", math.nan) for row in r["h"]]
        if metric == "accuracy":
            yt = [100 * x if _is_num(x) else math.nan for x in yt]
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
        f"{_TASK_LABEL.get(task, task)}: training curves ({len(runs)} run{'s' if len(runs) != 1 else ''})",
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
        paper = {"art": _PAPER_ART, "tdt": _PAPER_TDT, "tdt_pv": _PAPER_PV}[task]
        for i, fam in enumerate(fams):
            g = t[t["family"].astype(str) == fam]
            for trained, marker in ((True, "o"), (False, "x")):
                y = [float(x) for x in g[g["_trained"] == trained].get(col, []) if _is_num(x)]
                if task == "art":
                    y = [100 * x for x in y]
                xs = [i + (-0.12 if trained else 0.12)] * len(y)
                ax.scatter(
                    xs,
                    y,
                    marker=marker,
                    s=22,
                    color=_FAM_COLOR.get(fam, "#555"),
                    alpha=0.85,
                    label=("trained" if trained else "untrained") if i == 0 else None,
                )
            if fam in paper:
                ax.hlines(paper[fam], i - 0.3, i + 0.3, color="k", lw=1.5, label="paper" if i == 0 else None)
        ax.set_xticks(
            range(len(fams)), [_FAM_LABEL.get(f, f).replace("-", "-\n", 1) for f in fams], fontsize=8
        )
        ax.set_xlim(-0.6, len(fams) - 0.4)
        if task == "art":
            ax.set_ylabel("test accuracy (%)")
            ax.axhline(5.0, color="0.6", lw=0.8, ls=":")
        else:
            ax.set_ylabel("test position error (cm)")
            ax.set_yscale("log")
        ax.set_title(_TASK_LABEL[task], fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return path


_RSA_CAPTIONS = (
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
_TUNING_CAPTIONS = (
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


def _figures_dataset(run: _Run) -> FigureGroup:
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


def _figures_svm(run: _Run) -> FigureGroup:
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


def _figures_models(run: _Run, df) -> FigureGroup:
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
                    f"Training curves, {_TASK_LABEL[task]} (cf. paper Fig. 3E and §Methods “Network training and evaluation procedure”; the "
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


def _figures_search(run: _Run) -> FigureGroup | None:
    """Fig. 3D and Fig. 3—S1 from ``search/search_results.csv`` (None when the run has no search table)."""
    from ..nn.search_figures import search_figures

    path = run.rp.root / "search" / "search_results.csv"
    sdf = _read_csv(path)
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
    best = _read_csv(run.rp.root / "search" / "best_per_family.csv")
    if best is not None and {"family", "name", "metric"} <= set(best.columns):
        won = [
            f"{r['family']}: {r['name']} ({r['metric']} {_fmt(r.get(r['metric']), 4)})"
            for _, r in best.iterrows()
        ]
        intro = (
            f"{sdf['name'].nunique()} candidates, tasks {', '.join(dict.fromkeys(sdf['task'].astype(str)))}. "
            "Winners (search/best_per_family.csv; ranks in search/ranking.csv): " + "; ".join(won) + "."
        )
    return FigureGroup("Figure 3D and Fig. 3—S1 — architecture search", intro, items, [])


def _figures_from(
    run: _Run, stage: str, folder: Path, table, title: str, intro: str, missing_msg: str
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
        w, h = _png_size(p)
        folded = rank == 2 or (rank == 1 and shown_models >= SHOWN_MODELS)
        shown_models += int(rank == 1 and not folded)
        items.append(FigureItem(run.copy_figure(p, stage), cap, wide=_is_wide(w, h), folded=folded))
    return FigureGroup(title, intro, items, missing)


# ------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f4}
main{max-width:1180px;margin:0 auto;padding:18px 28px 60px;background:#fff;box-shadow:0 0 0 1px #e4e4e0}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:34px 0 8px;padding-top:10px;border-top:2px solid #333}
h3{font-size:15px;margin:22px 0 6px}.sub{color:#666;margin:0 0 12px}
nav{margin:10px 0 4px;font-size:13px}nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f1f1ee;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.grp td{background:#fafaf7;font-weight:600;color:#444;padding-top:9px}
.missing{color:#a0522d}.ok{color:#1b7f3b}.warn{color:#b8860b}.muted{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 12px}
.card{border:1px solid #e1e1dc;border-radius:6px;padding:8px 12px;min-width:120px;background:#fcfcfa}
.card b{display:block;font-size:19px}.card span{color:#666;font-size:12px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;margin:8px 0}
figure{margin:0;border:1px solid #e6e6e1;border-radius:5px;padding:6px;background:#fff}
figure.wide{grid-column:1/-1}figure img{width:100%;height:auto;display:block}
figure.wide img{max-width:880px;margin:0 auto}
figcaption{font-size:12px;color:#444;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer;color:#0b5cad}
pre{background:#f5f5f2;border:1px solid #e4e4df;padding:8px 10px;font-size:12px;overflow:auto;max-height:520px}
ul.miss{margin:4px 0 10px;padding-left:20px;font-size:13px}code{font-size:12px}
.era{font-size:11px;color:#777}table.kv{width:auto;min-width:40%}table.kv td:first-child{font-weight:600;padding-right:24px}
"""


def _table(
    head: Sequence[str], rows: Iterable[Sequence[str]], num: Sequence[int] = (), attrs: str = ""
) -> str:
    """A table; ``rows`` hold ready HTML; ``num`` are right-aligned column indices."""
    th = "".join(
        f'<th class="n">{_esc(h)}</th>' if i in num else f"<th>{_esc(h)}</th>" for i, h in enumerate(head)
    )
    body = []
    for r in rows:
        tds = "".join(f'<td class="n">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{tds}</tr>")
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fig_html(items: Sequence[FigureItem]) -> str:
    def one(it: FigureItem) -> str:
        cls = ' class="wide"' if it.wide else ""
        return (
            f'<figure{cls}><a href="{_esc(it.src)}"><img src="{_esc(it.src)}" alt="{_esc(it.caption)}" '
            f'loading="lazy"></a><figcaption>{_esc(it.caption)}</figcaption></figure>'
        )

    head, rest = [i for i in items if not i.folded], [i for i in items if i.folded]
    out = f'<div class="figs">{"".join(one(i) for i in head)}</div>' if head else ""
    if rest:
        out += (
            f"<details><summary>{len(rest)} more figures</summary>"
            f'<div class="figs">{"".join(one(i) for i in rest)}</div></details>'
        )
    return out


def _group_html(g: FigureGroup) -> str:
    out = f"<h3>{_esc(g.title)}</h3>"
    if g.intro:
        out += f'<p class="sub">{_esc(g.intro)}</p>'
    if g.missing:
        out += (
            '<ul class="miss">'
            + "".join(f'<li class="missing">missing — {_esc(m)}</li>' for m in g.missing)
            + "</ul>"
        )
    return out + _fig_html(g.items)


def _stage_rows(run: _Run) -> list[dict[str, Any]]:
    """One row per pipeline stage (and per stamp of an unknown stage): status, wall time, peak memory."""
    names: list[str] = []
    docs: dict[str, str] = {}
    digests: dict[str, str] = {}
    try:
        from .. import pipeline

        pipeline._load_stages()
        memo: dict[str, str] = {}
        for name, st in pipeline.STAGES.items():
            if not pipeline.is_enabled(run.cfg, name) and not (run.rp.stamps / f"{name}.done.json").exists():
                continue  # a stage the config leaves out (the search with n_per_family = 0)
            names.append(name)
            docs[name] = st.doc
            with contextlib.suppress(Exception):
                digests[name] = pipeline.stage_digest(run.cfg, name, memo)
    except Exception as e:  # noqa: BLE001 - the report must not fail on a broken stage registry
        log.warning("pipeline stages not loaded: %s", e)
    stamps = run.rp.stamps
    if stamps.is_dir():
        for p in sorted(stamps.glob("*.json")):
            n = p.name.split(".")[0]
            if n not in names:
                names.append(n)
    rows = []
    for n in names:
        done = _read_json(stamps / f"{n}.done.json") or {}
        started = _read_json(stamps / f"{n}.started.json") or {}
        if n == "report":
            status = "this report"
        elif done and (n not in digests or done.get("digest") == digests[n]):
            status = "done"
        elif done:
            status = "stale (other config)"
        elif started:
            status = "started, not finished"
        else:
            status = "not run"
        rows.append(
            {
                "stage": n,
                "doc": docs.get(n, ""),
                "status": status,
                "wall_s": done.get("wall_s"),
                "peak_rss_mb": done.get("peak_rss_mb"),
                "finished": done.get("finished", ""),
            }
        )
    return rows


def _fmt_time(s: Any) -> str:
    if not _is_num(s):
        return "—"
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _toml(d: dict[str, Any]) -> str:
    lines = []
    for sec, vals in d.items():
        lines.append(f"[{sec}]")
        if isinstance(vals, dict):
            for k, v in vals.items():
                lines.append(f"{k} = {json.dumps(v, default=str)}")
        lines.append("")
    return "\n".join(lines)


def _facts_html(values: dict[str, float], scale: dict[str, str]) -> str:
    groups = {
        "dataset": "Dataset",
        "svm": "Linear baselines",
        "models": "Networks",
        "rsa": "Representational similarity",
        "tuning": "Single units",
    }
    rows_html = []
    head = ["quantity", "paper", "this run", "run vs paper", "scale of this run", "source"]
    last = None
    for f in FACTS:
        if f.scale != last:
            last = f.scale
            rows_html.append(
                f'<tr class="grp"><td colspan="6">{_esc(groups.get(f.scale, f.scale))} '
                f'<span class="muted">· this run: {_esc(scale.get(f.scale, "—"))} · paper: '
                f"{_esc(PAPER_SCALE.get(f.scale, '—'))}</span></td></tr>"
            )
        rows_html.append(_fact_row(f, values, scale))
    th = "".join(
        f'<th class="n">{_esc(h)}</th>' if i in (1, 2, 3) else f"<th>{_esc(h)}</th>"
        for i, h in enumerate(head)
    )
    return f'<table id="paper-vs-run"><thead><tr>{th}</tr></thead><tbody>{"".join(rows_html)}</tbody></table>'


def _fact_row(f: Fact, values: dict[str, float], scale: dict[str, str]) -> str:
    v = values.get(f.key)
    unit = f" {f.unit}" if f.unit else ""
    era = ' <span class="era">(preprint-era value)</span>' if f.era != "eLife" else ""
    what = f'{_esc(f.what)}{era}<br><code class="muted">{_esc(f.key)}</code>'
    sc = f'<span class="muted">{_esc(scale.get(f.scale + ".short", "—"))}</span>'
    if v is None or not math.isfinite(v):
        run_cell = '<span class="missing">not in this run</span>'
        diff = "—"
    else:
        factor = 100.0 if f.percent and abs(v) <= 1.0 else 1.0
        x = v * factor
        sp = values.get(f.spread_key) if f.spread_key else None
        spread = f" ± {_esc(_fmt(sp * factor, 2))}" if sp is not None and math.isfinite(sp) else ""
        label = f" ({_esc(f.spread_label)})" if spread and f.spread_label else ""
        run_cell = f'<span class="num">{_esc(_fmt(x, f.digits))}</span>{spread}{_esc(unit)}{label}'
        if f.paper is None:
            diff = "—"
        elif f.digits == 0 and f.paper:
            diff = _esc(f"{_fmt(100 * x / f.paper, 3)} % of paper")
        else:
            d = x - f.paper
            diff = _esc(("+" if d > 0 else "") + _fmt(d, 2) + (" pp" if f.unit == "%" else unit))
    return (
        f'<tr data-key="{_esc(f.key)}"><td>{what}</td><td class="n">{_esc(f.paper_text)}</td>'
        f'<td class="n run">{run_cell}</td><td class="n">{diff}</td><td>{sc}</td><td>{_esc(f.source)}</td></tr>'
    )


def _artifact_provenance(run: _Run) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    rp = run.rp
    cands = [
        rp.characters,
        rp.startpoints,
        rp.pcrt_train,
        rp.pcrt_test,
        rp.rsa / "rsa_results.h5",
        rp.tuning / "tuning_results.h5",
    ]
    found = []
    for p in cands:
        if p.exists():
            a = _h5_attrs(p)
            if a is not None:
                found.append((run.rel(p), a))
    versions: dict[str, str] = {}
    for _, a in found:
        if isinstance(a.get("versions"), dict):
            versions = {str(k): str(v) for k, v in a["versions"].items()}
            break
    return found, versions


def _config_diff(cfg: Config, found: list[tuple[str, dict]]) -> list[str]:
    mine = cfg.to_dict()
    notes = []
    for rel, a in found:
        c = a.get("config")
        if not isinstance(c, dict):
            continue
        diffs = []
        for sec, vals in c.items():
            if sec in mine and isinstance(vals, dict):
                for k, v in vals.items():
                    if k in mine[sec] and json.dumps(mine[sec][k], default=str) != json.dumps(v, default=str):
                        if sec == "run" and k in ("quiet",):
                            continue
                        diffs.append(
                            f"{sec}.{k} = {json.dumps(v, default=str)} (config: {json.dumps(mine[sec][k], default=str)})"
                        )
        if diffs:
            notes.append(f"{rel} was written with " + "; ".join(diffs))
    return notes


def _models_table_html(run: _Run, df) -> str:
    if df is None:
        return ""
    cols = [
        c
        for c in (
            "model",
            "source",
            "task",
            "seed",
            "state",
            "epochs",
            "best_epoch",
            "stopped_by",
            "wall_s",
            "test_accuracy",
            "test_error_cm",
        )
        if c in df.columns
    ]
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            x = r[c]
            if c == "test_accuracy" and _is_num(x):
                cells.append(_esc(_fmt(100 * float(x), 4)) + " %")
            elif c == "wall_s":
                cells.append(_esc(_fmt_time(x)))
            elif _is_num(x):
                cells.append(_esc(_fmt(float(x), 3)))
            else:
                cells.append(_esc("" if x is None or (isinstance(x, float) and math.isnan(x)) else x))
        rows.append(cells)
    num = [
        i
        for i, c in enumerate(cols)
        if c in ("seed", "epochs", "best_epoch", "wall_s", "test_accuracy", "test_error_cm")
    ]
    t = _table(cols, rows, num)
    note = ""
    if "source" in df.columns:
        n_zoo = int((df["source"] == "zoo").sum())
        n_run = len(df) - n_zoo
        if n_zoo:
            note = (
                f'<p class="sub" id="models-source">{n_zoo} of these {len(df)} models (trained and untrained '
                "controls) are <b>shipped</b> paper-scale models (<code>deepdraw zoo list</code>): trained on the "
                "200,000-sample dataset of configs/paper.toml, not in this run, and evaluated here on this run's "
                f"test set (epochs and wall times are those of their paper-scale training); {n_run} were trained "
                "in this run.</p>"
            )
    return note + f"<details><summary>all {len(df)} model runs (models/summary.csv)</summary>{t}</details>"


def _summary_numbers_html(values: dict[str, float], prefix: str, title: str) -> str:
    ks = sorted(k for k in values if k.startswith(prefix + "."))
    if not ks:
        return ""
    rows = [[f"<code>{_esc(k)}</code>", _esc(_fmt(values[k], 4))] for k in ks]
    return f"<details><summary>{_esc(title)}: all {len(ks)} numbers</summary>{_table(['key', 'value'], rows, [1])}</details>"


def _data_links(run: _Run) -> str:
    rp = run.rp
    srcs: list[tuple[str, Path]] = []
    for stage, folder in (
        ("svm", rp.svm),
        ("rsa", rp.rsa),
        ("tuning", rp.tuning),
        ("search", rp.root / "search"),
    ):
        if folder.is_dir():
            srcs += [(stage, p) for p in sorted(folder.glob("*.csv"))]
            srcs += [(stage, p) for p in sorted(folder.glob("summary.json"))]
    if (rp.models / "summary.csv").exists():
        srcs.append(("models", rp.models / "summary.csv"))
    items = []
    for stage, p in srcs:
        rel = run.copy_data(p, stage)
        if rel:
            items.append(
                f'<li><a href="{_esc(rel)}">{_esc(run.rel(p))}</a> '
                f'<span class="muted">({p.stat().st_size / 1024:.0f} kB)</span></li>'
            )
        else:
            items.append(f'<li>{_esc(run.rel(p))} <span class="missing">(too large, not copied)</span></li>')
    if not items:
        return '<p class="missing">No result tables in this run.</p>'
    return "<ul>" + "".join(items) + "</ul>"


def _overview_cards(cfg: Config, values: dict[str, float], df) -> str:
    cards = [(_fmt(cfg.kinematics.n_candidates, 0), "candidates (config)")]
    if "dataset.n_samples" in values:
        cards.append((_fmt(values["dataset.n_samples"], 0), "samples"))
        cards.append(
            (
                f"{_fmt(values.get('dataset.n_train'), 0)} / {_fmt(values.get('dataset.n_test'), 0)}",
                "train / test",
            )
        )
    else:
        cards.append(("—", "samples (dataset missing)"))
    if df is not None:
        tr = df[df["_trained"]]
        cards.append((str(len(tr)), "trained models"))
        cards.append((str(int((~df["_trained"]).sum())), "untrained controls"))
        seeds = sorted({int(x) for x in tr.get("seed", []) if _is_num(x)})
        cards.append((", ".join(map(str, seeds)) or "—", "seeds"))
        ep = [float(x) for x in tr.get("epochs", []) if _is_num(x)]
        if ep:
            cards.append((_span(ep), f"epochs (max {cfg.train.max_epochs})"))
    else:
        cards.append(("—", "models (not trained)"))
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{_esc(a)}</b><span>{_esc(b)}</span></div>' for a, b in cards)
        + "</div>"
    )


def _render(
    run: _Run,
    values: dict[str, float],
    scale: dict[str, str],
    df,
    groups: list[FigureGroup],
    stage_rows: list[dict[str, Any]],
    data_html: str,
) -> str:
    cfg = run.cfg
    title = cfg.report.title or "deepdraw run"
    found, versions = _artifact_provenance(run)
    commits = sorted({str(a.get("git_commit", "unknown")) for _, a in found})
    dd_versions = sorted({str(a.get("deepdraw_version", "?")) for _, a in found})

    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
    ]
    parts.append(f"<h1>{_esc(title)}</h1>")
    parts.append(
        f'<p class="sub">Run folder <code>{_esc(run.rp.root.name)}</code> · config '
        f"<code>{_esc(cfg.origin())}</code> · seed {cfg.run.seed} · "
        f"re-implementation of Sandbrink, Mamidanna et al., eLife 2023 (DeepDraw)</p>"
    )
    parts.append(
        '<nav><a href="#overview">1 Overview</a><a href="#figures">2 Figures 2–7</a>'
        '<a href="#paper-vs-run-section">3 Paper vs this run</a><a href="#provenance">4 Provenance</a>'
        '<a href="#data">Data</a></nav>'
    )

    # 1 overview
    parts.append('<h2 id="overview">1. Overview</h2>')
    parts.append(_overview_cards(cfg, values, df))
    zoo_report = run.rp.root / "zoo" / "report" / "index.html"
    if zoo_report.is_file():
        parts.append(
            '<p class="ok" id="zoo-link">The shipped paper-scale models (<code>deepdraw zoo list</code>) on this '
            'run\'s test set, with every analysis of this report: <a href="../zoo/report/index.html">'
            "zoo/report/index.html</a> (configs/demo-zoo.toml).</p>"
        )
    srows = []
    total = 0.0
    for r in stage_rows:
        cls = {"done": "ok", "not run": "missing", "this report": "muted"}.get(r["status"], "warn")
        if _is_num(r["wall_s"]):
            total += float(r["wall_s"])
        srows.append(
            [
                f"<b>{_esc(r['stage'])}</b>",
                _esc(r["doc"]),
                f'<span class="{cls}">{_esc(r["status"])}</span>',
                _esc(_fmt_time(r["wall_s"])),
                _esc(f"{float(r['peak_rss_mb']):,.0f} MB" if _is_num(r["peak_rss_mb"]) else "—"),
                _esc(r["finished"]),
            ]
        )
    if srows:
        parts.append(
            _table(
                ["stage", "what", "status", "wall time", "peak memory", "finished"],
                srows,
                [3, 4],
                ' id="stages"',
            )
        )
        parts.append(f'<p class="sub">Total wall time of the finished stages: {_esc(_fmt_time(total))}.</p>')
    else:
        parts.append('<p class="missing">No stage stamps found (.stamps/).</p>')
    if run.missing:
        parts.append(
            '<h3>Missing parts</h3><ul class="miss" id="missing">'
            + "".join(f'<li class="missing"><code>{_esc(w)}</code>: {_esc(y)}</li>' for w, y in run.missing)
            + "</ul>"
        )
    else:
        parts.append('<p class="ok">Every part of the run is present.</p>')

    # 2 figures
    parts.append('<h2 id="figures">2. The paper\'s Figures 2–7 from this run</h2>')
    parts.append(
        '<p class="sub">Every figure is made from this run\'s data; captions name the paper figure it '
        "corresponds to. Click a figure for full size.</p>"
    )
    for g in groups:
        parts.append(_group_html(g))
        if g.title.startswith("Figure 3E"):
            parts.append(_models_table_html(run, df))
    parts.append(_summary_numbers_html(values, "svm", "svm/summary.json"))
    parts.append(_summary_numbers_html(values, "rsa", "rsa values"))
    parts.append(_summary_numbers_html(values, "tuning", "tuning values"))

    # 3 paper vs run
    n_have = sum(1 for f in FACTS if f.key in values and math.isfinite(values[f.key]))
    parts.append('<h2 id="paper-vs-run-section">3. Paper vs this run</h2>')
    parts.append(
        f'<p class="sub">{n_have} of {len(FACTS)} numbers of the paper computed by this run. The last column '
        "cites each paper value by the figure, table or section of Sandbrink, Mamidanna et al., eLife "
        "2023;12:e81499 (doi:10.7554/eLife.81499) it comes from; preprint-era values cite the file of the "
        "original repository, amathislab/DeepDraw, they were read from (pickles of the 2020 preprint, "
        "1-channel spindle inputs) and are rough checks only. "
        "A small run is not expected to match the paper: compare its scale with the paper's.</p>"
    )
    parts.append(_facts_html(values, scale))
    parts.append('<h3 id="paper-tests-section">Statistics over seeds: the paper\'s paired t-tests</h3>')
    parts.append(
        '<p class="sub">Per layer, paired over seeds: ART vs TDT (median tuning scores) and ART-trained vs '
        "untrained (preferred-direction uniformity and invariance), from <code>tuning/tuning_stats.csv</code>. "
        "The paper's t has df = 4 (5 seeds); <i>agrees</i> = same sign and Bonferroni p &lt; 0.05 here.</p>"
    )
    parts.append(paired_tests_html(compare_tests(_read_csv(run.rp.tuning / "tuning_stats.csv"))))

    # 4 provenance
    parts.append('<h2 id="provenance">4. Provenance</h2>')
    prov = [
        [
            "git commit",
            "<br>".join(f"<code>{_esc(c)}</code>" for c in commits)
            or '<span class="missing">no artifacts</span>',
        ],
        ["deepdraw version", _esc(", ".join(dd_versions)) or "—"],
    ]
    if len(commits) > 1:
        prov.append(["note", '<span class="warn">artifacts were written by different commits</span>'])
    parts.append(
        '<table class="kv" id="commit"><tbody>'
        + "".join(f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in prov)
        + "</tbody></table>"
    )
    notes = _config_diff(cfg, found)
    if notes:
        parts.append(
            '<ul class="miss">' + "".join(f'<li class="warn">{_esc(n)}</li>' for n in notes) + "</ul>"
        )
    if found:
        parts.append(
            _table(
                ["artifact", "kind", "git commit", "deepdraw"],
                [
                    [
                        f"<code>{_esc(rel)}</code>",
                        _esc(a.get("kind", "")),
                        f"<code>{_esc(a.get('git_commit', ''))}</code>",
                        _esc(a.get("deepdraw_version", "")),
                    ]
                    for rel, a in found
                ],
            )
        )
    if versions:
        parts.append("<h3>Library versions (recorded in the artifacts)</h3>")
        parts.append(
            _table(["library", "version"], [[_esc(k), _esc(v)] for k, v in sorted(versions.items())])
        )
    else:
        parts.append('<p class="missing">No library versions recorded (no readable artifact).</p>')
    if srows:
        parts.append("<h3>Time and peak memory per stage</h3>")
        parts.append(
            _table(
                ["stage", "status", "wall time", "peak memory (RSS)"],
                [[r[0], r[2], r[3], r[4]] for r in srows],
                [2, 3],
            )
        )
    parts.append("<h3>Resolved configuration</h3>")
    parts.append(f"<pre>{_esc(_toml(cfg.to_dict()))}</pre>")

    parts.append('<h2 id="data">Data</h2>')
    parts.append(data_html)
    parts.append("</main></body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------- entry
def build_report(cfg: Config) -> Path:
    """Write ``<out_dir>/report/index.html`` (self-contained folder); returns its path.

    Every part of the run may be missing: the report shows what exists and lists what does not.
    Raises :class:`DeepDrawError` only when the run folder itself does not exist.
    """
    rp = RunPaths.of(cfg)
    if not rp.root.is_dir():
        raise DeepDrawError(
            f"{rp.root}: run folder not found; run the pipeline first (deepdraw pipeline CONFIG)"
        )
    tmp = rp.root / f".report.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        run = _Run(cfg, tmp)
        stage_rows = _stage_rows(run)
        values, scale = collect_values(cfg)
        df = _models_table(rp)
        if not rp.pcrt_train.exists() or not rp.pcrt_test.exists():
            for p in (rp.pcrt_train, rp.pcrt_test):
                if not p.exists():
                    run.miss(run.rel(p), "not found (stage assemble)")
        groups = [_figures_dataset(run), _figures_svm(run)]
        search_group = _figures_search(run)
        if search_group is not None:
            groups.append(search_group)
        groups.append(_figures_models(run, df))
        if not (rp.svm / "summary.json").exists():
            run.miss("svm/summary.json", "not found (stage svm)")
        groups.append(
            _figures_from(
                run,
                "rsa",
                rp.rsa,
                _RSA_CAPTIONS,
                "Figure 4 — representational similarity (RDMs, CKA, t-SNE)",
                "",
                "no RSA figures (stage rsa)",
            )
        )
        if not (rp.rsa / "rsa_oracle.csv").exists():
            run.miss("rsa/rsa_oracle.csv", "not found (stage rsa)")
        groups.append(
            _figures_from(
                run,
                "tuning",
                rp.tuning,
                _TUNING_CAPTIONS,
                "Figures 5–7 — single-unit tuning",
                "Fig. 5: tuning of spindles and units per layer, ART vs TDT; Fig. 6: population decoding; "
                "Fig. 7: preferred-direction uniformity and invariance across planes.",
                "no tuning figures (stage tuning)",
            )
        )
        if not (rp.tuning / "summary.json").exists():
            run.miss("tuning/summary.json", "not found (stage tuning)")
        data_html = _data_links(run)
        text = _render(run, values, scale, df, groups, stage_rows, data_html)
        (tmp / "index.html").write_text(text, encoding="utf-8")
        final = rp.report
        old = rp.root / f".report.old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report: %s", final / "index.html")
    return final / "index.html"
