"""From a :class:`~deepdraw.encode.io.Recording` to a movement on the models' grid, and its windows.

* :func:`fill_gaps`: NaN frames (gaps, low-likelihood DeepLabCut points) up to ``encode.max_gap_s``
  long are interpolated linearly; a longer gap, or one at either end, is an error naming the file, the
  movement and the frame.
* :func:`resample`: cubic-spline interpolation (scipy ``CubicSpline``, not-a-knot; linear below 4
  samples) of the recording at ``t0 + k * dt`` (dt = 0.015 s, the PCRT frames), ``k = 0 ..
  floor((t_end - t0) / dt)``.
* :func:`to_world`: lab positions -> the model's world frame {W} (cm; origin the shoulder, x forward,
  y left/right, z up/down): ``w = origin_cm + scale * A @ (p * units)``, where ``axes[j]`` ('x', '-y',
  ...) is the world axis, with its sign, of lab axis ``j`` (``A[axis, j] = sign``). :func:`check_units` flags paths that cannot be in cm (100x too large or too small).
* :func:`windows`: a movement of ``T`` frames -> 320-frame windows: ``T <= 320``: one window, the
  movement at ``onset`` (``-1``: centred), the first posture held before and the last after it, as
  the PCRT samples (:func:`deepdraw.dataset.proprio.place`); ``T > 320``: windows starting every
  ``320 - overlap`` frames, the last one ending at the last frame.
"""

from __future__ import annotations

import numpy as np

from ..dataset.arm import FOREARM_CM, UPPER_ARM_CM
from ..errors import DeepDrawError
from .io import UNITS_CM, Recording

REACH_CM = UPPER_ARM_CM + FOREARM_CM
"""The arm's longest reach from the shoulder (cm)."""


def where(rec: Recording) -> str:
    """'file, movement NAME' for error messages."""
    return f"{rec.source}, movement '{rec.name}'"


def sample_times(rec: Recording, rate_hz: float) -> np.ndarray:
    """Times (s) of the recording's samples: ``rate_hz`` (config) overrides the file's time column."""
    rate = rate_hz or rec.rate_hz
    if rate:
        if not rate > 0:
            raise DeepDrawError(f"{where(rec)}: sampling rate {rate} Hz; expected a positive rate")
        return np.arange(len(rec.data)) / float(rate)
    if rec.time is None:
        raise DeepDrawError(
            f"{where(rec)}: no sampling rate (no time column, no rate attribute); pass --rate HZ "
            "(encode.rate_hz)"
        )
    t = np.asarray(rec.time, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        raise DeepDrawError(f"{where(rec)}: frame {bad[0]}: time is not a number")
    step = np.diff(t)
    if len(step) and not (step > 0).all():
        raise DeepDrawError(f"{where(rec)}: frame {int(np.argmax(step <= 0)) + 1}: time does not increase")
    return t - t[0]


def fill_gaps(rec: Recording, t: np.ndarray, max_gap_s: float) -> np.ndarray:
    """The recording's data with gaps (any NaN in a frame) of at most ``max_gap_s`` interpolated."""
    x = np.asarray(rec.data, dtype=np.float64)
    bad = ~np.all(np.isfinite(x), axis=1)
    if not bad.any():
        return x
    ok = np.flatnonzero(~bad)
    if len(ok) < 2:
        raise DeepDrawError(f"{where(rec)}: fewer than 2 frames without NaN; expected a movement")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(int), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):  # gap = frames [a, b)
        span = (t[b] if b < len(t) else np.inf) - (t[a - 1] if a > 0 else -np.inf)
        if a == 0 or b == len(t) or span > max_gap_s + 1e-12:
            raise DeepDrawError(
                f"{where(rec)}: frame {a} (t = {t[a]:.3f} s): {b - a} frame(s) with NaN / low-likelihood "
                f"values{' at the start' if a == 0 else ' at the end' if b == len(t) else ''}; gaps up to "
                f"encode.max_gap_s = {max_gap_s:g} s inside a movement are interpolated (trim the "
                "movement, or raise encode.max_gap_s)"
            )
    out = x.copy()
    for j in range(x.shape[1]):
        out[bad, j] = np.interp(t[bad], t[ok], x[ok, j])
    return out


def resample(t: np.ndarray, x: np.ndarray, dt: float) -> np.ndarray:
    """``x`` (T, d) sampled at times ``t`` (s, from 0) -> (K, d) at ``k * dt``, k = 0 .. floor(t[-1]/dt)."""
    k = int(np.floor(t[-1] / dt + 1e-9)) + 1
    grid = np.minimum(np.arange(k) * dt, t[-1])
    if len(t) >= 4:
        from scipy.interpolate import CubicSpline

        return CubicSpline(t, x, axis=0)(grid)
    return np.stack([np.interp(grid, t, x[:, j]) for j in range(x.shape[1])], axis=1)


def axes_matrix(axes: list[str]) -> np.ndarray:
    """(3, 3) ``A`` with ``world = A @ lab``: ``axes[j]`` ('x', '-y', ...) is the world axis of lab axis j."""
    if len(axes) != 3:
        raise DeepDrawError(f"encode.axes: {axes}; expected three entries such as ['x', 'y', 'z']")
    a = np.zeros((3, 3))
    for j, name in enumerate(axes):
        s = name.strip().lower()
        sign = -1.0 if s.startswith("-") else 1.0
        s = s.lstrip("+-")
        if s not in ("x", "y", "z"):
            raise DeepDrawError(f"encode.axes: entry '{name}'; expected x, y or z with an optional sign")
        a["xyz".index(s), j] = sign
    if abs(abs(np.linalg.det(a)) - 1) > 1e-9:
        raise DeepDrawError(f"encode.axes: {axes} names a world axis twice; expected a permutation")
    return a


def units_factor(rec: Recording, units: str) -> float:
    """cm per unit of the recording's positions: ``encode.units``, else the file's unit, else 1 (cm)."""
    u = (units or rec.units or "cm").strip().lower()
    if u not in UNITS_CM:
        raise DeepDrawError(f"{where(rec)}: position unit '{u}'; expected cm, mm or m (encode.units)")
    return UNITS_CM[u]


def to_world(
    p: np.ndarray, factor: float, axes: list[str], origin_cm: list[float], scale: float
) -> np.ndarray:
    """Lab positions (T, 3) -> world frame {W} (T, 3) cm (module docstring)."""
    if len(origin_cm) != 3:
        raise DeepDrawError(f"encode.origin_cm: {origin_cm}; expected three numbers (cm)")
    return np.asarray(origin_cm, dtype=np.float64) + float(scale) * (p * factor) @ axes_matrix(axes).T


def check_units(rec: Recording, w: np.ndarray) -> None:
    """A path far larger or smaller than an arm cannot be in cm: an error naming the likely cause."""
    r = np.linalg.norm(w, axis=1)
    extent = float(np.ptp(w, axis=0).max()) if len(w) else 0.0
    if r.max() > 3 * REACH_CM or extent > 3 * REACH_CM:
        f = int(np.argmax(r))
        raise DeepDrawError(
            f"{where(rec)}: frame {f}: the hand is {r[f]:.0f} cm from the shoulder and the path spans "
            f"{extent:.0f} cm, but the arm reaches {REACH_CM:.0f} cm: wrong unit? (mm read as cm is 10x, "
            "set encode.units / --units; or check encode.origin_cm and encode.scale)"
        )
    if extent < 0.05 and r.max() < 1.0:
        raise DeepDrawError(
            f"{where(rec)}: the whole path lies within {r.max():.3f} cm of the shoulder: wrong unit? (m read "
            "as cm is 100x too small; set encode.units / --units)"
        )


def check_reach(rec: Recording, w: np.ndarray, err: np.ndarray, tol: float, t: np.ndarray) -> None:
    """IK errors above ``tol`` cm: an error naming the first such frame."""
    bad = np.flatnonzero(~(err <= tol))
    if len(bad):
        f = int(bad[0])
        raise DeepDrawError(
            f"{where(rec)}: frame {f} (t = {t[f]:.3f} s on the 15 ms grid): target {np.round(w[f], 1).tolist()} "
            f"cm is {np.linalg.norm(w[f]):.1f} cm from the shoulder and outside the arm's reach (IK error "
            f"{err[f]:.2f} cm > encode.reach_tol_cm = {tol:g}; the arm reaches 25.7-59 cm within its joint "
            f"limits; {len(bad)} frame(s) affected): check encode.origin_cm, encode.axes and encode.scale"
        )


def windows(T: int, n_frames: int = 320, overlap: int = 160, onset: int = -1) -> list[tuple[int, int, int]]:
    """``(first movement frame, last + 1, window frame of the first)`` of each window (module docstring)."""
    if T < 2:
        raise DeepDrawError(f"a movement of {T} frame(s) on the 15 ms grid; expected at least 2")
    if T <= n_frames:
        o = (n_frames - T) // 2 if onset < 0 else int(onset)
        if o + T > n_frames:
            raise DeepDrawError(
                f"encode.onset = {onset}: a movement of {T} frames does not fit in {n_frames}"
            )
        return [(0, T, o)]
    if not 0 <= overlap < n_frames:
        raise DeepDrawError(f"encode.overlap = {overlap}; expected 0 <= overlap < {n_frames}")
    step = n_frames - overlap
    starts = list(range(0, T - n_frames, step)) + [T - n_frames]
    return [(s, s + n_frames, 0) for s in starts]
