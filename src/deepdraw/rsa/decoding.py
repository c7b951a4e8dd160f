"""Population decoding of hand kinematics from all units of a layer at one frame (original: single_cell/rowwise_neuron_curves.py, tune_decoding; Fig. 4E).

Per layer, each (trajectory, output frame t) is one point: the features are the activations of every
row x channel at frame t (``layer[i, :, t, :]``), the targets are the hand kinematics at the input frame
at the centre of that output frame's receptive field (``centres[t]``). One ridge regression
(alpha = 1, intercept, no feature scaling, as the original's ``Ridge(alpha=1)``) per target group:

* **position**: hand position (x, y, z) in cm, world frame, all points. Decoded in 3-D for both
  planes together (the original decoded the 2 in-plane coordinates of one plane at a time); scored
  by the mean Euclidean error (cm) and R² = 1 - SSE / SST summed over the 3 axes.
* **direction**: in-plane movement direction θ (horizontal plane: atan2(vy, vx); vertical plane:
  atan2(vz, vy)); the decoder predicts (cos θ, sin θ) and the error is |wrap(atan2(ŝ, ĉ) - θ)| in
  degrees (chance: 90°). The original regressed θ itself linearly, which breaks at ±180°.
* **speed**: ‖v‖ in cm/s (velocity = ``np.gradient`` of position over frames / dt); RMSE and R².

Direction and speed use only the points inside the movement (``start_id <= frame < end_id``, end
exclusive as the dataset stage writes it, with speed > 0), where the direction is defined; position uses every point.

Trajectories, never frames, are split 80/20 into train and test (:func:`trajectory_split`), so no
test trajectory contributes any frame to the fit. The normal equations are accumulated in float64 over
blocks of trajectories, so no (points x features) float64 copy of a whole layer is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import DeepDrawError

__all__ = [
    "DECODING_METRICS",
    "Kinematics",
    "RidgeStats",
    "decode_layer",
    "kinematic_targets",
    "trajectory_split",
]

DECODING_METRICS = {
    "position_error_cm": "mean Euclidean error of the decoded 3-D hand position (cm), test trajectories",
    "position_r2": "R² of the decoded position, 1 - SSE/SST summed over x, y, z",
    "direction_error_deg": "mean absolute angular error of the decoded in-plane direction (degrees)",
    "speed_rmse": "RMSE of the decoded hand speed (cm/s)",
    "speed_r2": "R² of the decoded hand speed",
}


@dataclass
class Kinematics:
    """Per-frame decoding targets of n trajectories of T frames.

    position (n, 3, T) cm; speed (n, T) cm/s; angle (n, T) rad in (-π, π], in-plane direction;
    moving (n, T) bool: inside [start_id, end_id) with speed > 0.
    """

    position: np.ndarray
    speed: np.ndarray
    angle: np.ndarray
    moving: np.ndarray


def _plane_axes(plane: np.ndarray) -> np.ndarray:
    """(n, 2) indices of the in-plane axes: horizontal -> (x, y), vertical -> (y, z)."""
    axes = np.empty((len(plane), 2), dtype=np.int64)
    for i, p in enumerate(plane):
        name = p.decode() if isinstance(p, bytes) else str(p)
        if name.startswith("h"):
            axes[i] = (0, 1)
        elif name.startswith("v"):
            axes[i] = (1, 2)
        else:
            raise DeepDrawError(f"key 'plane' row {i} is {name!r}; expected 'horizontal' or 'vertical'")
    return axes


def kinematic_targets(
    endeffector: np.ndarray, plane: np.ndarray, start_id: np.ndarray, end_id: np.ndarray, dt: float
) -> Kinematics:
    """Decoding targets from hand positions ``endeffector`` (n, 3, T) cm sampled every ``dt`` seconds."""
    pos = np.asarray(endeffector, dtype=np.float64)
    n, _, T = pos.shape
    vel = np.gradient(pos, dt, axis=2)
    speed = np.linalg.norm(vel, axis=1)
    axes = _plane_axes(np.asarray(plane))
    rows = np.arange(n)
    va = vel[rows, axes[:, 0]]
    vb = vel[rows, axes[:, 1]]
    angle = np.arctan2(vb, va)
    frames = np.arange(T)[None, :]
    inside = (frames >= np.asarray(start_id)[:, None]) & (frames < np.asarray(end_id)[:, None])
    return Kinematics(position=pos, speed=speed, angle=angle, moving=inside & (speed > 0))


def trajectory_split(n: int, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool mask of the test trajectories: round(test_fraction * n) of n, drawn by ``rng``."""
    if not 0 < test_fraction < 1:
        raise DeepDrawError(f"rsa.decoding_test_fraction is {test_fraction}; expected 0 < x < 1")
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n_test >= n:
        raise DeepDrawError(
            f"decoding: {n} trajectories cannot be split {1 - test_fraction:.0%}/{test_fraction:.0%}; "
            "expected at least one trajectory on each side"
        )
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_test]] = True
    return mask


class RidgeStats:
    """Running sums for a ridge regression with intercept: XᵀX, XᵀY, Σx, Σy, count (float64)."""

    def __init__(self, d: int, k: int) -> None:
        self.xx = np.zeros((d, d))
        self.xy = np.zeros((d, k))
        self.sx = np.zeros(d)
        self.sy = np.zeros(k)
        self.n = 0

    def add(self, X: np.ndarray, Y: np.ndarray) -> None:
        if X.shape[0] == 0:
            return
        self.xx += X.T @ X
        self.xy += X.T @ Y.astype(X.dtype, copy=False)
        self.sx += X.sum(axis=0)
        self.sy += Y.sum(axis=0)
        self.n += X.shape[0]

    def __iadd__(self, other: RidgeStats) -> RidgeStats:
        self.xx += other.xx
        self.xy += other.xy
        self.sx += other.sx
        self.sy += other.sy
        self.n += other.n
        return self

    def solve(self, alpha: float, cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Weights (d, k) and intercept (k,) minimising ‖Y - XW - b‖² + alpha ‖W‖² (b not penalised)."""
        if self.n < 2:
            raise DeepDrawError(f"decoding: {self.n} training points; expected at least 2")
        mx = self.sx / self.n
        my = self.sy[cols] / self.n
        C = self.xx - self.n * np.outer(mx, mx)
        cxy = self.xy[:, cols] - self.n * np.outer(mx, my)
        C[np.diag_indices_from(C)] += alpha
        try:
            W = np.linalg.solve(C, cxy)
        except np.linalg.LinAlgError:
            W = np.linalg.lstsq(C, cxy, rcond=None)[0]
        return W, my - mx @ W


def _block_points(act: np.ndarray, traj: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Features of trajectories ``traj`` minus ``shift``: (len(traj) * frames, rows * channels).

    float32 for float32 activations (each block's products are small; they are summed in float64),
    float64 otherwise. Ridge with an intercept is invariant to the shift, which keeps the float32 sums
    free of cancellation.
    """
    a = act[traj]  # (c, rows, T, ch)
    c, r, T, ch = a.shape
    dt = np.float32 if a.dtype == np.float32 else np.float64
    X: np.ndarray = np.ascontiguousarray(a.transpose(0, 2, 1, 3), dtype=dt).reshape(c * T, r * ch)
    if shift is not None:
        X -= shift.astype(dt)
    return X


def _block_targets(kin: Kinematics, traj: np.ndarray, centres: np.ndarray):
    pos = kin.position[traj][:, :, centres].transpose(0, 2, 1).reshape(-1, 3)
    ang = kin.angle[traj][:, centres].reshape(-1)
    spd = kin.speed[traj][:, centres].reshape(-1)
    mov = kin.moving[traj][:, centres].reshape(-1)
    return pos, ang, spd, mov


def _blocks(idx: np.ndarray, points_per_traj: int, d: int, budget: int = 1 << 20):
    """Split trajectory indices into blocks of about ``budget`` values (a few MB: cache-friendly)."""
    per = max(1, budget // max(1, points_per_traj * d))
    for s in range(0, idx.size, per):
        yield idx[s : s + per]


def decode_layer(
    act: np.ndarray,
    centres: np.ndarray,
    kin: Kinematics,
    test_mask: np.ndarray,
    alpha: float = 1.0,
) -> dict[str, Any]:
    """Fit ridge decoders on the train trajectories of one layer; metrics on the test trajectories.

    Parameters
    ----------
    act : (n, rows, frames, channels)
        Activations of one layer.
    centres : (frames,) int
        Input frame at the receptive-field centre of every output frame.
    kin : Kinematics of the same n trajectories (T input frames).
    test_mask : (n,) bool from :func:`trajectory_split`.

    Returns the metrics of :data:`DECODING_METRICS` plus the point counts ``n_train_points`` and
    ``n_test_points`` (position), and ``weights``: dict of the fitted (W, b) per target group.

    The block products are small (thousands of points x at most a few hundred features), where BLAS
    threads cost more than they bring (5x on a busy 2-core machine): they run on one thread.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _decode_layer(act, centres, kin, test_mask, alpha)


@dataclass
class _Decoders:
    """The ridge decoders of one layer, fitted on features shifted by ``shift`` (a feature mean)."""

    W_pos: np.ndarray
    b_pos: np.ndarray
    W_mov: np.ndarray | None  # cos, sin, speed; None with fewer than 2 moving training points
    b_mov: np.ndarray | None
    shift: np.ndarray
    n_train: int


def _fit_decoders(
    act: np.ndarray, centres: np.ndarray, kin: Kinematics, train: np.ndarray, T: int, d: int, alpha: float
) -> _Decoders:
    """Position from every training point; direction (cos, sin) and speed from the moving ones."""
    # columns: x, y, z | cos, sin, speed; moving and still points kept apart, summed for position
    mov_stats = RidgeStats(d, 6)
    still_stats = RidgeStats(d, 6)
    shift = None  # a reference feature mean (first block), subtracted from every point
    for blk in _blocks(train, T, d):
        if shift is None:
            shift = _block_points(act, blk, None).mean(axis=0, dtype=np.float64)
        X = _block_points(act, blk, shift)
        pos, ang, spd, mov = _block_targets(kin, blk, centres)
        Y = np.zeros((X.shape[0], 6))
        Y[:, :3] = pos
        Y[mov, 3] = np.cos(ang[mov])
        Y[mov, 4] = np.sin(ang[mov])
        Y[mov, 5] = spd[mov]
        mov_stats.add(X[mov], Y[mov])
        still_stats.add(X[~mov], Y[~mov])
    if shift is None:
        raise DeepDrawError("decoding: no training trajectories; expected some outside the test split")
    all_stats = RidgeStats(d, 6)
    all_stats += mov_stats
    all_stats += still_stats
    W_pos, b_pos = all_stats.solve(alpha, slice(0, 3))
    W_mov, b_mov = mov_stats.solve(alpha, slice(3, 6)) if mov_stats.n >= 2 else (None, None)
    return _Decoders(W_pos, b_pos, W_mov, b_mov, shift, int(all_stats.n))


def _score_decoders(
    act: np.ndarray, centres: np.ndarray, kin: Kinematics, test: np.ndarray, T: int, d: int, fit: _Decoders
) -> dict[str, Any]:
    """Test errors and R² of the decoders on the test points (streamed in blocks)."""
    sse_pos = 0.0
    eucl = 0.0
    n_pos = 0
    ys_pos = np.zeros(3)
    yy_pos = 0.0
    ang_err = 0.0
    sse_spd = 0.0
    ys_spd = 0.0
    yy_spd = 0.0
    n_mov = 0
    for blk in _blocks(test, T, d):
        X = _block_points(act, blk, fit.shift)
        pos, ang, spd, mov = _block_targets(kin, blk, centres)
        res = X @ fit.W_pos + fit.b_pos - pos
        sse_pos += float(np.sum(res**2))
        eucl += float(np.sum(np.linalg.norm(res, axis=1)))
        n_pos += X.shape[0]
        ys_pos += pos.sum(axis=0)
        yy_pos += float(np.sum(pos**2))
        if fit.W_mov is not None and mov.any():
            P = X[mov] @ fit.W_mov + fit.b_mov
            err = np.angle(np.exp(1j * (np.arctan2(P[:, 1], P[:, 0]) - ang[mov])))
            ang_err += float(np.sum(np.abs(err)))
            sse_spd += float(np.sum((P[:, 2] - spd[mov]) ** 2))
            ys_spd += float(np.sum(spd[mov]))
            yy_spd += float(np.sum(spd[mov] ** 2))
            n_mov += int(mov.sum())
    sst_pos = yy_pos - float(np.sum(ys_pos**2)) / max(n_pos, 1)
    out: dict[str, Any] = {
        "position_error_cm": eucl / n_pos if n_pos else float("nan"),
        "position_r2": 1.0 - sse_pos / sst_pos if sst_pos > 0 else float("nan"),
        "direction_error_deg": float(np.degrees(ang_err / n_mov)) if n_mov else float("nan"),
        "speed_rmse": float(np.sqrt(sse_spd / n_mov)) if n_mov else float("nan"),
        "speed_r2": float("nan"),
        "n_train_points": fit.n_train,
        "n_test_points": int(n_pos),
    }
    if n_mov:
        sst_spd = yy_spd - ys_spd**2 / n_mov
        out["speed_r2"] = 1.0 - sse_spd / sst_spd if sst_spd > 0 else float("nan")
    return out


def _decode_layer(
    act: np.ndarray, centres: np.ndarray, kin: Kinematics, test_mask: np.ndarray, alpha: float
) -> dict[str, Any]:
    if act.ndim != 4:
        raise DeepDrawError(
            f"decoding: activations of shape {act.shape}; expected (n, rows, frames, channels)"
        )
    n, rows, T, ch = act.shape
    centres = np.asarray(centres, dtype=np.int64)
    if centres.shape != (T,):
        raise DeepDrawError(
            f"decoding: {centres.size} centre frames for {T} output frames; expected one per frame"
        )
    d = rows * ch
    train = np.flatnonzero(~np.asarray(test_mask))
    test = np.flatnonzero(test_mask)
    fit = _fit_decoders(act, centres, kin, train, T, d, alpha)
    out = _score_decoders(act, centres, kin, test, T, d, fit)
    # weights on the raw (unshifted) features
    out["weights"] = {
        "position": (fit.W_pos, fit.b_pos - fit.shift @ fit.W_pos),
        "movement": (fit.W_mov, None if fit.W_mov is None else fit.b_mov - fit.shift @ fit.W_mov),
    }
    return out
