"""Kinematic features of the hand trajectory for single-unit tuning (original: single_cell/rowwise_neuron_curves.py, X_data).

Every tuning model is a linear model in a few columns derived from one 2-D vector per frame (a
*feature set*, ``fset``):

=========  ==================================================================================
fset       2-D vector per frame (cm, frames)
=========  ==================================================================================
vel        hand velocity, ``np.gradient`` with unit spacing (cm / frame), as the original
acc        hand acceleration, ``np.gradient`` of the velocity (cm / frame^2)
ee         hand position in the plane (cm, origin at the shoulder's projection)
eepolar    hand position relative to the position at movement onset (``start_id``), cm
=========  ==================================================================================

Horizontal planes (z constant) use the (x, y) components, vertical planes (x constant) use (y, z).
From each vector (u, v) the seven *master columns* :data:`COLUMNS` are built:
``1, r, theta, cos theta, sin theta, r cos theta (= u), r sin theta (= v)`` with ``r = |(u, v)|`` and
``theta = atan2(v, u)`` in (-pi, pi]. Where ``r <= min_norm`` the direction is undefined: theta, cos and
sin are NaN and the frame is dropped from every model of that feature set (as the original did).

Per-frame units leave every R^2 unchanged (each model has a bias and is linear in the scaled
quantity, and directions are scale-free); only the coefficients of the speed / magnitude terms scale.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeepDrawError

FSETS: tuple[str, ...] = ("vel", "acc", "ee", "eepolar")
"""Feature sets, in the order used in result arrays."""

COLUMNS: tuple[str, ...] = ("1", "r", "theta", "cos", "sin", "rcos", "rsin")
"""Master columns built from each feature set's 2-D vector."""

ORIENTATIONS: tuple[str, ...] = ("horizontal", "vertical")

PLANE_AXES: dict[str, tuple[int, int]] = {"horizontal": (0, 1), "vertical": (1, 2)}
"""Components of {W} (x=0, y=1, z=2) spanning each plane orientation."""

LEVEL_AXIS: dict[str, int] = {"horizontal": 2, "vertical": 0}
"""Component of {W} that is constant within a plane (z for horizontal, x for vertical)."""


def polar(u: np.ndarray, v: np.ndarray, min_norm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Norm and signed angle to +u of the vectors (u, v); the angle is NaN where the norm <= min_norm."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    theta = np.where(r > min_norm, theta, np.nan)
    return r, theta


def master_columns(vec: np.ndarray, min_norm: float = 0.0) -> np.ndarray:
    """The seven :data:`COLUMNS` of 2-D vectors ``vec`` (..., 2) -> (..., 7) float64."""
    vec = np.asarray(vec, dtype=np.float64)
    u, v = vec[..., 0], vec[..., 1]
    r, theta = polar(u, v, min_norm)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(theta)
        cos = np.where(ok, u / np.where(ok, r, 1.0), np.nan)
        sin = np.where(ok, v / np.where(ok, r, 1.0), np.nan)
    return np.stack([np.ones_like(r), r, theta, cos, sin, u, v], axis=-1)


def project(ee: np.ndarray, orientation: str) -> np.ndarray:
    """Hand coordinates (n, 3, T) in {W} -> the 2 in-plane components (n, T, 2) of ``orientation``."""
    if orientation not in PLANE_AXES:
        raise DeepDrawError(
            f"orientation '{orientation}' is unknown; expected one of {', '.join(ORIENTATIONS)}"
        )
    a, b = PLANE_AXES[orientation]
    return np.stack([ee[:, a, :], ee[:, b, :]], axis=-1).astype(np.float64)


def plane_vectors(pos: np.ndarray, start_id: np.ndarray) -> dict[str, np.ndarray]:
    """2-D vectors of every feature set at every frame.

    Args:
        pos: in-plane hand position (n, T, 2), cm.
        start_id: movement onset frame per trajectory (n,).

    Returns:
        fset -> (n, T, 2) float64: ``vel`` (cm/frame), ``acc`` (cm/frame^2), ``ee`` (cm) and
        ``eepolar`` (cm, relative to the position at ``start_id``).
    """
    n, t, _ = pos.shape
    if t < 3:
        raise DeepDrawError(f"hand trajectories have {t} frames; expected at least 3 to take derivatives")
    vel = np.gradient(pos, axis=1)
    acc = np.gradient(vel, axis=1)
    s = np.clip(np.asarray(start_id, dtype=np.int64), 0, t - 1)
    rel = pos - pos[np.arange(n), s][:, None, :]
    return {"vel": vel, "acc": acc, "ee": pos, "eepolar": rel}


def plane_levels(
    ee: np.ndarray, orientation: str, tol: float = 0.5, where: str = "activations"
) -> tuple[np.ndarray, np.ndarray]:
    """Which plane each trajectory lies in.

    The level coordinate (z for horizontal, x for vertical) must be constant within a trajectory (to
    ``tol`` cm); trajectories whose levels differ by less than ``tol`` (single linkage) share a plane,
    whose level is the mean of its members rounded to 0.01 cm.

    Args:
        ee: hand coordinates (n, 3, T) in {W}, cm, all of ``orientation``.

    Returns:
        ``levels`` (L,) sorted, and ``index`` (n,) into ``levels``.
    """
    axis = LEVEL_AXIS[orientation]
    coord = np.asarray(ee[:, axis, :], dtype=np.float64)
    if coord.shape[0] == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    ptp = np.ptp(coord, axis=1)
    bad = np.flatnonzero(ptp > tol)
    if bad.size:
        name = "xyz"[axis]
        raise DeepDrawError(
            f"{where}: key 'kinematics/endeffector_coords' sample {int(bad[0])} is labelled {orientation} but "
            f"its {name} varies by {ptp[bad[0]]:.3g} cm; expected a constant {name} (within {tol} cm)"
        )
    val = np.median(coord, axis=1)
    order = np.argsort(val, kind="stable")
    gaps = np.diff(val[order]) > tol
    cluster_sorted = np.concatenate([[0], np.cumsum(gaps)])
    cluster = np.empty_like(cluster_sorted)
    cluster[order] = cluster_sorted
    n_cl = int(cluster_sorted[-1]) + 1
    levels = np.array([np.round(val[cluster == k].mean(), 2) for k in range(n_cl)])
    return levels, cluster.astype(np.int64)


def frame_mask(
    centres: np.ndarray,
    n_in: int,
    start_id: np.ndarray,
    end_id: np.ndarray,
    window: str = "movement",
    edge: int = 32,
    trim: str = "fixed",
) -> np.ndarray:
    """Which output frames of a layer enter the tuning fits, per trajectory.

    Args:
        centres: input frame at the receptive-field centre of each output frame (T_l,).
        n_in: number of input frames (320).
        start_id: movement onset per trajectory (n,).
        end_id: movement offset per trajectory (n,).
        window: ``"movement"`` keeps frames whose centre lies in [start_id, end_id); ``"all"`` keeps all.
        edge: edge trimming; ``tcoff`` = number of centres <= ``edge``.
        trim: ``"fixed"`` keeps output frames [tcoff, T_l - tcoff) (both ends of every layer);
            ``"original"`` keeps [tcoff, n_in - tcoff) as the original did, which for strided layers
            (T_l < n_in) trims only the start (a bug of the original's tuning fits, docs/deviations.md); ``"none"`` keeps every frame.

    Returns:
        (n, T_l) bool.
    """
    centres = np.asarray(centres, dtype=np.int64)
    t_l = centres.shape[0]
    keep_t = np.ones(t_l, dtype=bool)
    if trim != "none":
        tcoff = int(np.count_nonzero(centres <= edge))
        stop = t_l - tcoff if trim == "fixed" else n_in - tcoff
        keep_t[:tcoff] = False
        if stop < t_l:
            keep_t[max(stop, 0) :] = False
    start = np.asarray(start_id, dtype=np.int64)[:, None]
    end = np.asarray(end_id, dtype=np.int64)[:, None]
    if window == "movement":
        in_win = (centres[None, :] >= start) & (centres[None, :] < end)
    else:
        in_win = np.ones((start.shape[0], t_l), dtype=bool)
    return in_win & keep_t[None, :]


def movement_frames(centres: np.ndarray, start_id: np.ndarray, end_id: np.ndarray) -> np.ndarray:
    """Output frames whose centre lies within the movement, per trajectory (n, T_l) bool.

    A trajectory with no such frame (a short movement between the centres of a coarse layer) gets the
    frame whose centre is nearest the middle of its movement. Used for label selectivity.
    """
    centres = np.asarray(centres, dtype=np.int64)
    start = np.asarray(start_id, dtype=np.int64)[:, None]
    end = np.asarray(end_id, dtype=np.int64)[:, None]
    m = (centres[None, :] >= start) & (centres[None, :] < end)
    empty = ~m.any(axis=1)
    if empty.any():
        mid = 0.5 * (start[empty, 0] + end[empty, 0] - 1)
        nearest = np.argmin(np.abs(centres[None, :] - mid[:, None]), axis=1)
        m[np.flatnonzero(empty), nearest] = True
    return m
