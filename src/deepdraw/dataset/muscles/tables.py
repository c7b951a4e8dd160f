"""Tables: cubic Lagrange interpolation on a regular grid with a per-cell choice of stencil; stored path-length encoding."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# tables: cubic Lagrange interpolation on a regular grid, with a per-cell choice of stencil
# --------------------------------------------------------------------------------------------------
FALLBACK = 255
"""Stencil code of a cell the fast engine does not trust (the exact engine is asked)."""
REFINE_KEYS = ("refine_ratio", "refine_key", "refine_table_diff", "refine_table_nan", "refine_code")
"""Keys of the fast engine's optional level 2 (:mod:`deepdraw.dataset.muscles.refine`): all or none."""
_SHIFTS = np.array([-1, 0, 1])


def lagrange4(x: np.ndarray) -> np.ndarray:
    """Weights (..., 4) of the cubic through nodes -1, 0, 1, 2 at position(s) x."""
    x = np.asarray(x, dtype=np.float64)
    xm, x1, x2 = x + 1.0, x - 1.0, x - 2.0
    return np.stack([-x * x1 * x2 / 6.0, xm * x1 * x2 / 2.0, -xm * x * x2 / 2.0, xm * x * x1 / 6.0], axis=-1)


def stencil6(t: float) -> np.ndarray:
    """(3, 6): weights over nodes -2..3 of the cubic stencils shifted by -1, 0, +1, at position t."""
    w = np.zeros((3, 6))
    for k, s in enumerate(_SHIFTS):
        w[k, 1 + s : 5 + s] = lagrange4(t - s)
    return w


_QUANTUM = 1e-4  # mm: resolution of the stored path-length tables
_QMAX = 1e5  # mm: larger path lengths are treated as missing


def quantise(x: np.ndarray) -> np.ndarray:
    """Round to the stored resolution (NaN stays NaN; absurd values become NaN)."""
    x = np.where(np.abs(x) < _QMAX, x, np.nan)
    return np.round(x / _QUANTUM) * _QUANTUM


def encode_table(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., m) quantised values with NaN -> (int32 differences along the last axis, bool NaN mask).

    Small integers compress far better than floats (HDF5 shuffle + gzip); NaN entries repeat the
    previous value along the axis so that their differences are zero.
    """
    nan = np.isnan(x)
    q = np.rint(np.nan_to_num(x, nan=0.0) / _QUANTUM).astype(np.int64)
    idx = np.where(~nan, np.arange(x.shape[-1]), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    q = np.take_along_axis(q, idx, axis=-1)
    d = np.diff(q, axis=-1, prepend=0)
    return d.astype(np.int32), nan


def decode_table(d: np.ndarray, nan: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_table`: the values (..., m) in mm, NaN where ``nan`` is set."""
    x = np.cumsum(d.astype(np.int64), axis=-1).astype(np.float64) * _QUANTUM
    x[nan] = np.nan
    return x


def stencil_errors(table: np.ndarray, cells: np.ndarray, points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Max abs error over ``points`` (P, 3, unit cell coordinates) of the 27 shifted tricubic stencils.

    table (ms, *n) node values; cells (C, 3); truth (C, P, ms). Returns (C, 27, ms), inf where NaN.
    Shift index = (sa+1)*9 + (sb+1)*3 + (sc+1).
    """
    off6 = np.arange(-2, 4)
    ia = (cells[:, 0, None] + off6)[:, :, None, None]
    ib = (cells[:, 1, None] + off6)[:, None, :, None]
    ic = (cells[:, 2, None] + off6)[:, None, None, :]
    v6 = table[:, ia, ib, ic]  # (ms, C, 6, 6, 6)
    err = np.zeros((len(cells), 27, len(table)))
    for p, pt in enumerate(points):
        wa, wb, wc = (stencil6(t) for t in pt)  # (3 shifts, 6 nodes) each
        z = np.tensordot(v6, wc, axes=([4], [1]))  # (ms, C, 6, 6, 3z)
        y = np.tensordot(z, wb, axes=([3], [1]))  # (ms, C, 6, 3z, 3y)
        x = np.tensordot(y, wa, axes=([2], [1]))  # (ms, C, 3z, 3y, 3x)
        pred = x.transpose(1, 4, 3, 2, 0).reshape(len(cells), 27, len(table))
        e = np.abs(pred - truth[:, p, None, :])
        err = np.maximum(err, np.where(np.isfinite(e), e, np.inf))
    return err


def choose_stencils(pred_err: np.ndarray, tol: float, centre: int) -> np.ndarray:
    """pred_err (..., n_shift, M) max abs error over the check points -> codes (..., M) uint8.

    The centred stencil when it passes; else the best shifted one that passes; else FALLBACK.
    """
    err = np.where(np.isfinite(pred_err), pred_err, np.inf)
    best = np.argmin(err, axis=-2)
    best_err = np.take_along_axis(err, best[..., None, :], axis=-2)[..., 0, :]
    code = np.where(err[..., centre, :] <= tol, centre, best)
    ok = (err[..., centre, :] <= tol) | (best_err <= tol)
    return np.where(ok, code, FALLBACK).astype(np.uint8)


def grid_cells(
    n: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postures q3 (K, 3) deg -> grid coordinates u (K, 3), cell corners floor(u) (K, 3, float) and
    whether the cell is in the grid's interior (room for every stencil) (K,)."""
    u = (q3 - origin) / step
    i0 = np.floor(u)
    return u, i0, np.all((i0 >= 2) & (i0 <= n - 4), axis=1)


def _locate(
    n: np.ndarray, code: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Postures q3 (K, 3) deg -> cell corner i0 (K, 3), position in the cell t (K, 3), the cells'
    stencil codes (K, ms) and the mask (K, ms) of entries without a trusted stencil (off the grid's
    interior or FALLBACK); i0 is a valid dummy cell where the posture is off the grid."""
    u, i0, inside = grid_cells(n, origin, step, q3)
    t = u - i0
    i0 = np.where(inside[:, None], i0, 2).astype(np.int64)
    cell = (i0[:, 0] * (n[1] - 1) + i0[:, 1]) * (n[2] - 1) + i0[:, 2]
    c = code[:, cell].T  # (K, ms)
    return i0, t, c, (c == FALLBACK) | ~inside[:, None]


def tricubic(
    table: np.ndarray, n: np.ndarray, code: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tricubic Lagrange interpolation with a stencil per (cell, muscle).

    table (ms, prod(n)) node values; code (ms, prod(n - 1)) stencil codes (13 = centred,
    ``(sa+1)*9 + (sb+1)*3 + (sc+1)`` for shifts s in {-1, 0, 1}, FALLBACK = none); q3 (K, 3) degrees.
    Returns values (K, ms) and the mask (K, ms) of entries without a trusted stencil.
    """
    k, ms = len(q3), len(table)
    i0, t, c, bad = _locate(n, code, origin, step, q3)
    c = np.where(bad, 13, c.astype(np.int64))
    shift = np.stack([c // 9, (c // 3) % 3, c % 3], axis=-1) - 1  # (K, ms, 3)
    w = lagrange4(t[:, None, :] - shift)  # (K, ms, 3, 4)
    base = i0[:, None, :] - 1 + shift  # first node of the stencil, per axis
    flat0 = (base[..., 0] * n[1] + base[..., 1]) * n[2] + base[..., 2]
    flat0 += (np.arange(ms) * int(np.prod(n)))[None, :]
    tab = table.reshape(-1)
    acc = np.zeros((k, ms))
    for a in range(4):
        for b in range(4):
            wab = w[..., 0, a] * w[..., 1, b]
            off = (a * n[1] + b) * n[2]
            for cc in range(4):
                acc += (wab * w[..., 2, cc]) * tab[flat0 + (off + cc)]
    return acc, bad | ~np.isfinite(acc)


def tricubic_nodes(
    window: np.ndarray,
    n: np.ndarray,
    code: np.ndarray,
    origin: np.ndarray,
    step: np.ndarray,
    q3: np.ndarray,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tricubic` for every muscle at once, from a node-major table (the fast engine's path).

    ``window`` is ``sliding_window_view(table.T.ravel(), 4 * ms)[::ms]``: row ``j`` holds the values of
    all ``ms`` muscles at nodes ``j .. j+3`` (contiguous along the last grid axis). The centred stencil
    of a posture then reads 16 contiguous rows, shared by all muscles, and contracts them with one set
    of weights per posture: the 16 (a, b) weights first, then the 4 along c (two ``einsum``, in chunks
    small enough to stay in cache); the few (posture, muscle) entries whose cell uses a shifted
    stencil are recomputed one by one. Same values as :func:`tricubic` up to rounding (the sums run
    in another order) and the same mask.
    """
    k = len(q3)
    ms = window.shape[1] // 4
    i0, t, c, bad = _locate(n, code, origin, step, q3)
    w = lagrange4(t)  # (K, 3, 4): centred weights per axis
    first = ((i0[:, 0] - 1) * n[1] + i0[:, 1] - 1) * n[2] + i0[:, 2] - 1
    r4 = np.arange(4)
    runs = (r4[:, None] * n[1] + r4[None, :]).ravel() * n[2]  # (16,) first node of each run along c
    acc = np.empty((k, ms))
    for s in range(0, k, chunk):
        sl = slice(s, s + chunk)
        m = len(first[sl])
        ws = w[sl]
        wab = (ws[:, 0, :, None] * ws[:, 1, None, :]).reshape(m, 16)  # (m, a*b)
        v = window[first[sl, None] + runs]  # (m, a*b, c*muscle)
        r = np.einsum("mj,mjk->mk", wab, v).reshape(m, 4, ms)  # contract a and b
        acc[sl] = np.einsum("mc,mcx->mx", ws[:, 2, :], r)  # contract c
    rows, cols = np.nonzero(~bad & (c != 13))
    if rows.size:
        cc = c[rows, cols].astype(np.int64)
        shift = np.stack([cc // 9, (cc // 3) % 3, cc % 3], axis=-1) - 1
        ww = lagrange4(t[rows] - shift)  # (E, 3, 4)
        base = i0[rows] - 1 + shift
        f0 = (base[:, 0] * n[1] + base[:, 1]) * n[2] + base[:, 2]
        val = np.zeros(len(rows))
        for a in range(4):
            for b in range(4):
                wab = ww[:, 0, a] * ww[:, 1, b]
                for z in range(4):
                    val += wab * ww[:, 2, z] * window[f0 + (a * n[1] + b) * n[2], z * ms + cols]
        acc[rows, cols] = val
    return acc, bad | ~np.isfinite(acc)


# 7 check points of a cell (unit coordinates): centre and the 6 face centres
CHECK_POINTS = np.array(
    [
        [0.5, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [1.0, 0.5, 0.5],
        [0.5, 0.0, 0.5],
        [0.5, 1.0, 0.5],
        [0.5, 0.5, 0.0],
        [0.5, 0.5, 1.0],
    ]
)
