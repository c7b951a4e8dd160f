"""Level 2 of the fast muscle engine: finer tables where the shoulder table has no trusted stencil.

The level-1 shoulder table (step h, :func:`deepdraw.dataset.muscles.build_fast_engine`) leaves some
(cell, muscle) pairs to OpenSim: cells holding a wrapping jump, or a path too curved for a cubic on
h. For the pairs the dataset's postures visit, this module tabulates the path length again on a grid
``ratio`` times finer, inside the cell (fine nodes -1 .. ratio+1 per axis, so that every fine cell
has its centred stencil and most have shifted ones), and checks each fine cell's stencils against
OpenSim at its centre and face centres, as level 1 does. Fine cells that pass are served from the
table; the rest (the jumps themselves) still go to OpenSim. See docs/muscles.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DeepDrawError
from .build import write_engine
from .constants import ENGINE_KIND, ENGINE_SCHEMA, MUSCLES, default_engine_path, default_model_path
from .exact import evaluate_postures
from .fast import FastEngine
from .grids import ELBOW_REF_DEG, pair_keys, region_postures
from .tables import (
    CHECK_POINTS,
    FALLBACK,
    REFINE_KEYS,
    choose_stencils,
    encode_table,
    grid_cells,
    quantise,
    stencil_errors,
)

log = logging.getLogger(__name__)


def visited_pairs(fe: FastEngine, postures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level-1 (cell, muscle) pairs without a trusted stencil that ``postures`` (K, >=3) visit.

    Returns the sorted pair keys (shoulder muscle index * cells + flat cell) and the visits per key.
    """
    q3 = np.asarray(postures, dtype=np.float64).reshape(-1, postures.shape[-1])[:, :3]
    n = fe.sh_n
    keys = []
    for s in range(0, len(q3), 65536):
        q = q3[s : s + 65536]
        _, bad = fe._shoulder_coarse(q)
        _, i0, inside = grid_cells(n, fe.sh_origin, fe.sh_step, q)
        rows, cols = np.nonzero(bad & inside[:, None])
        keys.append(pair_keys(n, i0[rows], cols))
    return np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)


def _unique_rows(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a non-negative int array (N, 3) and the inverse index."""
    m = int(coords.max()) + 1 if coords.size else 1
    key = (coords[:, 0] * m + coords[:, 1]) * m + coords[:, 2]
    uk, inv = np.unique(key, return_inverse=True)
    return np.stack([uk // (m * m), (uk // m) % m, uk % m], axis=1), inv


def _fine_offsets(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets inside a level-1 cell split ``r`` ways per axis: the fine nodes -1 .. r+1 per axis
    ((r+3)^3, 3), the fine cells (r^3, 3) and their check points (centre + face centres) in half fine
    steps (r^3 * 7, 3)."""
    loc = np.arange(-1, r + 2)
    node_off = np.stack(np.meshgrid(loc, loc, loc, indexing="ij"), axis=-1).reshape(-1, 3)  # (big^3, 3)
    jj = np.arange(r)
    cell_off = np.stack(np.meshgrid(jj, jj, jj, indexing="ij"), axis=-1).reshape(-1, 3)  # (r^3, 3)
    chk_off = np.rint(2 * CHECK_POINTS).astype(np.int64)  # (7, 3) in half fine steps
    chk = (2 * cell_off[:, None, :] + chk_off[None]).reshape(-1, 3)  # (r^3 * 7, 3) half fine steps
    return node_off, cell_off, chk


def _fine_plan(
    fe: FastEngine, r: int, pair_c3: np.ndarray, pair_k: np.ndarray, offsets: np.ndarray, scale: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The postures at ``offsets`` (in 1/``scale`` fine steps) of every pair's cell, on the global fine
    grid (step h / r) so that neighbouring pairs share their postures: unique postures (K, 4) (elbow at
    ``ELBOW_REF_DEG``), the muscles to compute at each (K, 25) and each pair's index into them (pairs, offsets)."""
    g = (scale * r * pair_c3[:, None, :] + offsets[None]).reshape(-1, 3)  # global, in 1/scale fine steps
    g = g + 2 * scale  # non-negative
    uniq, inv = _unique_rows(g)
    which = np.zeros((len(uniq), len(MUSCLES)), dtype=bool)
    which[inv, fe.sh_idx[np.repeat(pair_k, len(offsets))]] = True
    q3 = fe.sh_origin + fe.sh_step / r * ((uniq - 2 * scale) / scale)
    return (
        np.concatenate([q3, np.full((len(q3), 1), ELBOW_REF_DEG)], axis=1),
        which,
        inv.reshape(len(pair_k), -1),
    )


def _fine_stencils(
    table: np.ndarray, truth: np.ndarray, cell_off: np.ndarray, r: int, tol: float
) -> np.ndarray:
    """Stencil code (pairs, r^3) of every fine cell: tables (pairs, r+3, r+3, r+3), OpenSim at the
    check points (pairs, r^3, 7)."""
    npair, big = len(table), r + 3
    # padded by one node per side (index of fine node f: f + 2, fine cell j: j + 2), with zeros: the
    # stencil weights are zero there, but NaN * 0 would spoil every stencil of the edge cells
    padded = np.zeros((npair, big + 2, big + 2, big + 2))
    padded[:, 1:-1, 1:-1, 1:-1] = table
    # a shift s of fine cell j reads nodes j-1+s .. j+2+s: inside the block (-1 .. r+1) or not allowed
    sh = np.array([-1, 0, 1])
    ok_axis = (cell_off[:, :, None] + sh[None, None, :] >= 0) & (
        cell_off[:, :, None] + sh[None, None, :] <= r - 1
    )
    shift_ok = (
        ok_axis[:, 0, :, None, None] & ok_axis[:, 1, None, :, None] & ok_axis[:, 2, None, None, :]
    ).reshape(r**3, 27)
    code = np.full((npair, r**3), FALLBACK, dtype=np.uint8)
    cells = cell_off + 2
    for s in range(0, npair, 256):
        blk = padded[s : s + 256]
        err = stencil_errors(blk, cells, CHECK_POINTS, truth[s : s + 256].transpose(1, 2, 0))  # (r^3, 27, B)
        err[~shift_ok] = np.inf
        code[s : s + 256] = choose_stencils(err, tol, 13).T
    return code


def _without_isolated_failures(
    code: np.ndarray, iso: int, sh_idx: np.ndarray, pair_k: np.ndarray, stats: dict[str, Any]
) -> np.ndarray:
    """(pairs,) bool: the pairs kept. Thin wrapping pockets (a ~0.1 deg tube where the path is several
    mm shorter) fail only the few fine cells whose check points happen to sit in them, and slip through
    the others; a jump sheet crossing the block fails at least r^2 fine cells. A pair with 1..``iso``
    failed fine cells is taken as a pocket the checks only grazed and is left to OpenSim whole.
    Records the counts in ``stats``."""
    n_failed = (code == FALLBACK).sum(axis=1)
    drop = (n_failed >= 1) & (n_failed <= iso)
    stats["pairs_dropped_isolated_failures"] = int(drop.sum())
    kept, kept_k = code[~drop], pair_k[~drop]
    stats["pairs_kept"] = int(len(kept))
    passed = kept != FALLBACK
    stats["fine_cells_passed_frac"] = round(float(passed.mean()), 4) if len(kept) else 0.0
    stats["fine_cells_passed_frac_per_muscle"] = {
        MUSCLES[sh_idx[k]]: round(float(passed[kept_k == k].mean()), 4) for k in np.unique(kept_k)
    }
    return ~drop


def _refine_ratio(out: Path, overwrite: bool, ratio: int, isolated_max: int | None) -> int:
    """The fine steps per cell ``r`` after checking the output path, ``ratio`` and ``isolated_max``."""
    if out.exists() and not overwrite:
        raise DeepDrawError(f"{out}: output exists; refusing to overwrite it (delete it, or use --overwrite)")
    r = int(ratio)
    if not 2 <= r <= 16:
        raise DeepDrawError(f"refine: ratio={ratio}; expected an integer from 2 to 16")
    if isolated_max is not None and not 0 <= int(isolated_max) < r**3:
        raise DeepDrawError(
            f"refine: isolated_max={isolated_max}; expected 0 to {r**3 - 1} failed fine cells"
        )
    return r


def _level1_engine(src: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], FastEngine, dict[str, Any]]:
    """The arrays (level 2 dropped), attributes, level-1 engine and build config (``refine`` dropped) of ``src``."""
    from ...store import read_arrays, read_attrs

    arrays = read_arrays(src, kind=ENGINE_KIND, schema=ENGINE_SCHEMA)
    attrs = read_attrs(src)
    for k in REFINE_KEYS:
        arrays.pop(k, None)
    fe = FastEngine(arrays, src, attrs)
    cfg = dict(attrs.get("config", {}))
    cfg.pop("refine", None)
    return arrays, attrs, fe, cfg


def _pairs_to_refine(
    fe: FastEngine, post: np.ndarray, min_visits: int, stats: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair keys visited ``min_visits`` times by ``post``, their shoulder-muscle index and cell (P, 3)."""
    keys, visits = visited_pairs(fe, post)
    keys = keys[visits >= min_visits]
    ncell = int(np.prod(fe.sh_n - 1))
    pair_k = keys // ncell
    pair_c3 = np.stack(np.unravel_index(keys % ncell, tuple(fe.sh_n - 1)), axis=1)
    stats.update(
        region_postures=int(len(post)),
        pairs=int(len(keys)),
        pair_visits=int(visits[visits >= min_visits].sum()),
    )
    return keys, pair_k, pair_c3


def _fine_tables(
    fe: FastEngine,
    mp: Path,
    r: int,
    pair_c3: np.ndarray,
    pair_k: np.ndarray,
    tol: float,
    workers: int,
    quiet: bool,
    stats: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """OpenSim at every pair's fine nodes and check points: the fine tables (P, r+3, r+3, r+3), quantised
    as stored, and the stencil code (P, r^3) of each fine cell."""
    # fine nodes (-1 .. r+1 per axis) and check points (centre + face centres of each fine cell),
    # on the global fine grid (step h / r) so that neighbouring pairs share their postures
    big = r + 3
    node_off, cell_off, chk = _fine_offsets(r)
    post_nodes, which_nodes, inv_nodes = _fine_plan(fe, r, pair_c3, pair_k, node_off, 1)
    post_chk, which_chk, inv_chk = _fine_plan(fe, r, pair_c3, pair_k, chk, 2)
    stats.update(opensim_postures=int(len(post_nodes) + len(post_chk)))
    log.info("fast engine level 2: %d node postures, %d check postures", len(post_nodes), len(post_chk))
    t0 = time.time()
    path_n, _ = evaluate_postures(
        mp, post_nodes, False, workers, quiet=quiet, desc="OpenSim: level-2 nodes", which=which_nodes
    )
    path_c, _ = evaluate_postures(
        mp, post_chk, False, workers, quiet=quiet, desc="OpenSim: level-2 checks", which=which_chk
    )
    stats["time_opensim_s"] = round(time.time() - t0, 1)

    # tables (quantised as stored) and the stencil of each fine cell
    t0 = time.time()
    npair = len(pair_k)
    col = fe.sh_idx[pair_k]
    table = quantise(path_n[inv_nodes, col[:, None]]).reshape(npair, big, big, big)
    truth = path_c[inv_chk, col[:, None]].reshape(npair, r**3, len(CHECK_POINTS))
    code = _fine_stencils(table, truth, cell_off, r, tol)
    stats["time_stencils_s"] = round(time.time() - t0, 1)
    return table, code


def _refine_config(
    r: int,
    tol: float,
    min_visits: int,
    iso: int,
    seed: int,
    region_joints: np.ndarray | None,
    n_region_traj: int,
) -> dict[str, Any]:
    """The ``refine`` section of the engine's config: the settings of the level-2 build."""
    return {
        "ratio": r, "tol_mm": tol, "min_visits": int(min_visits), "isolated_max": iso, "seed": int(seed),
        "region": "synthetic_trajectories" if region_joints is None else "region_joints",
        "n_region_traj": int(n_region_traj) if region_joints is None else None,
    }  # fmt: skip


def refine_fast_engine(
    engine_path: str | os.PathLike | None = None,
    out_path: str | os.PathLike | None = None,
    *,
    ratio: int = 4,
    tol_mm: float | None = None,
    n_region_traj: int = 20000,
    region_joints: np.ndarray | None = None,
    min_visits: int = 1,
    isolated_max: int | None = None,
    seed: int = 0,
    model_path: str | os.PathLike | None = None,
    workers: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
) -> Path:
    """Add level-2 tables to a fast engine and write it to ``out_path`` (default: over ``engine_path``,
    which needs ``overwrite``).

    Pairs refined: the level-1 pairs without a trusted stencil visited at least ``min_visits`` times
    by the postures of ``n_region_traj`` :func:`~deepdraw.dataset.muscles.synthetic_trajectories` (seed ``seed``; the level-1
    region's postures) or of ``region_joints`` (..., 4) degrees. ``tol_mm``: the stencil tolerance on
    the check points (default: the level-1 build's). Pairs with 1 to ``isolated_max`` (default:
    ``ratio``) failed fine cells are dropped: isolated failures mark thin wrapping pockets that the
    check points only grazed (docs/muscles.md). An engine that already has level 2 is refined from
    its level 1 again. Returns the path written.
    """
    t_start = time.time()
    src = Path(engine_path) if engine_path is not None else default_engine_path()
    out = Path(out_path) if out_path is not None else src
    r = _refine_ratio(out, overwrite, ratio, isolated_max)
    arrays, attrs, fe, cfg = _level1_engine(src)
    tol = float(tol_mm if tol_mm is not None else cfg.get("tol_mm", 0.04))
    if not tol > 0:
        raise DeepDrawError(f"refine: tol_mm={tol_mm}; expected a positive tolerance")
    mp = Path(model_path) if model_path is not None else default_model_path()
    workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
    stats: dict[str, Any] = {}

    # 1. the pairs to refine
    post = region_postures(region_joints, n_region_traj, seed)
    keys, pair_k, pair_c3 = _pairs_to_refine(fe, post, min_visits, stats)
    log.info("fast engine level 2: %d (cell, muscle) pairs, ratio %d, %d workers", len(keys), r, workers)

    # 2. OpenSim at the fine nodes and check points; 3. tables and the stencil of each fine cell
    table, code = _fine_tables(fe, mp, r, pair_c3, pair_k, tol, workers, quiet, stats)
    iso = r if isolated_max is None else int(isolated_max)
    keep_pair = _without_isolated_failures(code, iso, fe.sh_idx, pair_k, stats)
    keys, pair_k, code, table = keys[keep_pair], pair_k[keep_pair], code[keep_pair], table[keep_pair]
    npair = len(keys)

    # 4. write: level 1 as it was, plus level 2
    diff, nanmask = encode_table(table)
    arrays.update(
        refine_ratio=np.array([r], dtype=np.int16),
        refine_key=keys.astype(np.int64),
        refine_table_diff=diff,
        refine_table_nan=nanmask,
        refine_code=code.reshape(npair, r, r, r),
    )
    stats["build_time_s"] = round(time.time() - t_start, 1)
    cfg["refine"] = _refine_config(r, tol, min_visits, iso, seed, region_joints, n_region_traj)
    build_stats = json.loads(attrs.get("build_stats", "{}"))
    build_stats["refine"] = stats
    keep = {
        "build_stats": json.dumps(build_stats, sort_keys=True),
        "model_file": attrs.get("model_file", mp.name),
    }
    seeds = dict(attrs.get("seeds", {}) or {})
    seeds["refine"] = int(seed)
    write_engine(out, arrays, cfg, seeds, attrs.get("inputs", {}), keep, overwrite)
    log.info("fast engine level 2 written to %s in %.0f s: %s", out, stats["build_time_s"], stats)
    return out
