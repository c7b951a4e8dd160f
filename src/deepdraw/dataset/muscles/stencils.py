"""Stencil choice of the level-1 tables (:func:`~deepdraw.dataset.muscles.build_fast_engine`): per shoulder
cell and muscle, and per elbow cell and muscle, the cubic stencil that matches OpenSim at the check
points; then the shoulder table's dense and joint-limit-face checks against OpenSim,
which take the stencil away (``FALLBACK``) where the table misses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .constants import JOINTS, MUSCLES, Q_MAX, Q_MIN
from .exact import evaluate_postures
from .grids import ELBOW_REF_DEG, ElbowGrid, ShoulderGrid, with_elbow
from .tables import CHECK_POINTS, FALLBACK, choose_stencils, quantise, stencil6, stencil_errors, tricubic

log = logging.getLogger(__name__)


def _shoulder_stencils(
    g: ShoulderGrid, node_vals: np.ndarray, chk_vals: np.ndarray, tol_mm: float
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
    g: ShoulderGrid
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
            with_elbow(q3, ELBOW_REF_DEG),
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


def elbow_stencils(
    eg: ElbowGrid, node_vals: np.ndarray, chk_vals: np.ndarray, tol_mm: float
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


def checked_shoulder_table(
    model_path: Path,
    g: ShoulderGrid,
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
