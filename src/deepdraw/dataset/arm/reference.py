"""The reference IK engine: the original's SLSQP, one frame at a time (original: ``Arm.inv_kin``,
``make_joint_config`` and the start-point search's ``isreachable_point``).

:func:`ik_reference` is the original method: one ``scipy.optimize.fmin_slsqp`` call per frame,
always started from ``x0 = (10, 10, 10, 10)``, with the equality constraint ``‖FK(q) - target‖ = 0``.
It is slow (30-50 frames per second) and, because that constraint has no gradient where it holds,
it often stops on the constraint short of the nearest posture (about 1 frame in 10 on letter-like
paths, see ``tests/test_arm.py``). Kept as the reference; ``method="smooth"`` is a well-posed SLSQP
variant of the same objective, used to check the batched engine (:mod:`.batch`).
:func:`reach_error_reference` is the original's single-point reach test with the same solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import DeepDrawError
from .geometry import (
    FOREARM_CM,
    Q_MAX,
    Q_MIN,
    Q_START,
    Q_X0,
    UPPER_ARM_CM,
    fk,
    fk_jacobian,
    rot_x,
    rot_y,
    rot_z,
    world_to_shoulder,
)

__all__ = ["ik_reference", "reach_error_reference"]

_L1 = UPPER_ARM_CM
_L2 = FOREARM_CM


def _fk_matrix(q: np.ndarray) -> np.ndarray:
    """FK with explicit 3x3 matrices, in the original's order of operations (used by SLSQP)."""
    a, b, c, d = q
    r_sh = rot_y(a) @ rot_z(b) @ rot_y(-a) @ rot_y(c)
    return r_sh @ (rot_x(d) @ np.array([0.0, -_L2, 0.0]) + np.array([0.0, -_L1, 0.0]))


_FD_STEP = float(np.sqrt(np.finfo(float).eps))  # the forward-difference step of fmin_slsqp
_LIMITS_JAC = np.vstack([-np.eye(4), np.eye(4)])


def _fk_scalar(q: np.ndarray) -> tuple[float, float, float]:
    """FK of one posture with scalar math (the hot loop of the reference engine)."""
    a, b, c, d = (math.radians(v) for v in q)
    vy = -_L1 - _L2 * math.cos(d)
    vz = -_L2 * math.sin(d)
    x1 = vz * math.sin(c - a)
    z1 = vz * math.cos(c - a)
    cb, sb = math.cos(b), math.sin(b)
    x2 = cb * x1 - sb * vy
    ca, sa = math.cos(a), math.sin(a)
    return ca * x2 + sa * z1, sb * x1 + cb * vy, -sa * x2 + ca * z1


def _slsqp_point(target_s: np.ndarray, q_prev: np.ndarray, x0: Sequence[float] = Q_X0) -> np.ndarray:
    """One call of the original ``Arm.inv_kin``: SLSQP from ``x0`` (the original: (10, 10, 10, 10)).

    Gradients are forward differences with step sqrt(eps), as ``fmin_slsqp`` computed them; they are
    coded here (and the FK in scalar math) only to avoid scipy's generic finite-difference overhead.
    """
    from scipy.optimize import minimize

    tx, ty, tz = (float(v) for v in target_s)
    qp = np.asarray(q_prev, dtype=float)
    h = _FD_STEP

    def obj(q):
        return math.sqrt(sum((q[i] - qp[i]) ** 2 for i in range(4)))

    def pos(q):
        x, y, z = _fk_scalar(q)
        return math.sqrt((x - tx) ** 2 + (y - ty) ** 2 + (z - tz) ** 2)

    def fd(fun, q):
        f0 = fun(q)
        g = np.empty(4)
        for i in range(4):
            qh = q.copy()
            qh[i] += h
            g[i] = (fun(qh) - f0) / h
        return g

    res = minimize(
        obj,
        np.asarray(x0, dtype=float),
        jac=lambda q: fd(obj, q),
        method="SLSQP",
        constraints=[
            {"type": "eq", "fun": lambda q: np.array([pos(q)]), "jac": lambda q: fd(pos, q)[None, :]},
            {
                "type": "ineq",
                "fun": lambda q: np.concatenate([Q_MAX - q, q - Q_MIN]),
                "jac": lambda q: _LIMITS_JAC,
            },
        ],
        options={"maxiter": 100, "ftol": 1e-6},
    )
    return res.x


def _slsqp_smooth_point(target_s: np.ndarray, q_prev: np.ndarray) -> np.ndarray:
    """A well-posed local solve of the same problem (not the original): SLSQP on ``‖q - q_prev‖²``
    with the smooth vector constraint ``FK(q) - target = 0`` (3 equations) and exact gradients,
    warm-started from ``q_prev`` clipped to the limits."""
    from scipy.optimize import minimize

    qp = np.asarray(q_prev, dtype=float)
    target = np.asarray(target_s, dtype=float)
    res = minimize(
        lambda q: float(np.sum((q - qp) ** 2)),
        np.clip(qp, Q_MIN, Q_MAX),
        jac=lambda q: 2.0 * (q - qp),
        method="SLSQP",
        constraints=[
            {"type": "eq", "fun": lambda q: fk(q) - target, "jac": lambda q: fk_jacobian(q[None])[0]},
            {
                "type": "ineq",
                "fun": lambda q: np.concatenate([Q_MAX - q, q - Q_MIN]),
                "jac": lambda q: _LIMITS_JAC,
            },
        ],
        options={"maxiter": 200, "ftol": 1e-12},
    )
    return res.x


def ik_reference(
    targets_w: np.ndarray, q0: Sequence[float] = Q_START, method: str = "original"
) -> tuple[np.ndarray, np.ndarray]:
    """The original IK (``make_joint_config``): SLSQP frame by frame.

    ``method="original"``: at each frame, ``fmin_slsqp`` minimises ``‖q - q_prev‖`` subject to
    ``‖FK(q) - target‖ = 0`` and the joint limits, started from ``x0 = (10, 10, 10, 10)``; ``q_prev``
    is ``q0`` for the first frame, then the previous solution. Because this equality constraint is not
    differentiable where it is satisfied, SLSQP often stops on the constraint short of the nearest
    posture (about 1 frame in 10 along letter-like test trajectories, with jumps of 10-60° in joint
    space; :func:`ik_batch` finds the nearest posture on every frame, see ``tests/test_arm.py``).

    ``method="smooth"`` (not the original; a check of :func:`ik_batch`): the same objective with the
    differentiable constraint ``FK(q) - target = 0``, exact gradients and SLSQP warm-started from
    ``q_prev``. It converges to the local optimum nearest the previous posture.

    targets_w: (T, 3) hand targets in {W}, cm (no NaN). q0: (4,) degrees.
    Returns joints (T, 4) in degrees and err (T,) = ‖target - FK(q)‖ in cm; the original's
    ``tracing_error`` is ``err.sum()`` (:func:`tracing_error`).
    """
    solvers = {"original": _slsqp_point, "smooth": _slsqp_smooth_point}
    if method not in solvers:
        raise DeepDrawError(f"method: expected 'original' or 'smooth', got {method!r}")
    solve = solvers[method]
    targets_w = np.asarray(targets_w, dtype=float)
    if targets_w.ndim != 2 or targets_w.shape[1] != 3:
        raise DeepDrawError(f"targets_w: expected shape (T, 3) in cm, got {targets_w.shape}")
    if not np.all(np.isfinite(targets_w)):
        raise DeepDrawError("targets_w: expected finite values (no NaN padding) for the reference IK")
    targets_s = world_to_shoulder(targets_w)
    q_prev = np.asarray(q0, dtype=float)
    joints = np.empty((len(targets_s), 4))
    err = np.empty(len(targets_s))
    for t, target in enumerate(targets_s):
        q = solve(target, q_prev)
        joints[t] = q
        err[t] = np.linalg.norm(target - _fk_matrix(q))
        q_prev = q
    return joints, err


def reach_error_reference(
    points_w: np.ndarray, q0: Sequence[float] = Q_START, x0: Sequence[float] = Q_X0
) -> np.ndarray:
    """Single-point reach error of the original start-point search (``isreachable_point``), with SLSQP.

    ``‖p - FK(q)‖`` where q is SLSQP's answer for ``min ‖q - q0‖`` s.t. ``‖FK(q) - p‖ = 0`` and the
    limits, started from ``x0``. SLSQP sometimes stops short of a reachable point (mostly stuck at
    b = 0, where a has no effect on the hand); the error is then large although the point is reachable.
    points_w: (m, 3) cm in {W}. Returns (m,) cm. Slow (about 10 ms per point).
    """
    points_s = world_to_shoulder(np.atleast_2d(np.asarray(points_w, dtype=float)))
    q_prev = np.asarray(q0, dtype=float)
    out = np.empty(len(points_s))
    for i, p in enumerate(points_s):
        q = _slsqp_point(p, q_prev, x0)
        out[i] = np.linalg.norm(p - _fk_matrix(q))
    return out
