"""The fast engine (:class:`FastEngine`): tables, fiber maps and the exact engine for the frames it cannot reproduce."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import DeepDrawError
from .constants import ENGINE_KIND, ENGINE_SCHEMA, MUSCLES, default_engine_path, default_model_path
from .exact import ExactEngine, as_joints
from .grids import pair_keys
from .tables import FALLBACK, REFINE_KEYS, decode_table, grid_cells, lagrange4, tricubic, tricubic_nodes

log = logging.getLogger(__name__)

# OpenSim values computed before: (trajectory, frame, muscle, value) arrays (FastEngine.lengths' known)
KnownValues = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# --------------------------------------------------------------------------------------------------
# the fast engine
# --------------------------------------------------------------------------------------------------
MAP_MAX_GAP_MM = 0.5
"""Longest interval of a fiber map through which the path-length fallback interpolates (mm)."""
MAP_MAX_ERR_MM = 0.001
"""Largest estimated linear-interpolation error (h^2/8 |g''|) of a fiber-map interval the fallback uses."""


def _trusted_intervals(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per node of the concatenated fiber maps: may the interval (node, next node) be interpolated?

    True when the interval is at most :data:`MAP_MAX_GAP_MM` long and its linear-interpolation error,
    estimated as h^2/8 |g''| with g'' from the neighbouring slopes, is at most :data:`MAP_MAX_ERR_MM`.
    The last node of each map (no interval) is False.
    """
    ok = np.zeros(len(x), dtype=bool)
    for m in range(len(start) - 1):
        a, b = int(start[m]), int(start[m + 1])
        xs, ys = x[a:b], y[a:b]
        if len(xs) < 3:
            continue
        h = np.diff(xs)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.diff(ys) / h
            curv = np.abs(np.diff(slope)) / (0.5 * (h[:-1] + h[1:]))  # at inner nodes
        # an interval's curvature: the larger of its two end nodes' (ends: the one inner node)
        c = np.maximum(np.r_[curv[0], curv], np.r_[curv, curv[-1]])
        good = (h > 0) & (h <= MAP_MAX_GAP_MM) & (h * h / 8.0 * c <= MAP_MAX_ERR_MM)
        ok[a : b - 1] = good & np.isfinite(c)
    return ok


class FastEngine:
    """Fiber lengths from tables built by :func:`build_fast_engine`, with exact fallback.

    Per muscle, path length = shoulder part (tricubic Lagrange on a regular grid of
    (elv_angle, shoulder_elv, shoulder_rot)) + elbow part (cubic on a fine grid of elbow_flexion)
    - offset; fiber length = a 1-D map of the path length (the muscle's equilibrium at fixed
    activation depends on nothing else). Each (cell, muscle) has a stencil checked against OpenSim at
    build time; where none passes, outside the tabulated region or outside the fiber map, OpenSim
    computes that muscle's path length at that frame and the fiber map gives its fiber length
    (:meth:`fallback`; the full equilibrium where the map cannot).
    """

    def __init__(self, arrays: dict[str, np.ndarray], path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.attrs = attrs
        names = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in arrays["muscles"])
        if names != MUSCLES:
            raise DeepDrawError(f"{path}: key 'muscles' is {names}; expected {MUSCLES}")
        self.coupling = arrays["coupling"].astype(np.int64)
        self.offset = arrays["offset"].astype(np.float64)
        self.sh_idx = arrays["shoulder_index"].astype(np.int64)
        self.sh_origin = arrays["shoulder_grid"][0].astype(np.float64)
        self.sh_step = arrays["shoulder_grid"][1].astype(np.float64)
        tab = decode_table(arrays["shoulder_table_diff"], arrays["shoulder_table_nan"])
        self.sh_n = np.array(tab.shape[1:], dtype=np.int64)
        self.sh_table = tab.reshape(len(self.sh_idx), -1)  # flat nodes
        # node-major copy for :func:`tricubic_nodes` (all muscles of a node side by side)
        ms = max(len(self.sh_idx), 1)
        nodes_major = np.ascontiguousarray(self.sh_table.T).reshape(-1)
        self._sh_window = (
            sliding_window_view(nodes_major, 4 * ms)[::ms] if len(nodes_major) >= 4 * ms else None
        )
        self.sh_code = arrays["shoulder_code"].reshape(len(self.sh_idx), -1)
        if arrays["shoulder_code"].shape[1:] != tuple(self.sh_n - 1):
            raise DeepDrawError(
                f"{path}: key 'shoulder_code' has shape {arrays['shoulder_code'].shape}; expected cells of 'shoulder_table'"
            )
        self._load_refine(arrays)
        self.el_idx = arrays["elbow_index"].astype(np.int64)
        self.el_origin, self.el_step = (float(v) for v in arrays["elbow_grid"])
        self.el_table = arrays["elbow_table"].astype(np.float64)
        self.el_code = arrays["elbow_code"]
        self.map_x = arrays["fiber_map_path"].astype(np.float64)
        self.map_y = arrays["fiber_map_fiber"].astype(np.float64)
        self.map_start = arrays["fiber_map_start"].astype(np.int64)
        self.map_trusted = _trusted_intervals(self.map_x, self.map_y, self.map_start)
        self._exact: ExactEngine | None = None
        self.model_path: Path | None = None
        self.model_sha256 = ""
        inputs = attrs.get("inputs", {})
        model_file = attrs.get("model_file", "")
        if isinstance(inputs, dict) and model_file in inputs:
            self.model_sha256 = inputs[model_file]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        model_path: str | os.PathLike | None = None,
        level2: bool = True,
    ) -> FastEngine:
        """Load the artifact (default: the one shipped in data/muscles); ``model_path`` for the fallback;
        ``level2=False`` ignores the finer tables (level 1 only, the rest from OpenSim)."""
        from ...store import read_arrays, read_attrs

        p = Path(path) if path is not None else default_engine_path()
        arrays = read_arrays(p, kind=ENGINE_KIND, schema=ENGINE_SCHEMA)
        if not level2:
            arrays = {k: v for k, v in arrays.items() if k not in REFINE_KEYS}
        eng = cls(arrays, p, read_attrs(p))
        eng.model_path = Path(model_path) if model_path is not None else None
        return eng

    # -- exact fallback ---------------------------------------------------------------------------
    def exact(self) -> ExactEngine:
        """The exact engine used for fallback frames (created on first use; model checked by sha256)."""
        if self._exact is None:
            from ...store import file_sha256

            mp = self.model_path if self.model_path is not None else default_model_path()
            if not mp.is_file():
                raise DeepDrawError(
                    f"{mp}: model file not found; the fast engine {self.path} needs it for its fallback frames"
                )
            if self.model_sha256 and file_sha256(mp) != self.model_sha256:
                raise DeepDrawError(
                    f"{mp}: sha256 differs from the model the fast engine {self.path} was built from "
                    f"({self.model_sha256[:12]}...); expected the same model (rebuild the engine for this one)"
                )
            self._exact = ExactEngine(mp)
        return self._exact

    def fallback(
        self, joints: np.ndarray, which: np.ndarray, *, mode: str = "path", quiet: bool = True
    ) -> np.ndarray:
        """Fiber lengths (mm) from OpenSim of the entries ``which`` (K, 25) at postures ``joints`` (K, 4).

        ``mode="path"`` (used by :meth:`lengths`): OpenSim's path length of the requested muscles
        (realized to Position only) through the engine's fiber map (the equilibrium at activation 0 is
        a function of the path length; the map matches ``computeEquilibrium`` within ~0.002 mm); entries
        whose path length is NaN or outside the map's range get the full equilibrium.
        ``mode="equilibrium"``: ``computeEquilibrium`` for every entry (:meth:`ExactEngine.fiber_subset`).
        Returns (K, 25), NaN where ``which`` is False.
        """
        q = np.asarray(joints, dtype=np.float64).reshape(-1, 4)
        which = np.asarray(which, dtype=bool)
        ex = self.exact()
        if mode == "equilibrium":
            return ex.fiber_subset(q, which, quiet=quiet)
        if mode != "path":
            raise DeepDrawError(f"mode: got {mode!r}; expected 'path' or 'equilibrium'")
        path = ex.path_subset(q, which)
        out = np.full(which.shape, np.nan)
        rest = which.copy()
        for m in np.flatnonzero(which.any(axis=0)):
            x = self.map_x[self.map_start[m] : self.map_start[m + 1]]
            if len(x) == 0:
                continue
            y = self.map_y[self.map_start[m] : self.map_start[m + 1]]
            col = path[:, m]
            ok = which[:, m] & (col >= x[0]) & (col <= x[-1])  # False for NaN
            # only where the map's interval is short and straight enough (its tails are sparse)
            i = np.clip(np.searchsorted(x, np.where(ok, col, x[0]), side="right") - 1, 0, max(len(x) - 2, 0))
            ok &= self.map_trusted[self.map_start[m] + i]
            out[ok, m] = np.interp(col[ok], x, y)
            rest[ok, m] = False
        rows = np.flatnonzero(rest.any(axis=1))
        if rows.size:
            log.debug("fast engine: %d values outside the fiber map, by equilibrium", int(rest.sum()))
            eq = ex.fiber_subset(q[rows], rest[rows], quiet=quiet)
            sub = out[rows]
            sub[rest[rows]] = eq[rest[rows]]
            out[rows] = sub
        return out

    def _load_refine(self, arrays: dict[str, np.ndarray]) -> None:
        """The optional level-2 tables (:mod:`deepdraw.dataset.muscles.refine`); absent: ``rf_key`` is None."""
        self.rf_key: np.ndarray | None = None
        keys = REFINE_KEYS
        present = [k for k in keys if k in arrays]
        if not present:
            return
        if len(present) < len(keys):
            missing = sorted(set(keys) - set(present))
            raise DeepDrawError(
                f"{self.path}: level-2 keys {missing} missing; expected all of {list(keys)} or none"
            )
        r = int(arrays["refine_ratio"][0])
        key = arrays["refine_key"].astype(np.int64)
        npair = len(key)
        tab_shape = (npair, r + 3, r + 3, r + 3)
        for k, shape in (("refine_table_diff", tab_shape), ("refine_code", (npair, r, r, r))):
            if arrays[k].shape != shape:
                raise DeepDrawError(f"{self.path}: key '{k}' has shape {arrays[k].shape}; expected {shape}")
        if r < 2 or np.any(np.diff(key) <= 0):
            raise DeepDrawError(
                f"{self.path}: key 'refine_key' must be strictly increasing with refine_ratio >= 2"
            )
        self.rf_ratio = r
        self.rf_key = key
        self.rf_table = decode_table(arrays["refine_table_diff"], arrays["refine_table_nan"]).reshape(
            npair, -1
        )
        self.rf_code = arrays["refine_code"].reshape(npair, -1)

    # -- tables -----------------------------------------------------------------------------------
    def _shoulder_coarse(self, q3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shoulder parts (K, ms) from the level-1 table and the mask (K, ms) of untrusted entries."""
        if len(q3) == 0 or self._sh_window is None:
            return tricubic(self.sh_table, self.sh_n, self.sh_code, self.sh_origin, self.sh_step, q3)
        return tricubic_nodes(self._sh_window, self.sh_n, self.sh_code, self.sh_origin, self.sh_step, q3)

    def _shoulder(self, q3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shoulder parts (K, ms) and a mask (K, ms) of entries to compute exactly."""
        val, bad = self._shoulder_coarse(q3)
        if self.rf_key is not None and bad.any():
            _refine_values(self, q3, val, bad)
        return val, bad

    def _elbow(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        me = len(self.el_idx)
        ne = self.el_table.shape[1]
        u = (d - self.el_origin) / self.el_step
        i0 = np.floor(u)
        t = u - i0
        inside = (i0 >= 2) & (i0 <= ne - 4)
        i0 = np.where(inside, i0, 2).astype(np.int64)
        code = self.el_code[:, i0].T.astype(np.int64)  # (K, me)
        bad = (code == FALLBACK) | ~inside[:, None]
        shift = np.where(bad, 1, code) - 1
        w = lagrange4(t[:, None] - shift)  # (K, me, 4)
        base = i0[:, None] - 1 + shift + (np.arange(me) * ne)[None, :]
        tab = self.el_table.reshape(-1)
        acc = sum(w[..., j] * tab[base + j] for j in range(4))
        return acc, bad | ~np.isfinite(acc)

    def table_lengths(
        self, q: np.ndarray, untrusted: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tables only, for postures q (K, 4) degrees: (fiber (K, 25), path (K, 25), exact-needed (K, 25)).

        Entries that need OpenSim are NaN unless ``untrusted``: then they hold whatever the centred
        stencil of the nearest tabulated cell gives (an estimate, wrong by up to the jumps the engine
        avoids; only for ordering work, see :meth:`estimate`).
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
        k = len(q)
        path = np.zeros((k, len(MUSCLES)))
        need = np.zeros((k, len(MUSCLES)), dtype=bool)
        if len(self.sh_idx):
            s, bad = self._shoulder(q[:, :3])
            path[:, self.sh_idx] += s
            need[:, self.sh_idx] |= bad
        if len(self.el_idx):
            e, bad = self._elbow(q[:, 3])
            path[:, self.el_idx] += e
            need[:, self.el_idx] |= bad
        path -= self.offset
        fiber = np.empty_like(path)
        for m in range(len(MUSCLES)):
            x = self.map_x[self.map_start[m] : self.map_start[m + 1]]
            y = self.map_y[self.map_start[m] : self.map_start[m + 1]]
            col = path[:, m]
            if len(x) == 0:
                need[:, m] = True
                fiber[:, m] = np.nan
                continue
            fiber[:, m] = np.interp(col, x, y)
            need[:, m] |= ~((col >= x[0]) & (col <= x[-1]))
        if not untrusted:
            fiber[need] = np.nan
        return fiber, path, need

    def estimate(self, joints: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Table values for *every* entry, trusted or not, and the mask of the untrusted ones.

        joints (n, T, 4) or (T, 4) degrees -> (fiber (n, T, 25) mm, needs-OpenSim mask (n, T, 25)),
        without the batch axis for a (T, 4) input. No OpenSim: the entries :meth:`lengths` would send
        to OpenSim hold the untrusted table value (see :meth:`table_lengths`); NaN beyond ``lengths``.
        ``np.where(mask, nan, fiber)`` is ``lengths(..., fallback=False)``. The untrusted values only
        decide which fallback frames to ask OpenSim first
        (:func:`deepdraw.dataset.engines.muscle_jerk_progressive`), never data.
        """
        q, valid, squeeze = as_joints(joints, lengths)
        out = np.full(q.shape[:2] + (len(MUSCLES),), np.nan)
        mask = np.zeros(q.shape[:2] + (len(MUSCLES),), dtype=bool)
        fib, _, need = self.table_lengths(q[valid], untrusted=True)
        out[valid], mask[valid] = fib, need
        return (out[0], mask[0]) if squeeze else (out, mask)

    # -- public -----------------------------------------------------------------------------------
    @overload
    def lengths(
        self,
        joints: Any,
        lengths: Any = None,
        *,
        fallback: bool = True,
        return_fallback: Literal[False] = False,
        chunk: int = 32768,
        quiet: bool = True,
        known: KnownValues | None = None,
    ) -> np.ndarray: ...

    @overload
    def lengths(
        self,
        joints: Any,
        lengths: Any = None,
        *,
        fallback: bool = True,
        return_fallback: Literal[True],
        chunk: int = 32768,
        quiet: bool = True,
        known: KnownValues | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def lengths(
        self,
        joints: Any,
        lengths: Any = None,
        *,
        fallback: bool = True,
        return_fallback: bool = False,
        chunk: int = 32768,
        quiet: bool = True,
        known: KnownValues | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fiber lengths (mm): joints (n, T, 4) or (T, 4) degrees -> (n, T, 25) or (T, 25).

        ``lengths`` (n,) ints: valid frames per trajectory (NaN out beyond them). Entries the tables
        cannot give are computed by the exact engine (``fallback=True``) or left NaN. With
        ``return_fallback`` also returns the mask (..., T, 25) of the entries that needed the exact
        engine (a frame fell back when any of its muscles did: ``mask.any(-1)``).
        ``known``: arrays (trajectory, frame, muscle, value) of OpenSim values computed before for
        these postures (the dataset's screening keeps them); an entry that needs the exact engine and
        is listed takes the listed value instead of asking OpenSim again (the returned mask still
        marks it). Listed entries the tables can give are ignored.
        """
        from tqdm.auto import tqdm

        q, valid, squeeze = as_joints(joints, lengths)
        flat = q[valid]
        fib = np.empty((len(flat), len(MUSCLES)))
        need = np.zeros((len(flat), len(MUSCLES)), dtype=bool)
        for s in tqdm(range(0, len(flat), chunk), desc="fast muscle tables", disable=quiet, leave=False):
            f, _, nd = self.table_lengths(flat[s : s + chunk])
            fib[s : s + chunk] = f
            need[s : s + chunk] = nd
        ask = need
        if known is not None and len(known[0]):
            ask = need.copy()
            traj, frame, mus, val = (np.asarray(a) for a in known)
            pos = np.cumsum(valid.ravel()).reshape(valid.shape) - 1  # (n, T) -> row of ``flat``
            if squeeze:
                traj = np.zeros_like(traj)
            ok = (frame >= 0) & (frame < valid.shape[1]) & (traj >= 0) & (traj < valid.shape[0])
            ok &= (mus >= 0) & (mus < len(MUSCLES))
            ok[ok] &= valid[traj[ok], frame[ok]]
            r, m = pos[traj[ok], frame[ok]], mus[ok].astype(np.int64)
            use = need[r, m]
            fib[r[use], m[use]] = val[ok][use]
            ask[r[use], m[use]] = False
        rows = np.flatnonzero(ask.any(axis=1))
        if fallback and rows.size:
            log.debug(
                "fast engine: %d of %d frames (%d muscle values) from OpenSim",
                rows.size,
                len(flat),
                int(ask.sum()),
            )
            sub = fib[rows]
            sub[ask[rows]] = self.fallback(flat[rows], ask[rows], quiet=quiet)[ask[rows]]
            fib[rows] = sub
        out = np.full(q.shape[:2] + (len(MUSCLES),), np.nan)
        out[valid] = fib
        if not return_fallback:
            return out[0] if squeeze else out
        mask = np.zeros(q.shape[:2] + (len(MUSCLES),), dtype=bool)
        mask[valid] = need
        return (out[0], mask[0]) if squeeze else (out, mask)


def _refine_values(fe: FastEngine, q3: np.ndarray, val: np.ndarray, bad: np.ndarray) -> None:
    """Level 2: fill, in place, the entries of ``bad`` (K, ms) whose (cell, muscle) pair has a finer
    table and whose fine cell a stencil passed at build time; they leave the mask."""
    assert fe.rf_key is not None
    n, r = fe.sh_n, fe.rf_ratio
    u, i0, inside = grid_cells(n, fe.sh_origin, fe.sh_step, q3)
    rows, cols = np.nonzero(bad & inside[:, None])
    if rows.size == 0:
        return
    key = pair_keys(n, i0[rows], cols)
    p = np.minimum(np.searchsorted(fe.rf_key, key), len(fe.rf_key) - 1)
    hit = fe.rf_key[p] == key
    rows, cols, p = rows[hit], cols[hit], p[hit]
    tf = (u[rows] - i0[rows]) * r
    j = np.clip(np.floor(tf), 0, r - 1).astype(np.int64)
    code = fe.rf_code[p, (j[:, 0] * r + j[:, 1]) * r + j[:, 2]].astype(np.int64)
    ok = code != FALLBACK
    rows, cols, p, tf, j, code = rows[ok], cols[ok], p[ok], tf[ok], j[ok], code[ok]
    if rows.size == 0:
        return
    shift = np.stack([code // 9, (code // 3) % 3, code % 3], axis=-1) - 1
    w = lagrange4(tf - j - shift)  # (E, 3, 4)
    big = r + 3
    base = np.clip(j + shift, 0, r - 1)  # local node 0 is fine node -1 of the cell: stencil j-1+s..j+2+s
    f0 = (base[:, 0] * big + base[:, 1]) * big + base[:, 2]
    acc = np.zeros(len(rows))
    for a in range(4):
        for b in range(4):
            wab = w[:, 0, a] * w[:, 1, b]
            for c in range(4):
                acc += wab * w[:, 2, c] * fe.rf_table[p, f0 + (a * big + b) * big + c]
    good = np.isfinite(acc)
    val[rows[good], cols[good]] = acc[good]
    bad[rows[good], cols[good]] = False
