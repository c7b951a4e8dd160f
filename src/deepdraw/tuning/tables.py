"""Result tables of the tuning stage: the tidy tables of every unit, layer, plane and metric
(:func:`build_tables`) and the headline numbers (:func:`headline`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..settings import TuningConfig
from .models import TYPE_NAMES
from .results import ModelResult
from .summary import direction_summary, layer_scores, score_stats, tuned_mask


def build_tables(results: Sequence[ModelResult], t: TuningConfig) -> dict[str, pd.DataFrame]:
    """Tidy tables: ``units``, ``summary``, ``directions``, ``planes`` and the long ``metrics``."""
    units, summ, dirs, planes, metrics = [], [], [], [], []
    for r in results:
        ident = r.identity()
        for lf in r.layers:
            for o in lf.orient:
                for ttype in TYPE_NAMES:
                    if ttype == "labels" and o != next(iter(lf.orient)):
                        continue  # label tuning is one fit per layer, reported as orientation "all"
                    u, base, stats = _type_rows(lf, o, ttype, ident, t)
                    units.append(u)
                    summ.append({**base, **stats})
                    metrics += [
                        {**base, "metric": m, "value": stats[m]} for m in ("fraction_tuned", "median", "q90")
                    ]
                base, d, p_rows = _direction_rows(lf, o, ident, t)
                dirs.append(d)
                metrics += [
                    {**base, "tuning_type": "dir", "metric": m, "value": d[m]}
                    for m in ("uniformity", "invariance")
                ]
                planes += p_rows
    return {
        "units": pd.concat(units, ignore_index=True) if units else pd.DataFrame(),
        "summary": pd.DataFrame(summ),
        "directions": pd.DataFrame(dirs),
        "planes": pd.DataFrame(planes),
        "metrics": pd.DataFrame(metrics),
    }


def _median_input(results: Sequence[ModelResult], channel: int, ttype: str, t: TuningConfig, o: str) -> float:
    for r in results:
        for lf in r.layers:
            if lf.index == 0 and o in lf.orient:
                sc, dead = layer_scores(lf, o, ttype, t)
                sel = (np.tile(np.arange(lf.channels), lf.rows) == channel) & ~dead & np.isfinite(sc)
                return float(np.median(sc[sel])) if sel.any() else float("nan")
    return float("nan")


def _input_invariance(results: Sequence[ModelResult], o: str, t: TuningConfig) -> float:
    for r in results:
        for lf in r.layers:
            if lf.index == 0 and o in lf.orient:
                return direction_summary(lf, o, t)["invariance"].mad
    return float("nan")


def headline(results: Sequence[ModelResult], t: TuningConfig) -> dict[str, Any]:
    """Spindle-input medians (paper: 0.36, 0.58, 0.83, 0.225, 0.439) and final-layer label selectivity.

    Spindle values come from the input layer (identical for every model of a run) in horizontal planes;
    channel 0 = muscle length, 1 = muscle velocity.
    """
    o = "horizontal"
    out: dict[str, Any] = {
        "spindle_length_position_median": _median_input(results, 0, "pos_cart", t, o),
        "spindle_length_direction_median": _median_input(results, 0, "dir", t, o),
        "spindle_length_dirspeed_median": _median_input(results, 0, "dirspeed", t, o),
        "spindle_velocity_direction_median": _median_input(results, 1, "dir", t, o),
        "spindle_velocity_dirspeed_median": _median_input(results, 1, "dirspeed", t, o),
        "spindle_velocity_position_median": _median_input(results, 1, "pos_cart", t, o),
        "spindle_pd_invariance_horizontal": _input_invariance(results, "horizontal", t),
        "spindle_pd_invariance_vertical": _input_invariance(results, "vertical", t),
    }
    final: dict[str, float] = {}
    final_max: dict[str, float] = {}
    for r in results:
        lf = r.layers[-1]
        v = lf.label_score(t.label_index)
        v = v[np.isfinite(v)]
        final[r.name] = float(np.median(v)) if v.size else float("nan")
        w = lf.label_max[np.isfinite(lf.label_max)]
        final_max[r.name] = float(w.max()) if w.size else float("nan")
    out["label_selectivity_final"] = final
    out["label_selectivity_final_unit_max"] = final_max
    return out


def _type_rows(lf, o: str, ttype: str, ident: dict, t: TuningConfig) -> tuple[pd.DataFrame, dict, dict]:
    """One tuning type in one orientation of one layer: its per-unit table, the identity of its rows
    (model, layer, orientation, tuning type) and its score statistics (:func:`score_stats`)."""
    U = lf.n_units
    oname = "all" if ttype == "labels" else o
    sc, dead = layer_scores(lf, o, ttype, t)
    base = {**ident, "layer": lf.name, "layer_index": lf.index, "orientation": oname, "tuning_type": ttype}
    units = pd.DataFrame(
        {
            **{k: [v] * U for k, v in ident.items()},
            "layer": lf.name,
            "layer_index": lf.index,
            "orientation": oname,
            "unit": np.arange(U),
            "row": np.repeat(np.arange(lf.rows), lf.channels),
            "channel": np.tile(np.arange(lf.channels), lf.rows),
            "tuning_type": ttype,
            "score": sc,
            "dead": dead,
            "tuned": tuned_mask(sc, dead, t.r2_threshold),
        }  # fmt: skip
    )
    return units, base, score_stats(sc, dead, t.r2_threshold, t.exclude_below)


def _direction_rows(lf, o: str, ident: dict, t: TuningConfig) -> tuple[dict, dict, list[dict]]:
    """One orientation of one layer: the identity of its rows (model, layer, orientation), its
    ``directions`` row (uniformity, invariance) and its ``planes`` rows."""
    ds = direction_summary(lf, o, t)
    inv = ds["invariance"]
    base = {**ident, "layer": lf.name, "layer_index": lf.index, "orientation": o}
    row = {
        **base,
        "n_dir_tuned": int(ds["tuned"].sum()),
        "uniformity": ds["uniformity"],
        "invariance": inv.mad,
        "n_planes_used": int(np.isfinite(inv.per_plane).sum()),
        "reference_level": float(inv.levels[inv.reference]) if inv.reference >= 0 else np.nan,
    }  # fmt: skip
    of = lf.orient[o]
    planes = [
        {
            **base,
            "level": float(lv),
            "is_reference": k == inv.reference,
            "n_train_points": int(of.plane_n[k, 0]),
            "n_test_points": int(of.plane_n[k, 1]),
            "n_tuned": int(tuned_mask(of.plane_r2[k], of.dead, t.r2_threshold).sum()),
            "n_units_compared": int(inv.n_units[k]),
            "mean_abs_deviation": float(inv.per_plane[k]),
        }  # fmt: skip
        for k, lv in enumerate(inv.levels)
    ]
    return base, row, planes
