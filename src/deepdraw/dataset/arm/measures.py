"""Per-trajectory measures of the original: the tracing error of the IK and the jerk of a trajectory.

:func:`joint_jerk` (the original ``compute_jerk``) works on joint angles and on muscle lengths alike;
:func:`third_difference` is its third derivative, also used by the muscle-jerk screening.
"""

from __future__ import annotations

import numpy as np

from ...errors import DeepDrawError

__all__ = ["tracing_error", "third_difference", "joint_jerk"]


def tracing_error(err: np.ndarray, axis: int = -1) -> np.ndarray:
    """The original's ``tracing_error``: the sum over frames of ‖target - FK(q)‖ (cm); NaN frames skipped."""
    return np.nansum(np.asarray(err, dtype=float), axis=axis)


def third_difference(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.gradient`` with unit spacing applied three times along ``axis`` (at least 2 points), bit for
    bit: central differences ``(x[t+1] - x[t-1]) / 2`` inside, one-sided ``x[1] - x[0]`` and
    ``x[-1] - x[-2]`` at the ends. A few array operations, without ``np.gradient``'s per-call set-up
    (the muscle-jerk screening calls it once per block of OpenSim frames)."""
    x = np.asarray(x, dtype=float)
    if axis != 0:
        x = np.moveaxis(x, axis, 0)
    if x.shape[0] < 2:
        raise DeepDrawError(
            f"third_difference: expected at least 2 points along axis {axis}, got {x.shape[0]}"
        )
    for _ in range(3):
        out = np.empty_like(x)
        np.subtract(x[2:], x[:-2], out=out[1:-1])
        out[1:-1] /= 2.0
        np.subtract(x[1], x[0], out=out[0])
        np.subtract(x[-1], x[-2], out=out[-1])
        x = out
    return x if axis == 0 else np.moveaxis(x, 0, axis)


def joint_jerk(
    q: np.ndarray, lengths: np.ndarray | None = None, omit_nan: bool = False
) -> float | np.ndarray:
    """Joint jerk as the original ``compute_jerk``: ``‖∇³q‖_F`` over a trajectory's valid frames.

    ``∇`` is ``np.gradient`` along time with unit spacing (per frame), applied three times; the
    original's (4, T) layout gives the same number as our (T, 4).
    q: (T, k) or (n, T, k), usually k = 4 joints in degrees (any k works, e.g. 25 muscle lengths in
    mm, the original ``muscle_jerk``); lengths: (n,) valid frames (None: up to the last finite frame).
    Returns a float for a (T, k) input, else (n,) (units of q per frame³). Fewer than 2 frames: NaN.
    ``omit_nan``: sum only the finite terms (a NaN entry spoils the third differences that use it,
    which are left out). With NaN for unknown entries this is a lower bound of the jerk the complete
    array would give, equal to it when nothing is unknown (the muscle-jerk screening of the dataset).
    """
    q = np.asarray(q, dtype=float)
    single = q.ndim == 2
    if single:
        q = q[None]
    if q.ndim != 3:
        raise DeepDrawError(f"q: expected shape (T, 4) or (n, T, 4), got {q.shape}")
    n, t_max, _ = q.shape
    if lengths is None:
        finite = np.all(np.isfinite(q), axis=2)
        lengths = np.where(finite.any(axis=1), t_max - np.argmax(finite[:, ::-1], axis=1), 0)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full(n, np.nan)
    for length in np.unique(lengths):
        if length < 2:
            continue
        rows = np.flatnonzero(lengths == length)
        x = third_difference(q[rows, :length], axis=1)
        out[rows] = np.sqrt((np.nansum if omit_nan else np.sum)(x**2, axis=(1, 2)))
    return float(out[0]) if single else out
