"""Building the fast engine from OpenSim (:func:`build_fast_engine`)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DeepDrawError
from .constants import ENGINE_KIND, JOINTS, MUSCLES, Q_MAX, Q_MIN, default_engine_path, default_model_path
from .exact import ExactEngine, evaluate_postures
from .tables import (
    CHECK_POINTS,
    FALLBACK,
    choose_stencils,
    encode_table,
    quantise,
    stencil6,
    stencil_errors,
    tricubic,
)
from .trajectories import synthetic_trajectories

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# building the fast engine
# --------------------------------------------------------------------------------------------------
_PAD = 3  # nodes beyond the joint limits on each side (room for shifted stencils)
_S0 = np.array([50.0, 40.0, 20.0])  # shoulder posture at which the elbow parts are tabulated
ELBOW_REF_DEG = 90.0  # elbow flexion at which the shoulder parts are tabulated
_FIBER_DL = 0.05  # mm: spacing of the path -> fiber map


def _region_cells(
    post3: np.ndarray, origin: np.ndarray, step: float, n: np.ndarray, margin: int
) -> np.ndarray:
    """Boolean (n-1)^3 mask of the cells holding postures, dilated by ``margin`` cells."""
    from scipy import ndimage

    ncell = n - 1
    cells = np.floor((post3 - origin) / step).astype(np.int64)
    ok = np.all((cells >= 2) & (cells <= n - 4), axis=1)
    occ = np.zeros(tuple(ncell), dtype=bool)
    occ[tuple(cells[ok].T)] = True
    if margin > 0:
        occ = ndimage.binary_dilation(occ, structure=np.ones((3, 3, 3), dtype=bool), iterations=margin)
    inside = np.zeros(tuple(ncell), dtype=bool)
    inside[2 : n[0] - 3, 2 : n[1] - 3, 2 : n[2] - 3] = True
    return occ & inside


def _stencil_nodes(region: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Boolean n^3 mask of the nodes that the stencils (shifted by up to one) of region cells use."""
    r = np.zeros(tuple(n), dtype=bool)
    r[:-1, :-1, :-1] = region
    out = np.zeros_like(r)
    for da in range(-2, 4):
        for db in range(-2, 4):
            for dc in range(-2, 4):
                out |= np.roll(r, (da, db, dc), axis=(0, 1, 2))
    return out


def _coupling(
    eng: ExactEngine, post: np.ndarray, rng: np.random.Generator, k: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """Which muscles depend on the shoulder / the elbow, and the mixed difference (additivity check)."""
    i = rng.integers(len(post), size=(k, 4))
    s1, s2 = post[i[:, 0], :3], post[i[:, 1], :3]
    d1, d2 = post[i[:, 2], 3:], post[i[:, 3], 3:]
    quad = np.concatenate(
        [
            np.concatenate([s1, d1], 1),
            np.concatenate([s1, d2], 1),
            np.concatenate([s2, d1], 1),
            np.concatenate([s2, d2], 1),
        ]
    )
    L = eng.path_lengths(quad[None])[0].reshape(4, k, len(MUSCLES))
    with np.errstate(invalid="ignore"):
        dep_sh = np.nanmax(np.abs(L[0] - L[2]), axis=0) > 1e-9
        dep_el = np.nanmax(np.abs(L[0] - L[1]), axis=0) > 1e-9
        mixed = np.nanmax(np.abs(L[0] - L[1] - L[2] + L[3]), axis=0)
    coupling = dep_sh.astype(np.int8) | (dep_el.astype(np.int8) << 1)
    coupling[coupling == 0] = 1  # constant: a (flat) shoulder table
    return coupling, mixed


def _fiber_map(path: np.ndarray, fiber: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per muscle: path lengths sorted and thinned to _FIBER_DL, the fiber lengths there, and the
    largest error of linear interpolation of the thinned map at all samples (mm)."""
    xs, ys, errs = [], [], np.zeros(len(MUSCLES))
    for m in range(len(MUSCLES)):
        ok = np.isfinite(path[:, m]) & np.isfinite(fiber[:, m])
        x, y = path[ok, m], fiber[ok, m]
        o = np.argsort(x, kind="stable")
        x, y = x[o], y[o]
        _, first = np.unique(np.floor(x / _FIBER_DL), return_index=True)
        keep = np.union1d(first, [len(x) - 1]) if len(x) else first
        xs.append(x[keep])
        ys.append(y[keep])
        errs[m] = float(np.max(np.abs(np.interp(x, x[keep], y[keep]) - y))) if len(x) else np.nan
    return xs, ys, errs


def region_postures(region_joints: np.ndarray | None, n_traj: int, seed: int) -> np.ndarray:
    """(K, 4) postures of the region: ``region_joints`` (finite rows) or the valid frames of
    ``n_traj`` :func:`synthetic_trajectories`."""
    if region_joints is None:
        joints, lens = synthetic_trajectories(n_traj, seed)
        return joints[np.arange(joints.shape[1])[None, :] < lens[:, None]]
    post = np.asarray(region_joints, dtype=np.float64).reshape(-1, 4)
    post = post[np.all(np.isfinite(post), axis=1)]
    if len(post) == 0:
        raise DeepDrawError(
            "region_joints: no finite posture; expected an array (..., 4) of joint angles in degrees"
        )
    return post


def write_engine(
    out: Path,
    arrays: dict[str, np.ndarray],
    config: dict,
    seeds: dict,
    inputs: dict,
    attrs: dict,
    overwrite: bool,
) -> None:
    """Write the engine artifact atomically (large numeric arrays shuffled and gzipped)."""
    from ...store import ArtifactWriter

    with ArtifactWriter(out, ENGINE_KIND, config, seeds, inputs, attrs, overwrite) as f:
        for key, arr in arrays.items():
            big = arr.size > 4096 and arr.dtype.kind in "fiub"
            f.create_dataset(
                key,
                data=arr,
                **({"compression": "gzip", "compression_opts": 9, "shuffle": True} if big else {}),
            )


def pair_keys(n: np.ndarray, c3: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Keys of (shoulder cell (E, 3), shoulder-muscle index (E,)) pairs: k * cells + flat cell."""
    c3 = c3.astype(np.int64)
    return k * int(np.prod(n - 1)) + (c3[:, 0] * (n[1] - 1) + c3[:, 1]) * (n[2] - 1) + c3[:, 2]


@dataclass
class _ShoulderGrid:
    """The level-1 shoulder grid: nodes ``origin + h * i`` (deg), ``n`` (3,) per axis, with the region."""

    origin: np.ndarray  # (3,) deg
    h: float  # deg
    n: np.ndarray  # (3,) nodes per axis
    region: np.ndarray  # (n-1)^3 bool: cells served by the tables
    node_ix: np.ndarray  # (N, 3) nodes the region's stencils use
    cells: np.ndarray  # (C, 3) region cells
    half_u: np.ndarray  # (P, 3) the cells' check points, unique, in half steps
    half_inv: np.ndarray  # (C, len(CHECK_POINTS)) index of each cell's check points into half_u


def _shoulder_grid(post: np.ndarray, step_deg: float, margin: int) -> _ShoulderGrid:
    """The shoulder grid (``_PAD`` nodes beyond the joint limits) and the region of ``post`` (K, 4)."""
    h = float(step_deg)
    origin = Q_MIN[:3] - _PAD * h
    n = np.ceil((Q_MAX[:3] - Q_MIN[:3]) / h - 1e-9).astype(np.int64) + 1 + 2 * _PAD
    region = _region_cells(post[:, :3], origin, h, n, margin)
    node_ix = np.argwhere(_stencil_nodes(region, n))
    cells = np.argwhere(region)
    half = (2 * cells[:, None, :] + np.rint(2 * CHECK_POINTS)[None].astype(np.int64)).reshape(-1, 3)
    half_u, half_inv = np.unique(half, axis=0, return_inverse=True)
    half_inv = half_inv.reshape(len(cells), len(CHECK_POINTS))
    return _ShoulderGrid(origin, h, n, region, node_ix, cells, half_u, half_inv)


@dataclass
class _ElbowGrid:
    """The elbow grid: nodes ``origin + h * i`` (deg), ``n`` nodes; check points at t = 1/3, 2/3 of
    each of ``cells``."""

    origin: float
    h: float
    n: int
    cells: np.ndarray
    chk: np.ndarray


def _elbow_grid(step_deg: float) -> _ElbowGrid:
    he = float(step_deg)
    ne = int(np.ceil((Q_MAX[3] - Q_MIN[3]) / he - 1e-9)) + 1 + 2 * _PAD
    return _ElbowGrid(Q_MIN[3] - _PAD * he, he, ne, np.arange(2, ne - 3), np.array([1.0 / 3.0, 2.0 / 3.0]))


def _with_elbow(q3: np.ndarray, d: float) -> np.ndarray:
    """Shoulder postures (K, 3) with elbow flexion ``d`` -> (K, 4)."""
    return np.concatenate([q3, np.full((len(q3), 1), d)], axis=1)


def _with_shoulder(d: np.ndarray) -> np.ndarray:
    """Elbow flexions (K,) at the reference shoulder posture ``_S0`` -> (K, 4)."""
    return np.concatenate([np.broadcast_to(_S0, (len(d), 3)), d[:, None]], axis=1)


def _fiber_postures(post: np.ndarray, g: _ShoulderGrid, rng: np.random.Generator, n_fs: int) -> np.ndarray:
    """Fiber-map samples (n_fs, 4): dataset postures, and random ones in the region with any elbow flexion."""
    pick = post[rng.integers(len(post), size=n_fs // 2)]
    rc = g.cells[rng.integers(len(g.cells), size=n_fs - n_fs // 2)]
    rnd = np.concatenate(
        [g.origin + g.h * (rc + rng.random((len(rc), 3))), rng.uniform(Q_MIN[3], Q_MAX[3], (len(rc), 1))],
        axis=1,
    )
    return np.concatenate([pick, rnd])


def _shoulder_stencils(
    g: _ShoulderGrid, node_vals: np.ndarray, chk_vals: np.ndarray, tol_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The shoulder table (ms, *n) (values as stored: quantised) from the node values (N, ms), and the
    stencil code (ms, *(n-1)) of every region cell from the check-point values (P, ms)."""
    ms = node_vals.shape[1]
    table = np.full((ms, *g.n), np.nan)
    table[:, g.node_ix[:, 0], g.node_ix[:, 1], g.node_ix[:, 2]] = node_vals.T
    table = quantise(table)
    code = np.full((ms, *(g.n - 1)), FALLBACK, dtype=np.uint8)
    for s in range(0, len(g.cells), 500):
        c = g.cells[s : s + 500]
        err = stencil_errors(table, c, CHECK_POINTS, chk_vals[g.half_inv[s : s + 500]])
        code[:, c[:, 0], c[:, 1], c[:, 2]] = choose_stencils(err, tol_mm, 13).T
    return table, code


@dataclass
class _Checker:
    """Checks of the shoulder table against OpenSim at more postures; fails (cell, muscle) pairs of
    ``code`` in place (FALLBACK) where the table misses by more than ``tol_mm``."""

    model_path: Path
    g: _ShoulderGrid
    sh_idx: np.ndarray
    table: np.ndarray
    code: np.ndarray
    tol_mm: float
    workers: int
    quiet: bool

    def truth(self, q3: np.ndarray, desc: str, which: np.ndarray | None = None) -> np.ndarray:
        """OpenSim path lengths (K, shoulder muscles) at shoulder postures (K, 3), elbow at ``ELBOW_REF_DEG``."""
        path, _ = evaluate_postures(
            self.model_path,
            _with_elbow(q3, ELBOW_REF_DEG),
            False,
            self.workers,
            quiet=self.quiet,
            desc=desc,
            which=which,
        )
        return path[:, self.sh_idx]

    def misses(self, q3: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """(K, ms) bool: the table (with the current codes) misses ``truth`` at ``q3`` or cannot serve it."""
        ms = len(self.sh_idx)
        pred, bad = tricubic(
            self.table.reshape(ms, -1),
            self.g.n,
            self.code.reshape(ms, -1),
            self.g.origin,
            np.full(3, self.g.h),
            q3,
        )
        return bad | ~(np.abs(pred - truth) <= self.tol_mm)

    def dense_rounds(self, rounds: int) -> int:
        """Dense checks next to the cells that failed: thin wrapping "spikes" (a wrap taking the long way
        round in a sheet a few tenths of a degree thick) slip between the check points; they come in
        sheets that the first pass hits somewhere, so the neighbours of failed cells get 64 more points,
        for ``rounds`` rounds. Returns the postures asked of OpenSim."""
        from scipy import ndimage

        g, code, ms = self.g, self.code, len(self.sh_idx)
        checked = np.zeros_like(code, dtype=bool)
        sub = (np.stack(np.meshgrid(*[np.array([1.0, 3.0, 5.0, 7.0]) / 8.0] * 3, indexing="ij"), -1)).reshape(
            -1, 3
        )
        n_dense = 0
        for rnd in range(rounds):
            susp = np.zeros_like(checked)
            for k in range(ms):
                bad = (code[k] == FALLBACK) & g.region
                susp[k] = (
                    ndimage.binary_dilation(bad, structure=np.ones((3, 3, 3), dtype=bool))
                    & g.region
                    & ~bad
                    & ~checked[k]
                )
            ucells = np.argwhere(susp.any(axis=0))
            if len(ucells) == 0:
                break
            which_k = susp[:, ucells[:, 0], ucells[:, 1], ucells[:, 2]].T  # (U, ms)
            pts = (g.origin + g.h * (ucells[:, None, :] + sub[None])).reshape(-1, 3)
            which = np.zeros((len(pts), len(MUSCLES)), dtype=bool)
            which[:, self.sh_idx] = np.repeat(which_k, len(sub), axis=0)
            log.info(
                "fast engine: dense check round %d: %d cells, %d (cell, muscle) pairs",
                rnd + 1,
                len(ucells),
                int(which_k.sum()),
            )
            truth = self.truth(pts, f"OpenSim: dense checks {rnd + 1}", which)
            n_dense += int(which.any(axis=1).sum())
            fail = self.misses(pts, truth) & which[:, self.sh_idx]
            fail_cell = fail.reshape(len(ucells), len(sub), ms).any(axis=1)  # (U, ms)
            kk, uu = np.nonzero(fail_cell.T)
            code[kk, ucells[uu, 0], ucells[uu, 1], ucells[uu, 2]] = FALLBACK
            checked |= susp
            log.info(
                "fast engine: dense check round %d flagged %d more (cell, muscle) pairs", rnd + 1, len(kk)
            )
            if len(kk) == 0:
                break
        return n_dense

    def limit_faces(self, post: np.ndarray, face_points: int, limit_face_frac: float) -> int:
        """Joint limits where many postures sit (the IK stops there: shoulder_rot = 20 deg holds ~9% of
        the dataset's frames): a dense 2-D check of each limit face holding at least ``limit_face_frac``
        of ``post``, for the cells on both sides of it. Returns the postures asked of OpenSim."""
        g, ms = self.g, len(self.sh_idx)
        n_face = 0
        g2 = (np.arange(face_points) + 0.5) / face_points
        for ax in range(3):
            for bound in (Q_MIN[ax], Q_MAX[ax]):
                frac = float(np.mean(np.abs(post[:, ax] - bound) < 1e-6))
                if frac < limit_face_frac:
                    continue
                i_at = int(np.floor((bound - g.origin[ax]) / g.h + 1e-9))
                other = [x for x in range(3) if x != ax]
                face = np.take(g.region, i_at, axis=ax) | np.take(g.region, i_at - 1, axis=ax)
                c2 = np.argwhere(face)  # (F, 2) cell indices along the other two axes
                if len(c2) == 0:
                    continue
                uu, vv = np.meshgrid(g2, g2, indexing="ij")
                grid = np.empty((len(c2), face_points * face_points, 3))
                grid[..., ax] = bound
                grid[..., other[0]] = g.origin[other[0]] + g.h * (c2[:, 0, None] + uu.ravel()[None])
                grid[..., other[1]] = g.origin[other[1]] + g.h * (c2[:, 1, None] + vv.ravel()[None])
                pts = grid.reshape(-1, 3)
                log.info("fast engine: limit face %s = %g (%.1f%% of postures): %d cells, %d points",
                         JOINTS[ax], bound, 100 * frac, len(c2), len(pts))  # fmt: skip
                truth = self.truth(pts, f"OpenSim: face {JOINTS[ax]}")
                n_face += len(pts)
                for side in (0.0, -1e-7):  # the cell at/above the face, then the one below
                    q3 = pts.copy()
                    q3[:, ax] += side
                    fail = self.misses(q3, truth).reshape(len(c2), face_points * face_points, ms).any(axis=1)
                    cell3 = np.floor((q3.reshape(len(c2), -1, 3)[:, 0] - g.origin) / g.h).astype(np.int64)
                    kk, ff = np.nonzero(fail.T)
                    keep = g.region[cell3[ff, 0], cell3[ff, 1], cell3[ff, 2]]
                    self.code[kk[keep], cell3[ff[keep], 0], cell3[ff[keep], 1], cell3[ff[keep], 2]] = FALLBACK
                    log.info("fast engine: limit face flagged %d (cell, muscle) pairs", int(keep.sum()))
        return n_face


def _elbow_stencils(
    eg: _ElbowGrid, node_vals: np.ndarray, chk_vals: np.ndarray, tol_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The elbow table (me, n) from the node values (n, me) and the stencil code (me, n-1) of its cells
    from the check-point values (cells, 2, me)."""
    table_e = node_vals.T.copy()  # (me, ne)
    me = table_e.shape[0]
    off6 = np.arange(-2, 4)
    err_e = np.zeros((len(eg.cells), 3, me))
    for p, t in enumerate(eg.chk):
        w = stencil6(t)  # (3, 6)
        v6 = table_e[:, eg.cells[:, None] + off6]  # (me, C, 6)
        pred = np.einsum("sa,mca->csm", w, v6)
        e = np.abs(pred - chk_vals[:, p, None, :])
        err_e = np.maximum(err_e, np.where(np.isfinite(e), e, np.inf))
    code_e = np.full((me, eg.n - 1), FALLBACK, dtype=np.uint8)
    code_e[:, eg.cells] = choose_stencils(err_e, tol_mm, 1).T
    return table_e, code_e


def _muscle_split(
    eng: ExactEngine, post: np.ndarray, rng: np.random.Generator, model_path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Coupling (25,) (bit 0: shoulder, bit 1: elbow), the shoulder and elbow muscles, and the largest
    mixed difference (mm) of the muscles with both; their path must be a shoulder part plus an elbow part."""
    coupling, mixed = _coupling(eng, post, rng)
    both = coupling == 3
    if np.any(both & ~(mixed <= 1e-6)):
        m = int(np.argmax(np.where(both, np.nan_to_num(mixed, nan=np.inf), -1)))
        raise DeepDrawError(
            f"{model_path}: the path length of {MUSCLES[m]} is not a shoulder part plus an elbow part "
            f"(mixed difference {mixed[m]:.3g} mm); expected separable paths (docs/muscles.md)"
        )
    mixed_max = float(np.nanmax(np.where(both, mixed, 0.0)))
    return coupling, np.flatnonzero(coupling & 1), np.flatnonzero(coupling & 2), mixed_max


def _opensim_values(
    model_path: Path, g: _ShoulderGrid, eg: _ElbowGrid, fib_post: np.ndarray, workers: int, quiet: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenSim path lengths (K, 25) at the shoulder nodes then check points (elbow at ``ELBOW_REF_DEG``), at the
    elbow nodes, check points and the reference posture (shoulder at ``_S0``), and path and fiber
    lengths at the fiber-map postures ``fib_post``."""
    post_sh = np.concatenate(
        [
            _with_elbow(g.origin + g.h * g.node_ix, ELBOW_REF_DEG),
            _with_elbow(g.origin + g.h * g.half_u / 2.0, ELBOW_REF_DEG),
        ]
    )
    d_nodes = eg.origin + eg.h * np.arange(eg.n)
    d_chk = (eg.origin + eg.h * (eg.cells[:, None] + eg.chk[None, :])).ravel()
    post_el = np.concatenate(
        [_with_shoulder(d_nodes), _with_shoulder(d_chk), np.r_[_S0, ELBOW_REF_DEG][None]]
    )
    log.info(
        "fast engine: %d region cells (step %.3g deg), %d shoulder nodes, %d check points, %d elbow postures, "
        "%d fiber samples, %d workers",
        len(g.cells), g.h, len(g.node_ix), len(g.half_u), len(post_el), len(fib_post), workers,
    )  # fmt: skip
    all_post = np.concatenate([post_sh, post_el])
    path_all, _ = evaluate_postures(model_path, all_post, False, workers, quiet=quiet, desc="OpenSim: tables")
    path_fs, fib_fs = evaluate_postures(
        model_path, fib_post, True, workers, quiet=quiet, desc="OpenSim: fiber map"
    )
    assert fib_fs is not None  # asked for (fiber=True)
    return path_all[: len(post_sh)], path_all[len(post_sh) :], path_fs, fib_fs


def _engine_arrays(
    g: _ShoulderGrid,
    eg: _ElbowGrid,
    coupling: np.ndarray,
    sh_idx: np.ndarray,
    el_idx: np.ndarray,
    table: np.ndarray,
    code: np.ndarray,
    path_el: np.ndarray,
    tol_mm: float,
    path_fs: np.ndarray,
    fib_fs: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The engine's arrays (:data:`deepdraw.contracts.ENGINE_SCHEMA`): the shoulder table and codes, the elbow table and
    its stencils (from :func:`_opensim_values`' elbow values), the offsets and the path -> fiber maps.
    Also returns the fiber maps' largest interpolation error per muscle (mm)."""
    chk_vals = path_el[eg.n : eg.n + 2 * len(eg.cells)][:, el_idx].reshape(len(eg.cells), 2, len(el_idx))
    table_e, code_e = _elbow_stencils(eg, path_el[: eg.n][:, el_idx], chk_vals, tol_mm)
    offset = np.where(coupling == 3, path_el[-1], 0.0)
    fx, fy, ferr = _fiber_map(path_fs, fib_fs)
    start = np.zeros(len(MUSCLES) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(x) for x in fx])
    diff, nanmask = encode_table(table)
    arrays = {
        "muscles": np.array(MUSCLES, dtype="S"),
        "coupling": coupling.astype(np.uint8),
        "offset": offset,
        "shoulder_index": sh_idx.astype(np.int16),
        "shoulder_grid": np.stack([g.origin, np.full(3, g.h)]),
        "shoulder_table_diff": diff,
        "shoulder_table_nan": nanmask,
        "shoulder_code": code,
        "elbow_index": el_idx.astype(np.int16),
        "elbow_grid": np.array([eg.origin, eg.h]),
        "elbow_table": table_e,
        "elbow_code": code_e,
        "fiber_map_path": np.concatenate(fx),
        "fiber_map_fiber": np.concatenate(fy),
        "fiber_map_start": start,
    }
    return arrays, ferr


def _table_stats(
    g: _ShoulderGrid, eg: _ElbowGrid, sh_idx: np.ndarray, arrays: dict[str, np.ndarray], ferr: np.ndarray
) -> dict[str, Any]:
    """Sizes and coverage of the tables (the ``build_stats`` of the engine file)."""
    in_region = arrays["shoulder_code"] != FALLBACK
    return dict(
        region_cells=int(len(g.cells)),
        shoulder_nodes=int(len(g.node_ix)),
        check_points=int(len(g.half_u)),
        fallback_cell_frac={
            MUSCLES[m]: round(float(1 - in_region[k][g.region].mean()), 4) for k, m in enumerate(sh_idx)
        },
        elbow_fallback_cells=int((arrays["elbow_code"][:, eg.cells] == FALLBACK).sum()),
        fiber_map_err_max_mm=float(np.nanmax(ferr)),
        fiber_map_points=int(arrays["fiber_map_start"][-1]),
    )


def _build_inputs(model_path: Path, synthetic_region: bool) -> dict[str, str]:
    """Input files and their sha256: the model, and the start points of the synthetic trajectories."""
    from ...paths import original_startpoints
    from ...store import file_sha256

    inputs = {model_path.name: file_sha256(model_path)}
    if synthetic_region:
        sp = original_startpoints()
        inputs[sp.name] = file_sha256(sp)
    return inputs


def _check_build_args(
    out_path: Path, overwrite: bool, step_deg: float, elbow_step_deg: float, tol_mm: float
) -> None:
    """Refuse an existing output (without ``overwrite``) and grid steps or a tolerance out of range."""
    if out_path.exists() and not overwrite:
        raise DeepDrawError(
            f"{out_path}: output exists; refusing to overwrite it (delete it, or use --overwrite)"
        )
    if not (0.2 <= step_deg <= 20.0) or not (0.005 <= elbow_step_deg <= 5.0) or tol_mm <= 0:
        raise DeepDrawError(
            f"build_fast_engine: step_deg={step_deg}, elbow_step_deg={elbow_step_deg}, tol_mm={tol_mm}; "
            "expected 0.2-20 deg, 0.005-5 deg and a positive tolerance"
        )


def _checked_shoulder_table(
    model_path: Path,
    g: _ShoulderGrid,
    sh_idx: np.ndarray,
    path_sh: np.ndarray,
    post: np.ndarray,
    tol_mm: float,
    checks: tuple[float, int, int, float],
    workers: int,
    quiet: bool,
    stats: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """The shoulder table and its stencil codes, after the dense and limit-face ``checks`` (dense_tol_mm,
    dense_rounds, face_points, limit_face_frac); records counts and times in ``stats``."""
    dense_tol_mm, dense_rounds, face_points, limit_face_frac = checks
    t0 = time.time()
    n_nodes = len(g.node_ix)
    table, code = _shoulder_stencils(
        g, path_sh[:n_nodes][:, sh_idx], path_sh[n_nodes : n_nodes + len(g.half_u)][:, sh_idx], tol_mm
    )
    stats["time_stencils_s"] = round(time.time() - t0, 1)
    stats["fallback_pairs_first_pass"] = int(((code == FALLBACK) & g.region[None]).sum())
    # dense checks next to the cells that failed, then the joint-limit faces
    checker = _Checker(model_path, g, sh_idx, table, code, dense_tol_mm, workers, quiet)
    t0 = time.time()
    stats["dense_check_postures"] = checker.dense_rounds(dense_rounds)
    stats["time_dense_s"] = round(time.time() - t0, 1)
    t0 = time.time()
    stats["face_check_postures"] = checker.limit_faces(post, face_points, limit_face_frac)
    stats["time_faces_s"] = round(time.time() - t0, 1)
    return table, code


def _build_config(
    step_deg: float,
    elbow_step_deg: float,
    tol_mm: float,
    dense_tol_mm: float,
    n_region_traj: int | None,
    region_margin: int,
    n_fiber_samples: int,
    dense_rounds: int,
    face_points: int,
    limit_face_frac: float,
    synthetic_region: bool,
) -> dict[str, Any]:
    """The engine's build config: the settings given and the fixed references (pad, reference postures)."""
    return {
        "step_deg": step_deg, "elbow_step_deg": elbow_step_deg, "tol_mm": tol_mm, "dense_tol_mm": dense_tol_mm, "n_region_traj": n_region_traj,
        "region_margin": region_margin, "n_fiber_samples": n_fiber_samples, "dense_rounds": dense_rounds,
        "face_points": face_points, "limit_face_frac": limit_face_frac, "shoulder_ref_deg": _S0.tolist(), "elbow_ref_deg": ELBOW_REF_DEG,
        "pad": _PAD, "fiber_map_dl_mm": _FIBER_DL, "region": "synthetic_trajectories" if synthetic_region else "region_joints",
    }  # fmt: skip


def build_fast_engine(
    model_path: str | os.PathLike | None = None,
    out_path: str | os.PathLike | None = None,
    *,
    step_deg: float = 2.5,
    elbow_step_deg: float = 0.1,
    tol_mm: float = 0.04,
    dense_tol_mm: float = 0.08,
    n_region_traj: int = 20000,
    region_margin: int = 1,
    region_joints: np.ndarray | None = None,
    n_fiber_samples: int = 20000,
    dense_rounds: int = 3,
    face_points: int = 10,
    limit_face_frac: float = 0.002,
    seed: int = 0,
    workers: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
) -> Path:
    """Build the fast engine's tables from OpenSim and write them as an artifact (``kind`` muscle_fast_engine).

    * Region: the shoulder cells (``step_deg``) visited by the postures of ``n_region_traj``
      :func:`synthetic_trajectories` (or of ``region_joints``, any (..., 4) array of postures in
      degrees), dilated by ``region_margin`` cells. Elsewhere the exact engine is used.
    * Each (cell, muscle) gets the cubic stencil (centred, else shifted by one node per axis) that
      matches OpenSim within ``tol_mm`` at the cell centre and face centres, or none (exact engine).
    * Dense checks: the neighbours of failed cells are checked at 64 more points (``dense_rounds``
      rounds), and joint-limit faces holding at least ``limit_face_frac`` of the postures on a
      ``face_points`` x ``face_points`` grid per cell face; a miss above ``dense_tol_mm`` fails the cell.
    * ``workers``: OpenSim processes (0: one per core). They are started with ``spawn``, so a script
      calling this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.

    Returns the path written. See docs/muscles.md.
    """
    t_start = time.time()
    model_path = Path(model_path) if model_path is not None else default_model_path()
    out_path = Path(out_path) if out_path is not None else default_engine_path()
    _check_build_args(out_path, overwrite, step_deg, elbow_step_deg, tol_mm)
    workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
    eng = ExactEngine(model_path)
    rng = np.random.default_rng(seed)
    stats: dict[str, Any] = {}

    # 1. postures of the dataset -> region
    t0 = time.time()
    post = region_postures(region_joints, n_region_traj, seed)
    stats["region_postures"] = int(len(post))
    stats["time_region_s"] = round(time.time() - t0, 1)

    # 2. which muscle depends on what; the split path = shoulder part + elbow part must be exact
    coupling, sh_idx, el_idx, stats["mixed_difference_max_mm"] = _muscle_split(eng, post, rng, model_path)

    # 3. shoulder grid, region, nodes and check points; 4. elbow grid, nodes and check points
    g = _shoulder_grid(post, step_deg, region_margin)
    eg = _elbow_grid(elbow_step_deg)
    # 5. OpenSim at the nodes and check points, and at the fiber-map samples
    n_fs = int(n_fiber_samples)
    fib_post = _fiber_postures(post, g, rng, n_fs)
    t0 = time.time()
    path_sh, path_el, path_fs, fib_fs = _opensim_values(model_path, g, eg, fib_post, workers, quiet)
    stats["time_opensim_s"] = round(time.time() - t0, 1)
    stats["opensim_postures"] = int(len(path_sh) + len(path_el) + len(fib_post))

    # 6. shoulder table and stencil choice per cell and muscle; 6b. dense checks; 6c. joint-limit faces
    checks = (dense_tol_mm, dense_rounds, int(face_points), limit_face_frac)
    table, code = _checked_shoulder_table(
        model_path, g, sh_idx, path_sh, post, tol_mm, checks, workers, quiet, stats
    )

    # 7. elbow table and stencils; 8. path -> fiber maps
    arrays, ferr = _engine_arrays(
        g, eg, coupling, sh_idx, el_idx, table, code, path_el, tol_mm, path_fs, fib_fs
    )
    stats.update(_table_stats(g, eg, sh_idx, arrays, ferr))
    stats["build_time_s"] = round(time.time() - t_start, 1)
    config = _build_config(
        g.h, eg.h, tol_mm, dense_tol_mm, n_region_traj if region_joints is None else None, region_margin, n_fs,
        dense_rounds, int(face_points), limit_face_frac, region_joints is None,
    )  # fmt: skip
    inputs = _build_inputs(model_path, region_joints is None)
    attrs = {"build_stats": json.dumps(stats, sort_keys=True), "model_file": model_path.name}
    write_engine(out_path, arrays, config, {"region": seed}, inputs, attrs, overwrite)
    log.info("fast engine written to %s in %.0f s: %s", out_path, stats["build_time_s"], stats)
    return out_path
