"""The batched IK engine: thousands of trajectories at once, frame after frame (:func:`ik_batch`).

Same problem as the reference engine (:mod:`.reference`): at each frame, the posture nearest
(Euclidean norm in degrees) to the previous frame's posture whose hand is on the target, within the
joint limits, solved along the swivel (:mod:`.swivel`). :func:`joints_from_swivel` and
:func:`ik_from_swivel` rebuild the same joints from stored swivel angles without the search;
:func:`reach_error` is the single-point reach test of the start-point search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import DeepDrawError
from .geometry import Q_MAX, Q_MIN, Q_START, fk, world_to_shoulder
from .swivel import LIM_RAD, Swivel, solve_frame

__all__ = ["ik_batch", "joints_from_swivel", "ik_from_swivel", "reach_error"]


def _validate_targets(targets_w: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    targets_w = np.asarray(targets_w, dtype=float)
    if targets_w.ndim != 3 or targets_w.shape[2] != 3:
        raise DeepDrawError(f"targets_w: expected shape (n, T, 3) in cm, got {targets_w.shape}")
    n, t_max, _ = targets_w.shape
    finite = np.all(np.isfinite(targets_w), axis=2)
    if lengths is None:
        lengths = np.where(finite.any(axis=1), t_max - np.argmax(finite[:, ::-1], axis=1), 0)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
            raise DeepDrawError(f"lengths: expected ({n},) integers, got {lengths.shape} {lengths.dtype}")
        if np.any((lengths < 0) | (lengths > t_max)):
            raise DeepDrawError(f"lengths: expected values in [0, {t_max}]")
    valid = np.arange(t_max)[None, :] < lengths[:, None]
    if np.any(valid & ~finite):
        i = int(np.argmax(np.any(valid & ~finite, axis=1)))
        raise DeepDrawError(
            f"targets_w: trajectory {i} has NaN/inf within its first {int(lengths[i])} frames "
            "(expected NaN only as padding after the end)"
        )
    return targets_w, lengths.astype(np.int64)


def ik_batch(
    targets_w: np.ndarray,
    lengths: np.ndarray | None = None,
    q0: Sequence[float] | np.ndarray = Q_START,
    *,
    n_grid: int = 32,
    n_newton: int = 12,
    progress: bool = False,
    return_swivel: bool = False,
) -> tuple[np.ndarray, ...]:
    """Batched IK: at each frame, the feasible posture nearest the previous one that reaches the target.

    Same objective as :func:`ik_reference` (``min ‖q - q_prev‖`` s.t. ``FK(q) = target`` and the joint
    limits; ``q_prev = q0`` before the first frame), solved exactly up to ~1e-9 rad in the swivel for
    all trajectories at once (the method: :mod:`.swivel`).

    targets_w: (n, T, 3) hand targets in {W}, cm; NaN after the end of a trajectory.
    lengths: (n,) int valid frames per trajectory; None: up to the last finite frame.
    q0: (4,) or (n, 4) posture before the first frame, degrees.
    n_grid, n_newton: swivel candidates on a uniform grid, and Newton refinement steps.
    Returns joints (n, T, 4) degrees and err (n, T) = ‖target - FK(q)‖ cm, both NaN beyond
    ``lengths``. Unreachable targets get the posture whose hand is nearest the target (within the
    limits) and a positive error; the next frame starts from that posture.
    ``return_swivel``: also return the swivel angle (n, T) radians of every frame's solution (NaN for
    unreachable targets and beyond ``lengths``): :func:`joints_from_swivel` rebuilds the same joints
    from it, bit for bit, without the search (the dataset's assembly re-uses it).
    """
    targets_w, lengths = _validate_targets(targets_w, lengths)
    n, t_max, _ = targets_w.shape
    q0 = np.asarray(q0, dtype=float)
    if q0.shape not in ((4,), (n, 4)):
        raise DeepDrawError(f"q0: expected shape (4,) or ({n}, 4) in degrees, got {q0.shape}")
    joints = np.full((n, t_max, 4), np.nan)
    err = np.full((n, t_max), np.nan)
    swivel = np.full((n, t_max), np.nan)
    if n == 0 or lengths.max(initial=0) == 0:
        return (joints, err, swivel) if return_swivel else (joints, err)
    order = np.argsort(-lengths, kind="stable")  # the trajectories still running form a prefix
    len_sorted = lengths[order]
    t_run = int(len_sorted[0])
    p_s = world_to_shoulder(targets_w[order, :t_run])
    q_prev = np.broadcast_to(q0, (n, 4))[order].copy()
    q_out = np.full((n, t_run, 4), np.nan)
    e_out = np.full((n, t_run), np.nan)
    s_out = np.full((n, t_run), np.nan)
    steps = range(t_run)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="ik_batch frames", leave=False)
    for t in steps:
        k = int(np.count_nonzero(len_sorted > t))  # padding frames cost nothing
        q, e, sv = solve_frame(p_s[:k, t], q_prev[:k], n_grid, n_newton, return_swivel=True)
        q_out[:k, t] = q
        e_out[:k, t] = e
        s_out[:k, t] = sv
        q_prev[:k] = q
    joints[order, :t_run] = q_out
    err[order, :t_run] = e_out
    if not return_swivel:
        return joints, err
    swivel[order, :t_run] = s_out
    return joints, err, swivel


def joints_from_swivel(
    targets_w: np.ndarray,
    swivel: np.ndarray,
    lengths: np.ndarray | None = None,
    q0: Sequence[float] | np.ndarray = Q_START,
) -> tuple[np.ndarray, np.ndarray]:
    """The joints of :func:`ik_batch` (``return_swivel=True``) from its swivel angles, without the search.

    targets_w (n, T, 3) cm as given to :func:`ik_batch`; swivel (n, T) radians, finite on every valid
    frame (a trajectory with an unreachable frame, NaN there, must be solved again with
    :func:`ik_batch`). Each frame's joints follow in closed form from its target and swivel angle
    (:class:`~.swivel.Swivel`, all frames at once), with the same operations as the search's last step, so the
    result is bit for bit :func:`ik_batch`'s. Only a frame exactly at the pole ``b = 0`` depends on the
    previous posture (``a`` is free there and keeps the previous value); those few frames are settled in
    time order. Returns joints (n, T, 4) degrees and err (n, T) cm, NaN beyond ``lengths``.
    """
    targets_w, lengths = _validate_targets(targets_w, lengths)
    n, t_max, _ = targets_w.shape
    swivel = np.asarray(swivel, dtype=np.float64)
    if swivel.shape != (n, t_max):
        raise DeepDrawError(f"swivel: expected shape ({n}, {t_max}) in radians, got {swivel.shape}")
    q0 = np.broadcast_to(np.asarray(q0, dtype=float), (n, 4))
    valid = np.arange(t_max)[None, :] < lengths[:, None]
    if not np.all(np.isfinite(swivel[valid])):
        i = int(np.argmax((valid & ~np.isfinite(swivel)).any(axis=1)))
        raise DeepDrawError(
            f"swivel: trajectory {i} has NaN within its first {int(lengths[i])} frames (an unreachable "
            "target); expected finite angles (solve it with ik_batch)"
        )
    joints = np.full((n, t_max, 4), np.nan)
    err = np.full((n, t_max), np.nan)
    if not valid.any():
        return joints, err
    rows, frames = np.nonzero(valid)  # row-major: each trajectory's frames in time order
    p_s = world_to_shoulder(targets_w[rows, frames])
    sw = Swivel(p_s)
    sw.poles = []
    ph = swivel[rows, frames][:, None]
    a, b, c = sw.joints(ph, np.zeros(len(rows)))
    pole = sw.poles[0][:, 0]
    a, b, c = a[:, 0], b[:, 0], c[:, 0]
    q = np.empty((len(rows), 4))
    q[:, 0], q[:, 1], q[:, 2] = np.rad2deg(a), np.rad2deg(b), np.rad2deg(c)
    q[:, 3] = sw.d
    np.clip(q, Q_MIN, Q_MAX, out=q)
    for k in np.flatnonzero(pole):  # a = the previous frame's a (radians, clipped to its limits)
        a_prev = np.deg2rad(q[k - 1, 0] if frames[k] > 0 else q0[rows[k], 0])
        q[k, 0] = min(max(np.rad2deg(min(max(a_prev, LIM_RAD[0, 0]), LIM_RAD[0, 1])), Q_MIN[0]), Q_MAX[0])
    joints[rows, frames] = q
    err[rows, frames] = np.linalg.norm(fk(q) - p_s, axis=-1)
    return joints, err


def ik_from_swivel(
    targets_w: np.ndarray, swivel: np.ndarray, lengths: np.ndarray | None = None
) -> np.ndarray:
    """Joints (n, T, 4) degrees of :func:`ik_batch` for ``targets_w`` (n, T, 3) cm: rebuilt from the
    swivel angles (n, T) (:func:`joints_from_swivel`) where a trajectory has them on every valid frame,
    solved with :func:`ik_batch` for the others (NaN rows: no stored angles, or an unreachable frame).
    Bit for bit :func:`ik_batch`'s joints either way."""
    targets_w, lengths = _validate_targets(targets_w, lengths)
    swivel = np.asarray(swivel, dtype=np.float64)
    valid = np.arange(targets_w.shape[1])[None, :] < lengths[:, None]
    known = ~np.any(valid & ~np.isfinite(swivel), axis=1)
    joints = np.full(targets_w.shape[:2] + (4,), np.nan)
    for rows, rebuild in ((np.flatnonzero(known), True), (np.flatnonzero(~known), False)):
        if len(rows) == 0:
            continue
        t = int(lengths[rows].max())
        tg, ln = targets_w[rows, :t], lengths[rows]
        q = joints_from_swivel(tg, swivel[rows, :t], ln)[0] if rebuild else ik_batch(tg, ln)[0]
        joints[rows, :t] = q
    return joints


def reach_error(points_w: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Single-point reach error: distance (cm) from each point to the arm's workspace (within limits).

    points_w: (m, 3) cm in {W}. Returns (m,) cm: ~1e-13 for reachable points, the distance from the
    target to the nearest reachable hand position otherwise. A point is reachable (as in the original
    start-point search) when this is below :data:`REACH_TOL_CM`. Vectorised; the exact feasibility
    test uses the closed-form ends of the feasible swivel arcs, so no reachable point is missed.
    """
    pts = np.asarray(points_w, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DeepDrawError(f"points_w: expected shape (m, 3) in cm, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise DeepDrawError("points_w: expected finite coordinates (cm), got NaN/inf")
    out = np.empty(len(pts))
    q_ref = np.asarray(Q_START, dtype=float)
    for s in range(0, len(pts), chunk):
        p_s = world_to_shoulder(pts[s : s + chunk])
        k = len(p_s)
        q_prev = np.broadcast_to(q_ref, (k, 4))
        _, e = solve_frame(p_s, q_prev, n_grid=16, n_newton=0)
        out[s : s + chunk] = e
    return out
