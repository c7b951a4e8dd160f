"""Building the fast engine from OpenSim (:func:`build_fast_engine`, level 1): the steps in order, the
engine's arrays and build statistics, and the artifact written.

The steps live in their own modules: :mod:`.grids` (the shoulder and elbow grids, the region),
:mod:`.coupling` (which muscle depends on which joints), :mod:`.stencils` (stencil choice and the checks
against OpenSim). This module re-exports :data:`ELBOW_REF_DEG`, :func:`region_postures` and
:func:`pair_keys` from :mod:`.grids`, their home.
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
from .constants import ENGINE_KIND, MUSCLES, default_engine_path, default_model_path
from .coupling import muscle_split
from .exact import ExactEngine, evaluate_postures
from .grids import (
    ELBOW_REF_DEG,
    GRID_PAD,
    SHOULDER_REF_DEG,
    ElbowGrid,
    ShoulderGrid,
    elbow_grid,
    fiber_postures,
    pair_keys,
    region_postures,
    shoulder_grid,
    with_elbow,
    with_shoulder,
)
from .stencils import checked_shoulder_table, elbow_stencils
from .tables import FALLBACK, encode_table

__all__ = ["ELBOW_REF_DEG", "build_fast_engine", "pair_keys", "region_postures", "write_engine"]

log = logging.getLogger(__name__)

_FIBER_DL = 0.05  # mm: spacing of the path -> fiber map


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


def _opensim_values(
    model_path: Path, g: ShoulderGrid, eg: ElbowGrid, fib_post: np.ndarray, workers: int, quiet: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenSim path lengths (K, 25) at the shoulder nodes then check points (elbow at ``ELBOW_REF_DEG``),
    at the elbow nodes, check points and the reference posture (shoulder at ``SHOULDER_REF_DEG``), and
    path and fiber lengths at the fiber-map postures ``fib_post``."""
    post_sh = np.concatenate(
        [
            with_elbow(g.origin + g.h * g.node_ix, ELBOW_REF_DEG),
            with_elbow(g.origin + g.h * g.half_u / 2.0, ELBOW_REF_DEG),
        ]
    )
    d_nodes = eg.origin + eg.h * np.arange(eg.n)
    d_chk = (eg.origin + eg.h * (eg.cells[:, None] + eg.chk[None, :])).ravel()
    post_el = np.concatenate(
        [with_shoulder(d_nodes), with_shoulder(d_chk), np.r_[SHOULDER_REF_DEG, ELBOW_REF_DEG][None]]
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
    g: ShoulderGrid,
    eg: ElbowGrid,
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
    table_e, code_e = elbow_stencils(eg, path_el[: eg.n][:, el_idx], chk_vals, tol_mm)
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
    g: ShoulderGrid, eg: ElbowGrid, sh_idx: np.ndarray, arrays: dict[str, np.ndarray], ferr: np.ndarray
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
        "face_points": face_points, "limit_face_frac": limit_face_frac, "shoulder_ref_deg": SHOULDER_REF_DEG.tolist(), "elbow_ref_deg": ELBOW_REF_DEG,
        "pad": GRID_PAD, "fiber_map_dl_mm": _FIBER_DL, "region": "synthetic_trajectories" if synthetic_region else "region_joints",
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
    coupling, sh_idx, el_idx, stats["mixed_difference_max_mm"] = muscle_split(eng, post, rng, model_path)

    # 3. shoulder grid, region, nodes and check points; 4. elbow grid, nodes and check points
    g = shoulder_grid(post, step_deg, region_margin)
    eg = elbow_grid(elbow_step_deg)
    # 5. OpenSim at the nodes and check points, and at the fiber-map samples
    n_fs = int(n_fiber_samples)
    fib_post = fiber_postures(post, g, rng, n_fs)
    t0 = time.time()
    path_sh, path_el, path_fs, fib_fs = _opensim_values(model_path, g, eg, fib_post, workers, quiet)
    stats["time_opensim_s"] = round(time.time() - t0, 1)
    stats["opensim_postures"] = int(len(path_sh) + len(path_el) + len(fib_post))

    # 6. shoulder table and stencil choice per cell and muscle; 6b. dense checks; 6c. joint-limit faces
    checks = (dense_tol_mm, dense_rounds, int(face_points), limit_face_frac)
    table, code = checked_shoulder_table(
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
