"""Section 3's numbers: every value of :data:`deepdraw.report.facts.FACTS` this run computed
(:func:`collect_values`), from the run folder's summaries and tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from ..paths import RunPaths, stage_summary
from ..settings import Config
from .common import family_of, flatten, fmt_num, h5_rows, is_num, parse_model, read_csv, read_json, truthy

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- values
def models_table(rp: RunPaths):
    df = read_csv(rp.models / "summary.csv")
    if df is None or df.empty or "model" not in df.columns:
        return None
    if "state" in df.columns:
        df["_trained"] = df["state"].astype(str).str.lower() == "trained"
    elif "trained" in df.columns:
        df["_trained"] = df["trained"].map(truthy)
    else:
        df["_trained"] = ~df["model"].astype(str).str.match(r".*_\d+r$")
    if "family" not in df.columns:
        df["family"] = df["model"].map(family_of)
    if "task" not in df.columns:
        df["task"] = df["model"].map(lambda n: "tdt" if "_r_" in str(n) else "art")
    if "architecture" not in df.columns:
        df["architecture"] = df["model"].map(lambda n: (parse_model(str(n)) or {"arch": str(n)})["arch"])
    df["architecture"] = df["architecture"].astype(str).str.replace("_r_", "_", regex=False)
    return df


def _mean_sem(vals: Sequence[float]) -> tuple[float, float, float, int]:
    import numpy as np

    v = np.asarray([x for x in vals if is_num(x)], dtype=float)
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
    odf["_trained"] = odf["trained"].map(truthy) if "trained" in odf.columns else True
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
        vals = [float(v) for k, v in per_model.items() if wanted(str(k)) and is_num(v)]
        umax = (summary or {}).get("label_selectivity_final_unit_max")
        if isinstance(umax, dict):
            u = [float(v) for k, v in umax.items() if wanted(str(k)) and is_num(v)]
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
            lab = lab[lab["trained"].map(truthy)]
        lab = lab[lab["model"].astype(str).map(lambda n: family_of(n) == "spatial_temporal")]
        if not lab.empty:
            last = lab.loc[lab.groupby("model")["layer_index"].idxmax()]
            vals = [float(v) for v in last["median"] if is_num(v)]
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
    rp = RunPaths.of(cfg)
    v: dict[str, float] = {}
    scale: dict[str, str] = {}
    n_tr, n_te = _dataset_values(cfg, rp, v, scale)
    # svm
    s = read_json(stage_summary(rp.svm))
    if s is not None:
        flatten(s, "svm", v)
    if n_tr is not None and n_te is not None:
        mt = cfg.svm.max_train
        used = v.get("svm.n_train_used", min(n_tr, mt) if mt else n_tr)
        pairs = f", {fmt_num(v['svm.n_pairs'], 0)} pairs" if "svm.n_pairs" in v else ""
        scale["svm"] = f"{fmt_num(used, 0)} train / {fmt_num(n_te, 0)} test samples{pairs}"
        scale["svm.short"] = f"{fmt_num(used, 0)} / {fmt_num(n_te, 0)} samples"
    _models_scale(cfg, rp, v, scale)
    # rsa
    rs = read_json(stage_summary(rp.rsa))
    if rs is not None:
        flatten(rs, "rsa", v)
    _rsa_values(read_csv(rp.rsa / "rsa_oracle.csv"), v)
    n_act = min(cfg.activations.n_samples, n_te) if n_te else cfg.activations.n_samples
    if any(k.startswith("rsa.") for k in v):
        scale["rsa"] = f"{fmt_num(n_act, 0)} test samples ({cfg.rsa.per_class} per class for RDMs)"
        scale["rsa.short"] = f"{fmt_num(n_act, 0)} samples"
    # tuning
    ts = read_json(stage_summary(rp.tuning))
    if ts is not None:
        flatten(ts, "tuning", v)
    _label_values(ts, read_csv(rp.tuning / "tuning_summary.csv"), v)
    if any(k.startswith("tuning.") for k in v):
        nm = (ts or {}).get("n_models")
        scale["tuning"] = f"{fmt_num(n_act, 0)} test samples" + (f", {nm} models" if is_num(nm) else "")
        scale["tuning.short"] = f"{fmt_num(n_act, 0)} samples"
    return v, scale


def _dataset_values(
    cfg: Config, rp: RunPaths, v: dict[str, float], scale: dict[str, str]
) -> tuple[float | None, float | None]:
    """``dataset.*`` values and scale from the PCRT files; returns their row counts (None: no file)."""
    import numpy as np

    n_tr, c_tr = h5_rows(rp.pcrt_train)
    n_te, c_te = h5_rows(rp.pcrt_test)
    if n_tr is not None or n_te is not None:
        v["dataset.n_candidates"] = float(cfg.kinematics.n_candidates)
    if n_tr is not None:
        v["dataset.n_train"] = n_tr
    if n_te is not None:
        v["dataset.n_test"] = n_te
    if n_tr is None or n_te is None:
        return n_tr, n_te
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
        f"{fmt_num(cfg.kinematics.n_candidates, 0)} candidates → {fmt_num(n_tr + n_te, 0)} samples"
    )
    scale["dataset.short"] = f"{fmt_num(n_tr + n_te, 0)} samples"
    return n_tr, n_te


def _models_scale(cfg: Config, rp: RunPaths, v: dict[str, float], scale: dict[str, str]) -> None:
    """``models.*`` values (:func:`_model_values`) and the models' scale: seeds, epochs, train samples."""
    df = models_table(rp)
    if df is None:
        return
    _model_values(df, v)
    tr = df[df["_trained"]]
    seeds = sorted({int(x) for x in tr["seed"] if is_num(x)}) if "seed" in tr.columns else []
    ep = [float(x) for x in tr.get("epochs", []) if is_num(x)]
    n_train = _first_metric(rp, "n_train")
    bits = [f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"]
    if ep:
        bits.append(f"{span(ep)} epochs (max {cfg.train.max_epochs})")
    if n_train:
        bits.append(f"{fmt_num(n_train, 0)} train samples")
    scale["models"] = ", ".join(bits)
    scale["models.short"] = f"{len(seeds)} seeds · {span(ep)} ep." if ep else bits[0]


def span(xs: Sequence[float]) -> str:
    lo, hi = min(xs), max(xs)
    return fmt_num(lo, 0) if lo == hi else f"{fmt_num(lo, 0)}–{fmt_num(hi, 0)}"


def _first_metric(rp: RunPaths, key: str) -> float | None:
    for p in sorted(rp.models.glob("*/metrics.json")) if rp.models.is_dir() else []:
        d = read_json(p)
        if d and is_num(d.get(key)):
            return float(d[key])
    return None
