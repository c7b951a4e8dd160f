"""Start points of the characters: the original workspace search (the original's ``dataset/generate_startpoints.py``).

A start point is a point of a 3 cm grid over the workspace (X in [0, 60], Y in [-60, 30], Z in
[-60, 30] cm, {W}) around which a character of up to ``square`` cm can be drawn in a horizontal plane
(fixed Z, drawn in X-Y) or a vertical plane (fixed X, drawn in Y-Z):

1. every grid point gets a reach error (:func:`deepdraw.dataset.arm.reach_error`); it is reachable if
   the error is below ``tol`` (1e-2 cm);
2. coarse search: a reachable grid point qualifies if the 4 in-plane corners at ``±n`` are reachable
   grid points too, ``n = step · ceil(square / (2 · step))`` (12 cm);
3. fine search: every point of a ``fine × fine`` grid at 1 cm spacing centred on the candidate
   (offsets -7..7 cm) must be reachable.

Output order is the original's: plane by plane (increasing Z, resp. X), then X (resp. Y) and Y (resp.
Z) increasing. ``reach="reference"`` uses the original per-point SLSQP reach test instead of the exact
one (slow); ``docs/startpoints.md`` compares both with the original file and explains the differences.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DeepDrawError
from .arm import Q_X0, REACH_TOL_CM, reach_error, reach_error_reference

log = logging.getLogger(__name__)

WORKSPACE_BOUNDS_CM = {"x": (0.0, 60.0), "y": (-60.0, 30.0), "z": (-60.0, 30.0)}
"""Search box of the original (cm, {W})."""
ORIGINAL_COUNTS = {"horizontal": 539, "vertical": 1442}
"""Number of start points in the original ``pcr_startingpoints.hdf5``."""

__all__ = [
    "WORKSPACE_BOUNDS_CM",
    "ORIGINAL_COUNTS",
    "REFERENCE_SCREEN_CM",
    "grid_axes",
    "reach_error_screened_reference",
    "search_startpoints",
    "load_original_startpoints",
    "compare_startpoints",
]


def grid_axes(grid_step: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The X, Y, Z levels of the coarse grid (cm), as the original ``np.linspace`` calls."""
    axes = []
    for lo, hi in WORKSPACE_BOUNDS_CM.values():
        axes.append(np.linspace(lo, hi, int((hi - lo) // grid_step) + 1))
    return axes[0], axes[1], axes[2]


REFERENCE_SCREEN_CM = 1.0
"""With ``reach="reference"``, points farther than this from the workspace skip SLSQP (cm)."""


def reach_error_screened_reference(
    points_w: np.ndarray, screen: float = REFERENCE_SCREEN_CM, x0: Sequence[float] = Q_X0
) -> np.ndarray:
    """The original's SLSQP reach error (from ``x0``), run only where the exact distance is below ``screen`` cm.

    SLSQP's error can never be much smaller than the true distance to the workspace (its result stays
    within the joint limits up to its constraint tolerance), so points farther than ``screen`` are
    unreachable for both tests; they keep the exact distance. points_w (m, 3) cm -> (m,) cm.
    """
    err = reach_error(points_w)
    near = np.flatnonzero(err < screen)
    if near.size:
        err[near] = reach_error_reference(np.asarray(points_w, dtype=float)[near], x0=x0)
    return err


def _reach_fn(
    reach: str | Callable[[np.ndarray], np.ndarray], x0: Sequence[float]
) -> Callable[[np.ndarray], np.ndarray]:
    if callable(reach):
        return reach
    if reach == "analytic":
        return reach_error
    if reach == "reference":
        return lambda pts: reach_error_screened_reference(pts, x0=x0)
    raise DeepDrawError(f"reach: expected 'analytic', 'reference' or a callable, got {reach!r}")


def _select_levels(axis: np.ndarray, levels: Sequence[float] | None) -> np.ndarray:
    if levels is None:
        return np.arange(len(axis))
    idx = []
    for v in levels:
        hit = np.flatnonzero(np.isclose(axis, v))
        if hit.size == 0:
            raise DeepDrawError(f"levels: {v} is not a level of the grid {axis.tolist()}")
        idx.append(int(hit[0]))
    return np.array(sorted(set(idx)))


def search_startpoints(
    grid_step: float = 3.0,
    square: float = 20.0,
    fine: int = 15,
    tol: float = REACH_TOL_CM,
    progress: bool = True,
    *,
    reach: str | Callable[[np.ndarray], np.ndarray] = "analytic",
    horizontal_levels: Sequence[float] | None = None,
    vertical_levels: Sequence[float] | None = None,
    reference_x0: Sequence[float] = Q_X0,
) -> dict[str, np.ndarray]:
    """The original start-point search (see the module docstring).

    grid_step: coarse grid spacing (cm); square: side of the character's bounding square (cm);
    fine: side of the fine check grid (points, 1 cm apart); tol: reach tolerance (cm).
    reach: ``"analytic"`` (exact distance to the workspace, vectorised; default), ``"reference"``
    (the original SLSQP test from ``reference_x0``, (10, 10, 10, 10) in the original code; about 15
    minutes on one core for the whole search) or a callable ``(m, 3) cm -> (m,) cm``. Neither
    reproduces the shipped ``pcr_startingpoints.hdf5`` exactly; see ``docs/startpoints.md``.
    horizontal_levels / vertical_levels: restrict the search to these Z (resp. X) planes (cm); None:
    all planes. Planes are independent, so a restricted search returns exactly the full search's
    points on those planes.
    Returns ``{"horizontal": (n, 3), "vertical": (m, 3)}`` float64 cm in {W}.
    """
    err_fn = _reach_fn(reach, reference_x0)
    xs, ys, zs = grid_axes(grid_step)
    hz = _select_levels(zs, horizontal_levels)
    vx = _select_levels(xs, vertical_levels)
    label = reach if isinstance(reach, str) else "custom"
    ok = _grid_reach(err_fn, (xs, ys, zs), hz, vx, tol, progress, label)
    # 2. coarse search (corners at ±m grid steps in the plane)
    m = int(math.ceil(square / (2 * grid_step)))
    horiz = _coarse(ok, m, plane_axis=2, levels=hz)
    vert = _coarse(ok, m, plane_axis=0, levels=vx)
    cand = {
        "horizontal": np.stack([xs[horiz[:, 0]], ys[horiz[:, 1]], zs[horiz[:, 2]]], axis=1),
        "vertical": np.stack([xs[vert[:, 0]], ys[vert[:, 1]], zs[vert[:, 2]]], axis=1),
    }
    log.info(
        "start points: %d horizontal, %d vertical coarse candidates",
        len(cand["horizontal"]),
        len(cand["vertical"]),
    )
    out = _fine_check(err_fn, cand, fine, tol, progress)
    log.info("start points: %d horizontal, %d vertical", len(out["horizontal"]), len(out["vertical"]))
    return out


def _grid_reach(
    err_fn: Callable[[np.ndarray], np.ndarray],
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    hz: np.ndarray,
    vx: np.ndarray,
    tol: float,
    progress: bool,
    label: str,
) -> np.ndarray:
    """Step 1: reach flags ``(len(xs), len(ys), len(zs))`` of the grid points on the planes searched
    (horizontal levels ``hz``, vertical ``vx``; False elsewhere)."""
    xs, ys, zs = axes
    need = np.zeros((len(xs), len(ys), len(zs)), dtype=bool)
    need[:, :, hz] = True
    need[vx, :, :] = True
    ix, iy, iz = np.nonzero(need)
    pts = np.stack([xs[ix], ys[iy], zs[iz]], axis=1)
    log.info("start points: reach test of %d grid points (%s)", len(pts), label)
    ok = np.zeros(need.shape, dtype=bool)
    ok[ix, iy, iz] = _run_chunks(err_fn, pts, progress, "grid") < tol
    return ok


def _fine_check(
    err_fn: Callable[[np.ndarray], np.ndarray],
    cand: dict[str, np.ndarray],
    fine: int,
    tol: float,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Step 3: the coarse candidates whose whole ``fine`` x ``fine`` grid (1 cm apart, in their plane)
    is reachable; one reach test per distinct point of all the fine grids."""
    off = np.arange(fine) - fine // 2
    o1, o2 = (g.ravel() for g in np.meshgrid(off, off, indexing="ij"))
    zero = np.zeros_like(o1, dtype=float)
    shifts = {
        "horizontal": np.stack([o1, o2, zero], axis=1).astype(float),
        "vertical": np.stack([zero, o1, o2], axis=1).astype(float),
    }
    fine_pts = {k: (cand[k][:, None, :] + shifts[k][None]).reshape(-1, 3) for k in cand}
    allp = np.concatenate(list(fine_pts.values()))
    if len(allp):
        uniq, inv = np.unique(np.round(allp, 9), axis=0, return_inverse=True)
        log.info("start points: reach test of %d distinct fine-grid points", len(uniq))
        good = (_run_chunks(err_fn, uniq, progress, "fine grids") < tol)[inv.ravel()]
    else:
        good = np.zeros(0, dtype=bool)
    out = {}
    start = 0
    for k in ("horizontal", "vertical"):
        n = len(cand[k])
        g = good[start : start + n * len(o1)].reshape(n, len(o1))
        start += n * len(o1)
        out[k] = cand[k][g.all(axis=1)].astype(np.float64)
    return out


def _run_chunks(
    fn: Callable[[np.ndarray], np.ndarray], pts: np.ndarray, progress: bool, what: str
) -> np.ndarray:
    chunk = 20_000 if fn is reach_error else 100
    starts = range(0, len(pts), chunk)
    if progress and len(pts) > chunk:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"reach test ({what})", leave=False)
    return np.concatenate([np.asarray(fn(pts[s : s + chunk]), dtype=float) for s in starts] or [np.zeros(0)])


def _coarse(ok: np.ndarray, m: int, plane_axis: int, levels: np.ndarray) -> np.ndarray:
    """Indices (n, 3) of reachable grid points whose 4 in-plane corners at ±m steps are reachable.

    Ordered plane by plane (``levels`` increasing), then by the remaining axes (C order).
    """
    pad = [(m, m)] * 3
    pad[plane_axis] = (0, 0)
    okp = np.pad(ok, pad, constant_values=False)
    inplane = [ax for ax in range(3) if ax != plane_axis]
    good = ok.copy()
    for s1 in (-m, m):
        for s2 in (-m, m):
            sl = [slice(None)] * 3
            for ax, sh in zip(inplane, (s1, s2)):
                sl[ax] = slice(m + sh, m + sh + ok.shape[ax])
            good &= okp[tuple(sl)]
    keep = np.zeros(ok.shape[plane_axis], dtype=bool)
    keep[levels] = True
    idx = np.argwhere(good)
    idx = idx[keep[idx[:, plane_axis]]]
    order = np.lexsort(tuple(idx[:, ax] for ax in reversed([plane_axis] + inplane)))
    return idx[order]


def load_original_startpoints(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read the original ``pcr_startingpoints.hdf5``.

    path: the file; None: the copy shipped in ``data/reference_model``. Returns
    ``{"horizontal": (539, 3), "vertical": (1442, 3)}`` float64 cm in {W}.
    """
    import h5py

    if path is None:
        from ..paths import original_startpoints

        path = original_startpoints()
    path = Path(path)
    if not path.is_file():
        raise DeepDrawError(f"{path}: start-point file not found")
    out = {}
    try:
        with h5py.File(path, "r") as f:
            for key in ("horizontal", "vertical"):
                if key not in f:
                    raise DeepDrawError(
                        f"{path}: dataset '{key}' missing (expected 'horizontal' and 'vertical')"
                    )
                arr = np.asarray(f[key][()], dtype=np.float64)
                if arr.ndim != 2 or arr.shape[1] != 3:
                    raise DeepDrawError(
                        f"{path}: dataset '{key}' has shape {arr.shape}, expected (n, 3) in cm"
                    )
                if not np.all(np.isfinite(arr)):
                    raise DeepDrawError(f"{path}: dataset '{key}' contains NaN/inf, expected finite cm")
                out[key] = arr
    except OSError as exc:
        raise DeepDrawError(f"{path}: not a readable HDF5 file ({exc})") from None
    return out


def compare_startpoints(ours: dict[str, np.ndarray], original: dict[str, np.ndarray]) -> dict[str, dict]:
    """Set comparison per plane: counts, and the points only in one of the two (rows, cm)."""
    res = {}
    for k in ("horizontal", "vertical"):
        a = {tuple(np.round(p, 6)) for p in ours[k]}
        b = {tuple(np.round(p, 6)) for p in original[k]}
        res[k] = {
            "ours": len(a),
            "original": len(b),
            "common": len(a & b),
            "only_ours": np.array(sorted(a - b)).reshape(-1, 3),
            "only_original": np.array(sorted(b - a)).reshape(-1, 3),
        }
    return res
