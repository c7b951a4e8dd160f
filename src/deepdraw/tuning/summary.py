"""Summaries of tuning results: fractions, quantiles, preferred directions, uniformity, plane
invariance, and paired statistics over seeds (original: single_cell/prefdir_controls.py, unit_classification.py, generalization.py, comparisons.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pandas as pd
from scipy import stats as st

from ..errors import DeepDrawError
from ..names import identify

if TYPE_CHECKING:
    from ..settings import TuningConfig
    from .results import LayerFit


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def tuned_mask(score: np.ndarray, dead: np.ndarray | None = None, threshold: float = 0.2) -> np.ndarray:
    """Units with a finite score above ``threshold`` that are not dead."""
    score = np.asarray(score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        m = np.isfinite(score) & (score > threshold)
    if dead is not None:
        m &= ~np.asarray(dead, dtype=bool)
    return m


def score_stats(
    score: np.ndarray, dead: np.ndarray, threshold: float = 0.2, exclude_below: float = -0.1
) -> dict[str, float]:
    """Counts and distribution of one tuning score over the units of a layer.

    Dead units are reported apart (``n_dead``) and never counted as tuned; scores below
    ``exclude_below`` (failed fits) are left out of the median, mean and 90th percentile (``n_excluded``).
    ``fraction_tuned`` = tuned / alive units.
    """
    score = np.asarray(score, dtype=np.float64)
    dead = np.asarray(dead, dtype=bool)
    alive = ~dead
    finite = np.isfinite(score) & alive
    with np.errstate(invalid="ignore"):
        excluded = finite & (score < exclude_below)
    kept = score[finite & ~excluded]
    n_tuned = int(tuned_mask(score, dead, threshold).sum())
    n_alive = int(alive.sum())
    return {
        "n_units": int(score.size),
        "n_dead": int(dead.sum()),
        "n_excluded": int(excluded.sum()),
        "n_scored": int(kept.size),
        "n_tuned": n_tuned,
        "fraction_tuned": n_tuned / n_alive if n_alive else np.nan,
        "median": float(np.median(kept)) if kept.size else np.nan,
        "mean": float(np.mean(kept)) if kept.size else np.nan,
        "q90": float(np.quantile(kept, 0.9)) if kept.size else np.nan,
    }


def preferred_directions(coef: np.ndarray) -> np.ndarray:
    """Preferred direction atan2(c1, c0) of direction-model coefficients (..., >=2) -> (...), radians."""
    coef = np.asarray(coef, dtype=np.float64)
    return np.arctan2(coef[..., 1], coef[..., 0])


def pd_histogram(pd_: np.ndarray, n_bins: int = 18) -> np.ndarray:
    """Counts of preferred directions in ``n_bins`` equal bins on [-pi, pi]."""
    pd_ = np.asarray(pd_, dtype=np.float64)
    pd_ = pd_[np.isfinite(pd_)]
    counts, _ = np.histogram(pd_, bins=n_bins, range=(-np.pi, np.pi))
    return counts


def pd_uniformity(pd_: np.ndarray, n_bins: int = 18) -> float:
    """Deviation from a uniform PD distribution: sum_bins |count - mean count| / n tuned units.

    0 for a perfectly uniform histogram, 2 (1 - 1/n_bins) when every PD falls in one bin; NaN when
    there is no PD.
    """
    counts = pd_histogram(pd_, n_bins)
    n = counts.sum()
    if n == 0:
        return float("nan")
    return float(np.abs(counts - counts.mean()).sum() / n)


@dataclass
class Invariance:
    """Plane invariance of preferred directions for one layer and orientation."""

    levels: np.ndarray  # (L,) plane levels, cm
    reference: int  # index of the reference plane in ``levels``
    deviation: np.ndarray  # (L, U) wrapped PD_plane - PD_reference, NaN where not tuned in both
    per_plane: np.ndarray  # (L,) mean |deviation|; NaN for < min_units tuned units and for the reference
    n_units: np.ndarray  # (L,) units tuned in the plane and in the reference plane
    mad: float  # mean of ``per_plane`` over the usable planes (NaN if none)


def reference_index(levels: np.ndarray, reference: float, tol: float = 0.5) -> int:
    """Index of the plane nearest ``reference`` (within ``tol`` cm), or -1 if none."""
    levels = np.asarray(levels, dtype=np.float64)
    if levels.size == 0:
        return -1
    i = int(np.argmin(np.abs(levels - reference)))
    return i if abs(levels[i] - reference) <= tol else -1


def plane_invariance(
    pd_: np.ndarray,
    tuned: np.ndarray,
    levels: np.ndarray,
    reference: float,
    min_units: int = 3,
    tol: float = 0.5,
) -> Invariance:
    """Invariance of preferred directions across parallel planes.

    For each unit tuned (direction-model test R^2 above threshold) both in a plane and in the
    reference plane, deviation = wrap(PD_plane - PD_reference) in [-pi, pi). Per plane, the mean
    absolute deviation over those units (NaN when fewer than ``min_units``); the reference plane is
    left out; MAD = mean over the remaining planes.

    Args:
        pd_: preferred directions (L planes, U units), radians.
        tuned: (L, U) bool.
        levels: (L,) plane levels (cm); ``reference`` is matched within ``tol``.
    """
    pd_ = np.asarray(pd_, dtype=np.float64)
    tuned = np.asarray(tuned, dtype=bool)
    levels = np.asarray(levels, dtype=np.float64)
    if pd_.shape != tuned.shape or pd_.shape[0] != levels.shape[0]:
        raise DeepDrawError(
            f"plane invariance: preferred directions {pd_.shape}, tuned mask {tuned.shape} and levels "
            f"{levels.shape} disagree; expected (L, U), (L, U) and (L,)"
        )
    ref = reference_index(levels, reference, tol)
    L = levels.shape[0]
    if ref < 0:
        nan = np.full(L, np.nan)
        return Invariance(levels, -1, np.full(pd_.shape, np.nan), nan, np.zeros(L, int), float("nan"))
    both = tuned & tuned[ref][None, :]
    dev = np.where(both, wrap_angle(pd_ - pd_[ref][None, :]), np.nan)
    n_units = both.sum(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per = np.nanmean(np.abs(dev), axis=1)
    per = np.where(n_units >= min_units, per, np.nan)
    per[ref] = np.nan
    usable = np.isfinite(per)
    mad = float(per[usable].mean()) if usable.any() else float("nan")
    return Invariance(levels, ref, dev, per, n_units, mad)


def mean_ci(values: Sequence[float] | np.ndarray, conf: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and t-based confidence interval over finite values: (mean, low, high, n)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    m = float(v.mean())
    if n == 1:
        return m, float("nan"), float("nan"), 1
    h = float(st.t.ppf(0.5 + conf / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return m, m - h, m + h, n


# ----------------------------------------------------------------------------- models and seeds


class ModelIdent(TypedDict):
    """What :func:`parse_model_name` reads from a model name."""

    arch: str
    seed: int
    untrained: bool


def parse_model_name(name: str) -> ModelIdent:
    """Architecture key, seed and untrained flag from a model directory name
    (:func:`deepdraw.names.split_model_name`).

    ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293_1r`` -> arch
    ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``, seed 1, untrained True. The regression marker
    ``_r_`` after the family is dropped from ``arch`` so ART and TDT models of the same architecture
    share a key. Names without a seed get seed -1; a name outside the grammar is its own arch.
    """
    parts = identify(name)
    if parts is None:
        return {"arch": name, "seed": -1, "untrained": False}
    return {
        "arch": parts.arch,
        "seed": -1 if parts.seed is None else parts.seed,
        "untrained": parts.untrained,
    }


def _constant(d: np.ndarray) -> bool:
    """Whether paired differences are the same up to rounding: their t statistic is undefined (a zero
    standard deviation; with float noise ``ttest_rel`` would give t ~ 1e15), e.g. a metric that takes
    few discrete values equal in every seed."""
    return bool(np.std(d) <= 1e-9 * max(1.0, float(np.max(np.abs(d)))))


def paired_tests(
    df: pd.DataFrame,
    comparisons: Sequence[tuple[str, dict, dict]] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired t-tests over seeds, per layer, Bonferroni-corrected over the layers tested.

    Args:
        df: long table with columns ``arch, task, trained, seed, layer, layer_index, orientation,
            tuning_type, metric, value`` (one row per model and layer).
        comparisons: (name, filter A, filter B) where a filter fixes ``task`` and / or ``trained``;
            the other identity columns (arch, and task or trained where not fixed) must agree and
            models are paired by seed. Default: trained vs untrained for every task, ART vs TDT and
            ART vs TDT-PV (trained models).

    Returns:
        one row per comparison, group, metric and layer: ``n_pairs, mean_a, mean_b, t, p,
        p_bonferroni, significant`` (two-sided; the Bonferroni factor is the number of layers with a
        finite t in that family). Where the differences are the same in every pair (up to rounding) t
        and p are NaN: the test is undefined, not significant.
    """
    cols = [
        "comparison", "arch", "task", "orientation", "tuning_type", "metric", "layer", "layer_index",
        "n_pairs", "mean_a", "mean_b", "t", "p", "p_bonferroni", "significant",
    ]  # fmt: skip
    if df.empty:
        return pd.DataFrame(columns=cols)
    if comparisons is None:
        comparisons = [
            ("trained_vs_untrained", {"trained": True}, {"trained": False}),
            ("art_vs_tdt", {"task": "art", "trained": True}, {"task": "tdt", "trained": True}),
            ("art_vs_tdt_pv", {"task": "art", "trained": True}, {"task": "tdt_pv", "trained": True}),
        ]
    rows = []
    for name, fa, fb in comparisons:
        a = df
        b = df
        for k, v in fa.items():
            a = a[a[k] == v]
        for k, v in fb.items():
            b = b[b[k] == v]
        if a.empty or b.empty:
            continue
        keys = ["arch", "orientation", "tuning_type", "metric", "layer", "layer_index", "seed"]
        if "task" not in fa:
            keys.insert(1, "task")
        m = a.merge(b, on=keys, suffixes=("_a", "_b"))
        fam_keys = [k for k in keys if k not in ("layer", "layer_index", "seed")]
        for fam, g in m.groupby(fam_keys, sort=True, dropna=False):
            fam = dict(zip(fam_keys, fam if isinstance(fam, tuple) else (fam,)))
            task = fam.get("task", f"{fa.get('task', '')}/{fb.get('task', '')}")
            fam_rows = []
            for (layer, li), gl in g.groupby(["layer", "layer_index"], sort=False):
                fam_rows.append(
                    {
                        "comparison": name,
                        "arch": fam["arch"],
                        "task": task,
                        "orientation": fam["orientation"],
                        "tuning_type": fam["tuning_type"],
                        "metric": fam["metric"],
                        "layer": layer,
                        "layer_index": int(li),
                        **_paired_test(gl["value_a"].to_numpy(float), gl["value_b"].to_numpy(float)),
                    }  # fmt: skip
                )
            rows.extend(_bonferroni(fam_rows, alpha))
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(
        ["comparison", "arch", "task", "orientation", "metric", "tuning_type", "layer_index"]
    )


def _paired_test(va: np.ndarray, vb: np.ndarray) -> dict:
    """``n_pairs, mean_a, mean_b, t, p`` of a two-sided paired t-test over the pairs where both values
    are finite; t and p are NaN with fewer than 2 pairs or when every difference is the same."""
    ok = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[ok], vb[ok]
    t = p = np.nan
    if va.size >= 2 and not _constant(va - vb):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = st.ttest_rel(va, vb)
        t, p = float(res.statistic), float(res.pvalue)
    return {
        "n_pairs": int(va.size),
        "mean_a": float(va.mean()) if va.size else np.nan,
        "mean_b": float(vb.mean()) if vb.size else np.nan,
        "t": t,
        "p": p,
    }


def _bonferroni(rows: list[dict], alpha: float) -> list[dict]:
    """Adds ``p_bonferroni`` (p times the number of finite p in ``rows``, at most 1) and ``significant``."""
    n_tests = sum(np.isfinite(r["p"]) for r in rows)
    for r in rows:
        r["p_bonferroni"] = min(1.0, r["p"] * n_tests) if np.isfinite(r["p"]) else np.nan
        r["significant"] = bool(np.isfinite(r["p_bonferroni"]) and r["p_bonferroni"] < alpha)
    return rows


def group_summary(df: pd.DataFrame, conf: float = 0.95) -> pd.DataFrame:
    """Mean and t-based CI over seeds of every metric, per (arch, task, trained, layer, ...)."""
    keys = ["arch", "task", "trained", "orientation", "tuning_type", "metric", "layer", "layer_index"]
    cols = [*keys, "n_seeds", "mean", "ci_low", "ci_high"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for k, g in df.groupby(keys, sort=True, dropna=False):
        m, lo, hi, n = mean_ci(g["value"].to_numpy(float), conf)
        rows.append({**dict(zip(keys, k)), "n_seeds": n, "mean": m, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- per layer


def _reference(o: str, t: TuningConfig) -> float:
    return t.reference_horizontal if o == "horizontal" else t.reference_vertical


def layer_scores(lf: LayerFit, o: str, ttype: str, t: TuningConfig) -> tuple[np.ndarray, np.ndarray]:
    """Scores (U,) and dead flags (U,) of one tuning type (labels: orientation-independent)."""
    if ttype == "labels":
        return lf.label_score(t.label_index), lf.label_dead
    of = lf.orient[o]
    return of.r2(ttype), of.dead


def direction_summary(lf: LayerFit, o: str, t: TuningConfig) -> dict[str, Any]:
    """PDs of direction-tuned units, their uniformity, and plane invariance for one layer/orientation."""
    of = lf.orient[o]
    tuned = tuned_mask(of.r2("dir"), of.dead, t.r2_threshold)
    pds = of.preferred_directions()[tuned]
    inv = plane_invariance(
        of.plane_pd,
        tuned_mask(of.plane_r2, np.broadcast_to(of.dead, of.plane_r2.shape), t.r2_threshold),
        of.levels,
        _reference(o, t),
        t.min_plane_units,
        t.plane_tol_cm,
    )
    return {"tuned": tuned, "pd": pds, "uniformity": pd_uniformity(pds, t.pd_bins), "invariance": inv}
