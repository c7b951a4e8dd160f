"""Validation of the fast engine against the exact one (:func:`validate_fast_engine`, :func:`compare`, :func:`velocity`)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from .constants import MUSCLES
from .exact import ExactEngine, as_joints
from .fast import FastEngine
from .trajectories import dataset_trajectories

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def velocity(fiber: np.ndarray, lengths: np.ndarray | None = None, dt: float = 0.015) -> np.ndarray:
    """The velocity channel of the dataset: ``np.gradient(L, dt)`` along time over each valid stretch.

    fiber: (n, T, M); lengths (n,) valid frames (None: all). Trajectories shorter than 2 frames and
    frames beyond ``lengths`` get NaN.
    """
    fiber = np.asarray(fiber, dtype=np.float64)
    n, t_max = fiber.shape[:2]
    lens = np.full(n, t_max) if lengths is None else np.asarray(lengths)
    out = np.full_like(fiber, np.nan)
    for i in range(n):
        k = int(lens[i])
        if k >= 2:
            out[i, :k] = np.gradient(fiber[i, :k], dt, axis=0)
    return out


def compare(
    fast: np.ndarray, exact: np.ndarray, lengths: np.ndarray | None = None, dt: float = 0.015
) -> dict[str, Any]:
    """Error figures of fiber lengths ``fast`` vs ``exact`` (n, T, 25) over the valid frames."""
    n, t_max = exact.shape[:2]
    lens = np.full(n, t_max) if lengths is None else np.asarray(lengths)
    valid = np.arange(t_max)[None, :] < lens[:, None]
    a, b = fast[valid], exact[valid]
    both_nan = np.isnan(a) & np.isnan(b)
    one_nan = np.isnan(a) ^ np.isnan(b)
    err = np.where(both_nan, 0.0, np.abs(a - b))
    err = np.where(one_nan, np.inf, err)
    va, vb = velocity(fast, lens, dt)[valid], velocity(exact, lens, dt)[valid]
    ok = np.isfinite(va) & np.isfinite(vb)
    den = float(np.sum(vb[ok] ** 2))
    rel = float(np.sqrt(np.sum((va[ok] - vb[ok]) ** 2) / den)) if den > 0 else float("nan")
    per_m = (
        np.percentile(np.where(np.isfinite(err), err, 1e9), 99.9, axis=0)
        if len(err)
        else np.zeros(len(MUSCLES))
    )
    return {
        "frames": int(valid.sum()),
        "trajectories": int(n),
        "length_err_p999_mm": float(np.percentile(err, 99.9)) if err.size else 0.0,
        "length_err_max_mm": float(err.max(initial=0.0)),
        "length_err_mean_mm": float(np.mean(err[np.isfinite(err)])) if err.size else 0.0,
        "nan_mismatch": int(one_nan.sum()),
        "velocity_rel_rms": rel,
        "length_err_p999_per_muscle_mm": {m: round(float(v), 5) for m, v in zip(MUSCLES, per_m)},
    }


def validate_fast_engine(
    engine: FastEngine | str | os.PathLike | None = None,
    joints: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    *,
    n_traj: int = 200,
    seed: int = 12345,
    exact: ExactEngine | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Fast vs exact engine on dataset-like trajectories: error figures, fallback and speed.

    joints (n, T, 4) degrees (NaN after ``lengths``); default: ``n_traj`` trajectories of
    :func:`dataset_trajectories` (UCI characters through the arm's IK). Returns a dict with
    ``length_err_p999_mm``, ``length_err_max_mm``, ``velocity_rel_rms`` (of ``np.gradient(L, 0.015)``),
    ``fallback_frac`` (frames that needed OpenSim), ``fallback_entry_frac`` (muscle values),
    ``fast_frames_per_s``, ``exact_frames_per_s``, ``muscles_speedup`` and per-muscle figures.
    """
    fe = engine if isinstance(engine, FastEngine) else FastEngine.load(engine)
    if joints is None:
        joints, lengths = dataset_trajectories(n_traj, seed)
    q, valid, squeeze = as_joints(joints, lengths)
    lens = valid.sum(axis=1)
    ex = exact if exact is not None else fe.exact()
    t0 = time.perf_counter()
    ref = ex.lengths(q, lens, quiet=quiet)
    t_exact = time.perf_counter() - t0
    fe._exact = ex  # share the OpenSim model between the two timings (the fallback uses it)
    t0 = time.perf_counter()
    fast, mask = fe.lengths(q, lens, return_fallback=True, quiet=quiet)
    t_fast = time.perf_counter() - t0
    out = compare(fast, ref, lens)
    frames = out["frames"]
    out.update(
        fallback_frac=float(mask[valid].any(axis=-1).mean()) if frames else 0.0,
        fallback_entry_frac=float(mask[valid].mean()) if frames else 0.0,
        fallback_entry_frac_per_muscle={
            m: round(float(v), 4) for m, v in zip(MUSCLES, mask[valid].mean(axis=0))
        },
        exact_frames_per_s=frames / t_exact if t_exact > 0 else float("nan"),
        fast_frames_per_s=frames / t_fast if t_fast > 0 else float("nan"),
    )
    out["muscles_speedup"] = out["fast_frames_per_s"] / out["exact_frames_per_s"]
    return out
