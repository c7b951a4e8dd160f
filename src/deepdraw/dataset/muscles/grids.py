"""The grids of the level-1 tables (:func:`~deepdraw.dataset.muscles.build_fast_engine`): the shoulder grid
and its region of cells, the elbow grid, and the postures placed on them.

The shoulder table is tabulated at the elbow flexion :data:`ELBOW_REF_DEG`, the elbow table at the
shoulder posture :data:`SHOULDER_REF_DEG`; both grids reach :data:`GRID_PAD` nodes beyond the joint limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DeepDrawError
from .constants import Q_MAX, Q_MIN
from .tables import CHECK_POINTS
from .trajectories import synthetic_trajectories

GRID_PAD = 3  # nodes beyond the joint limits on each side (room for shifted stencils)
SHOULDER_REF_DEG = np.array([50.0, 40.0, 20.0])  # shoulder posture at which the elbow parts are tabulated
ELBOW_REF_DEG = 90.0  # elbow flexion at which the shoulder parts are tabulated


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


def pair_keys(n: np.ndarray, c3: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Keys of (shoulder cell (E, 3), shoulder-muscle index (E,)) pairs: k * cells + flat cell."""
    c3 = c3.astype(np.int64)
    return k * int(np.prod(n - 1)) + (c3[:, 0] * (n[1] - 1) + c3[:, 1]) * (n[2] - 1) + c3[:, 2]


@dataclass
class ShoulderGrid:
    """The level-1 shoulder grid: nodes ``origin + h * i`` (deg), ``n`` (3,) per axis, with the region."""

    origin: np.ndarray  # (3,) deg
    h: float  # deg
    n: np.ndarray  # (3,) nodes per axis
    region: np.ndarray  # (n-1)^3 bool: cells served by the tables
    node_ix: np.ndarray  # (N, 3) nodes the region's stencils use
    cells: np.ndarray  # (C, 3) region cells
    half_u: np.ndarray  # (P, 3) the cells' check points, unique, in half steps
    half_inv: np.ndarray  # (C, len(CHECK_POINTS)) index of each cell's check points into half_u


def shoulder_grid(post: np.ndarray, step_deg: float, margin: int) -> ShoulderGrid:
    """The shoulder grid (``GRID_PAD`` nodes beyond the joint limits) and the region of ``post`` (K, 4)."""
    h = float(step_deg)
    origin = Q_MIN[:3] - GRID_PAD * h
    n = np.ceil((Q_MAX[:3] - Q_MIN[:3]) / h - 1e-9).astype(np.int64) + 1 + 2 * GRID_PAD
    region = _region_cells(post[:, :3], origin, h, n, margin)
    node_ix = np.argwhere(_stencil_nodes(region, n))
    cells = np.argwhere(region)
    half = (2 * cells[:, None, :] + np.rint(2 * CHECK_POINTS)[None].astype(np.int64)).reshape(-1, 3)
    half_u, half_inv = np.unique(half, axis=0, return_inverse=True)
    half_inv = half_inv.reshape(len(cells), len(CHECK_POINTS))
    return ShoulderGrid(origin, h, n, region, node_ix, cells, half_u, half_inv)


@dataclass
class ElbowGrid:
    """The elbow grid: nodes ``origin + h * i`` (deg), ``n`` nodes; check points at t = 1/3, 2/3 of
    each of ``cells``."""

    origin: float
    h: float
    n: int
    cells: np.ndarray
    chk: np.ndarray


def elbow_grid(step_deg: float) -> ElbowGrid:
    """The elbow grid of step ``step_deg`` (``GRID_PAD`` nodes beyond the joint limits)."""
    he = float(step_deg)
    ne = int(np.ceil((Q_MAX[3] - Q_MIN[3]) / he - 1e-9)) + 1 + 2 * GRID_PAD
    return ElbowGrid(Q_MIN[3] - GRID_PAD * he, he, ne, np.arange(2, ne - 3), np.array([1.0 / 3.0, 2.0 / 3.0]))


def with_elbow(q3: np.ndarray, d: float) -> np.ndarray:
    """Shoulder postures (K, 3) with elbow flexion ``d`` -> (K, 4)."""
    return np.concatenate([q3, np.full((len(q3), 1), d)], axis=1)


def with_shoulder(d: np.ndarray) -> np.ndarray:
    """Elbow flexions (K,) at the reference shoulder posture ``SHOULDER_REF_DEG`` -> (K, 4)."""
    return np.concatenate([np.broadcast_to(SHOULDER_REF_DEG, (len(d), 3)), d[:, None]], axis=1)


def fiber_postures(post: np.ndarray, g: ShoulderGrid, rng: np.random.Generator, n_fs: int) -> np.ndarray:
    """Fiber-map samples (n_fs, 4): dataset postures, and random ones in the region with any elbow flexion."""
    pick = post[rng.integers(len(post), size=n_fs // 2)]
    rc = g.cells[rng.integers(len(g.cells), size=n_fs - n_fs // 2)]
    rnd = np.concatenate(
        [g.origin + g.h * (rc + rng.random((len(rc), 3))), rng.uniform(Q_MIN[3], Q_MAX[3], (len(rc), 1))],
        axis=1,
    )
    return np.concatenate([pick, rnd])
