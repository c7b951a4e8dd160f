"""The 4-DoF arm of DeepDraw: forward kinematics, inverse kinematics and joint jerk (original: dataset/pcr_data_utils.py, Arm).

Joint angles ``q = (a, b, c, d)`` are in degrees: elevation plane ``a`` (elv_angle), shoulder elevation
``b`` (shoulder_elv), shoulder rotation ``c`` (shoulder_rot) and elbow flexion ``d`` (elbow_flexion).
Lengths are in cm: upper arm 33, forearm 26. Positions live in the shoulder frame {S} or in the world
frame {W} (origin at the shoulder, X forward, Y left/right, Z up/down), with ``s = Mᵀ w``.

Forward kinematics, as the original ``pcr_data_utils.Arm``::

    R_sh  = Ry(a) · Rz(b) · Ry(-a) · Ry(c)
    elbow = R_sh · (0, -33, 0)
    hand  = R_sh · (Rx(d) · (0, -26, 0) + (0, -33, 0))

Two IK engines solve the same problem, frame after frame along a trajectory: the posture nearest
(Euclidean norm in degrees) to the previous frame's posture whose hand is on the target, within the
joint limits.

* :func:`ik_reference` is the original method: one ``scipy.optimize.fmin_slsqp`` call per frame,
  always started from ``x0 = (10, 10, 10, 10)``, with the equality constraint ``‖FK(q) - target‖ = 0``.
  It is slow (30-50 frames per second) and, because that constraint has no gradient where it holds,
  it often stops on the constraint short of the nearest posture (about 1 frame in 10 on letter-like
  paths, see ``tests/test_arm.py``). Kept as the reference; ``method="smooth"`` is a well-posed SLSQP
  variant of the same objective, used to check the batched engine.
* :func:`ik_batch` solves thousands of trajectories at once. Elbow flexion follows from the
  shoulder-hand distance, ``|hand|² = 33² + 26² + 2·33·26·cos d``; the remaining freedom is one angle
  ``φ``, the rotation of the whole arm about the shoulder-hand axis (the swivel). Every rotation
  that puts the hand on the target is ``R(φ) = Rot(u, φ) · R0`` (``u`` the unit shoulder-hand
  direction, ``R0`` any one such rotation), so each entry of ``R(φ)`` is ``A + B cos φ + C sin φ``.
  Since ``R_sh = Ry(a) · Rz(b) · Ry(c - a)`` is a Y-Z-Y Euler decomposition, the joints follow in
  closed form::

      a = atan2(R21, -R01),   b = arccos(R11),   c = atan2(R02 - R20, R00 + R22)

  (the last one is smooth through ``b = 0``, where ``a`` is free and ``c`` alone sets the posture).
  The joint limits span less than 360° inside (-180°, 180°], so there is no wrap-around: an angle is
  feasible exactly when its principal value is within the limits. The feasible set in ``φ`` is a union
  of arcs whose ends are roots of sinusoid equations (``a`` or ``c`` at a limit), found in closed form;
  so are the points where ``a``, ``b`` or ``c`` equals the previous posture's value (these find the
  narrow stretch near ``b = 0`` where ``a`` sweeps quickly). These roots and a uniform grid are the
  candidates; the best feasible one is refined by safeguarded Newton steps on the squared joint
  distance (analytic first and second derivatives in φ), all vectorised over the trajectories. A
  target with no feasible swivel (or out of the 25.7-59 cm distance range) is unreachable: the posture
  whose hand is nearest the target is found by projected Levenberg-Marquardt within the limits and its
  (positive) error returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from ..contracts import Q_MAX, Q_MIN
from ..errors import DeepDrawError

log = logging.getLogger(__name__)

UPPER_ARM_CM = 33.0
"""Length of the upper arm (humerus), cm."""
FOREARM_CM = 26.0
"""Length of the forearm (radius), cm."""
Q_START = (50.0, 40.0, 20.0, 75.0)
"""Posture before the first frame of every trajectory (the original ``Arm.q0``), degrees."""
Q_X0 = (10.0, 10.0, 10.0, 10.0)
"""Initial guess of every SLSQP call of the original (``Arm.q``, never updated), degrees."""
SHOULDER_TO_WORLD = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""M with ``w = M s`` (shoulder frame {S} to world frame {W})."""
REACH_TOL_CM = 1e-2
"""A point is reachable when its IK error is below this (the original start-point search), cm."""

_L1 = UPPER_ARM_CM
_L2 = FOREARM_CM
_COS_D_MAX = np.cos(np.deg2rad(Q_MAX[3]))  # cos of the largest elbow flexion
_R_MIN = float(np.sqrt(_L1**2 + _L2**2 + 2 * _L1 * _L2 * _COS_D_MAX))  # closest reachable distance
_R_MAX = _L1 + _L2
_FEAS_TOL_DEG = 1e-7  # slack on the joint limits when testing candidates (fp error of the roots)

__all__ = [
    "UPPER_ARM_CM",
    "FOREARM_CM",
    "Q_MIN",
    "Q_MAX",
    "Q_START",
    "Q_X0",
    "SHOULDER_TO_WORLD",
    "REACH_TOL_CM",
    "rot_x",
    "rot_y",
    "rot_z",
    "shoulder_rotation",
    "fk",
    "fk_elbow",
    "fk_world",
    "world_to_shoulder",
    "shoulder_to_world",
    "elbow_flexion_from_distance",
    "ik_reference",
    "ik_batch",
    "joints_from_swivel",
    "ik_from_swivel",
    "tracing_error",
    "joint_jerk",
    "reach_error",
    "reach_error_reference",
]


# --------------------------------------------------------------------------------------------------
# rotations, frames and forward kinematics
# --------------------------------------------------------------------------------------------------
def _rot(angle_deg: np.ndarray | float, axis: int) -> np.ndarray:
    t = np.deg2rad(np.asarray(angle_deg, dtype=float))
    c, s = np.cos(t), np.sin(t)
    out = np.zeros(t.shape + (3, 3))
    i, j = [k for k in range(3) if k != axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    # right-handed rotation about `axis`: for y the cyclic order is (z, x), hence the sign flip
    sgn = -1.0 if axis == 1 else 1.0
    out[..., i, j] = -s * sgn
    out[..., j, i] = s * sgn
    return out


def rot_x(angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation about x; ``angle_deg`` (...) degrees -> (..., 3, 3)."""
    return _rot(angle_deg, 0)


def rot_y(angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation about y; ``angle_deg`` (...) degrees -> (..., 3, 3)."""
    return _rot(angle_deg, 1)


def rot_z(angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation about z; ``angle_deg`` (...) degrees -> (..., 3, 3)."""
    return _rot(angle_deg, 2)


def shoulder_rotation(q: np.ndarray) -> np.ndarray:
    """``R_sh = Ry(a)·Rz(b)·Ry(-a)·Ry(c)``; ``q`` (..., >=3) degrees -> (..., 3, 3)."""
    q = np.asarray(q, dtype=float)
    a, b, c = q[..., 0], q[..., 1], q[..., 2]
    return rot_y(a) @ rot_z(b) @ rot_y(-a) @ rot_y(c)


def _as_q(q: np.ndarray | Sequence[float]) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if q.ndim == 0 or q.shape[-1] != 4:
        raise DeepDrawError(f"joint angles: expected shape (..., 4) in degrees, got {q.shape}")
    return q


def _chain(q: np.ndarray, forearm: float) -> np.ndarray:
    """R_sh · (0, -33 - f cos d, -f sin d) in closed form (``f`` = forearm length or 0)."""
    a, b, c, d = (np.deg2rad(q[..., k]) for k in range(4))
    vy = -_L1 - forearm * np.cos(d)
    vz = -forearm * np.sin(d)
    g = c - a  # R_sh = Ry(a) Rz(b) Ry(c - a)
    x1 = vz * np.sin(g)
    z1 = vz * np.cos(g)
    cb, sb = np.cos(b), np.sin(b)
    x2 = cb * x1 - sb * vy
    y2 = sb * x1 + cb * vy
    ca, sa = np.cos(a), np.sin(a)
    return np.stack([ca * x2 + sa * z1, y2, -sa * x2 + ca * z1], axis=-1)


def fk(q: np.ndarray | Sequence[float]) -> np.ndarray:
    """Hand position in the shoulder frame {S}.

    q: (..., 4) joint angles (a, b, c, d), degrees. Returns (..., 3), cm.
    """
    return _chain(_as_q(q), _L2)


def fk_elbow(q: np.ndarray | Sequence[float]) -> np.ndarray:
    """Elbow position in the shoulder frame {S}; q (..., 4) degrees -> (..., 3) cm."""
    return _chain(_as_q(q), 0.0)


def world_to_shoulder(w: np.ndarray) -> np.ndarray:
    """{W} -> {S}: ``s = Mᵀ w``; w (..., 3) cm -> (..., 3) cm."""
    return np.asarray(w, dtype=float) @ SHOULDER_TO_WORLD


def shoulder_to_world(s: np.ndarray) -> np.ndarray:
    """{S} -> {W}: ``w = M s``; s (..., 3) cm -> (..., 3) cm."""
    return np.asarray(s, dtype=float) @ SHOULDER_TO_WORLD.T


def fk_world(q: np.ndarray | Sequence[float]) -> np.ndarray:
    """Hand position in the world frame {W}; q (..., 4) degrees -> (..., 3) cm."""
    return shoulder_to_world(fk(q))


def elbow_flexion_from_distance(r: np.ndarray) -> np.ndarray:
    """Elbow flexion d (degrees, in [0, 180]) that puts the hand at distance ``r`` (cm) from the shoulder.

    From the FK, ``|hand|² = |(0, -33 - 26 cos d, -26 sin d)|² = 33² + 26² + 2·33·26·cos d``.
    Distances outside [7, 59] cm are clamped.
    """
    cos_d = (np.asarray(r, dtype=float) ** 2 - _L1**2 - _L2**2) / (2 * _L1 * _L2)
    return np.rad2deg(np.arccos(np.clip(cos_d, -1.0, 1.0)))


# --------------------------------------------------------------------------------------------------
# reference engine: the original SLSQP, one frame at a time
# --------------------------------------------------------------------------------------------------
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
            {"type": "eq", "fun": lambda q: fk(q) - target, "jac": lambda q: _fk_jacobian(q[None])[0]},
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


def tracing_error(err: np.ndarray, axis: int = -1) -> np.ndarray:
    """The original's ``tracing_error``: the sum over frames of ‖target - FK(q)‖ (cm); NaN frames skipped."""
    return np.nansum(np.asarray(err, dtype=float), axis=axis)


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


# --------------------------------------------------------------------------------------------------
# batched engine: swivel search
# --------------------------------------------------------------------------------------------------
class _Swivel:
    """Joint angles along the swivel circle of k targets p_s (k, 3) in {S} (see the module docstring).

    ``coef`` (k, 5, 3): the sinusoids X=-R01, Y=R21, Z=R11, S=R02-R20, C=R00+R22 of the swivel angle
    φ, each ``A + B cos φ + C sin φ``; ``d`` (k,) elbow flexion (degrees) for the distance clamped to
    the reachable range; ``r`` (k,) the target distance (cm).
    """

    poles: list[np.ndarray] | None = None  # set to a list to record the pole masks of joints()

    def __init__(self, p_s: np.ndarray):
        r = np.linalg.norm(p_s, axis=-1)
        self.r = r
        self.d = elbow_flexion_from_distance(np.clip(r, _R_MIN, _R_MAX))
        dr = np.deg2rad(self.d)
        vy = -_L1 - _L2 * np.cos(dr)
        vz = -_L2 * np.sin(dr)
        rv = np.sqrt(vy**2 + vz**2)
        k = len(p_s)
        # orthonormal frame of the arm at rest (columns): (v̂, e_x, v̂ × e_x), v = (0, vy, vz)
        fa = np.zeros((k, 3, 3))
        fa[:, 1, 0] = vy / rv
        fa[:, 2, 0] = vz / rv
        fa[:, 0, 1] = 1.0
        fa[:, 1, 2] = vz / rv
        fa[:, 2, 2] = -vy / rv
        # frame of the target: (u, b1, u × b1), b1 ⟂ u built from the axis least aligned with u
        safe_r = np.where(r > 0, r, 1.0)
        u = np.where(r[:, None] > 0, p_s / safe_r[:, None], np.array([0.0, -1.0, 0.0]))
        e = np.zeros((k, 3))
        e[np.arange(k), np.argmin(np.abs(u), axis=1)] = 1.0
        b1 = np.cross(u, e)
        b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
        fb = np.stack([u, b1, np.cross(u, b1)], axis=2)
        r0 = fb @ np.swapaxes(fa, 1, 2)  # R0 · v̂ = u
        # Rot(u, φ) = u uᵀ + cos φ (I - u uᵀ) + sin φ [u]x, so R(φ) = P0 + cos φ P1 + sin φ P2
        p0 = u[:, :, None] * np.einsum("ki,kij->kj", u, r0)[:, None, :]
        p1 = r0 - p0
        p2 = np.swapaxes(np.cross(u[:, None, :], np.swapaxes(r0, 1, 2)), 1, 2)
        parts = np.stack([p0, p1, p2], axis=-1)  # (k, 3, 3, 3)
        coef = np.empty((k, 5, 3))
        coef[:, 0] = -parts[:, 0, 1]
        coef[:, 1] = parts[:, 2, 1]
        coef[:, 2] = parts[:, 1, 1]
        coef[:, 3] = parts[:, 0, 2] - parts[:, 2, 0]
        coef[:, 4] = parts[:, 0, 0] + parts[:, 2, 2]
        self.coef = coef

    def subset(self, rows: np.ndarray) -> _Swivel:
        out = _Swivel.__new__(_Swivel)
        out.coef, out.r, out.d = self.coef[rows], self.r[rows], self.d[rows]
        return out

    def joints(self, phi: np.ndarray, a_prev: np.ndarray, deriv: bool = False) -> tuple[np.ndarray, ...]:
        """(a, b, c) in radians at swivel angles ``phi`` (k, m), each (k, m).

        With ``deriv``, also their first and second derivatives with respect to φ (9 arrays). Where
        b = 0 exactly, ``a`` is free and set to ``a_prev`` (k,) radians clipped to the limits.
        """
        cp = np.cos(phi)[:, None, :]
        sp = np.sin(phi)[:, None, :]
        co = self.coef
        ca, cb, cc = co[:, :, 0, None], co[:, :, 1, None], co[:, :, 2, None]
        v = ca + cb * cp + cc * sp  # (k, 5, m)
        x, y, z, s, c = v[:, 0], v[:, 1], v[:, 2], v[:, 3], v[:, 4]
        a = np.arctan2(y, x)
        b = np.arccos(np.clip(z, -1.0, 1.0))
        cj = np.arctan2(s, c)
        rxy = x * x + y * y
        pole = rxy < 1e-24
        if self.poles is not None:
            self.poles.append(pole)
        if pole.any():
            ap = np.clip(a_prev, *_LIM_RAD[0])[:, None]
            a = np.where(pole, ap, a)
        if not deriv:
            return a, b, cj
        v1 = cc * cp - cb * sp
        v2 = ca - v
        x1, y1, z1, s1, c1 = v1[:, 0], v1[:, 1], v1[:, 2], v1[:, 3], v1[:, 4]
        x2, y2, z2, s2, c2 = v2[:, 0], v2[:, 1], v2[:, 2], v2[:, 3], v2[:, 4]

        def atan2_derivs(yy, xx, y1_, x1_, y2_, x2_, den):
            den = np.maximum(den, 1e-24)
            num = xx * y1_ - yy * x1_
            d1 = num / den
            d2 = (xx * y2_ - yy * x2_) / den - 2.0 * d1 * (xx * x1_ + yy * y1_) / den
            return d1, d2

        da, dda = atan2_derivs(y, x, y1, x1, y2, x2, rxy)
        dc, ddc = atan2_derivs(s, c, s1, c1, s2, c2, s * s + c * c)
        w = np.maximum(1.0 - z * z, 1e-24)  # b = 0 or 180°: derivatives capped, not inf
        sw = np.sqrt(w)
        db = -z1 / sw
        ddb = -(z2 * w + z * z1 * z1) / (w * sw)
        return a, b, cj, da, db, dc, dda, ddb, ddc

    def roots(self, which: int, theta: np.ndarray) -> np.ndarray:
        """Swivel angles where joint ``which`` (0: a, 1: b, 2: c) equals ``theta`` (k,) radians: (k, 2).

        Solves ``A + B cos φ + C sin φ = 0`` in closed form; without a root, returns the φ of the
        extremum (a valid point of the swivel circle all the same, so a harmless extra candidate).
        """
        co = self.coef
        if which == 0:  # Y cos θ - X sin θ = 0
            g = co[:, 1] * np.cos(theta)[:, None] - co[:, 0] * np.sin(theta)[:, None]
        elif which == 1:  # Z - cos θ = 0
            g = co[:, 2].copy()
            g[:, 0] -= np.cos(theta)
        else:  # S cos θ - C sin θ = 0
            g = co[:, 3] * np.cos(theta)[:, None] - co[:, 4] * np.sin(theta)[:, None]
        rho = np.hypot(g[:, 1], g[:, 2])
        psi = np.arctan2(g[:, 2], g[:, 1])
        w = np.arccos(np.clip(-g[:, 0] / np.where(rho > 0, rho, 1.0), -1.0, 1.0))
        return np.stack([psi + w, psi - w], axis=1)


_LIM_RAD = np.deg2rad(np.stack([Q_MIN, Q_MAX], axis=1))  # (4, 2) [lo, hi] radians
_FEAS_TOL_RAD = np.deg2rad(_FEAS_TOL_DEG)


def _objective(a: np.ndarray, b: np.ndarray, c: np.ndarray, qp: np.ndarray) -> np.ndarray:
    """Squared distance (rad²) of (a, b, c) (k, m) to the previous posture qp (k, 3) radians; inf if infeasible.

    d is fixed by the target, and b = arccos(.) is always within [0°, 180°]: only a and c can leave
    their limits.
    """
    feas = (a >= _LIM_RAD[0, 0] - _FEAS_TOL_RAD) & (a <= _LIM_RAD[0, 1] + _FEAS_TOL_RAD)
    feas &= (c >= _LIM_RAD[2, 0] - _FEAS_TOL_RAD) & (c <= _LIM_RAD[2, 1] + _FEAS_TOL_RAD)
    f = (a - qp[:, 0, None]) ** 2 + (b - qp[:, 1, None]) ** 2 + (c - qp[:, 2, None]) ** 2
    f[~feas] = np.inf
    return f


def _solve_frame(
    p_s: np.ndarray, q_prev: np.ndarray, n_grid: int = 32, n_newton: int = 12, return_swivel: bool = False
) -> tuple[np.ndarray, ...]:
    """Nearest feasible posture (k, 4) to ``q_prev`` (k, 4, degrees) with the hand on ``p_s`` (k, 3, {S} cm).

    Candidates: ``n_grid`` uniform swivel angles, and the closed-form swivel angles where a, b or c
    equals its previous value or a or c is at a limit. The best feasible candidate is refined by
    safeguarded Newton steps on the squared joint distance (:func:`_newton`). Rows with no feasible
    candidate are unreachable (:func:`_nearest_reachable`). Returns (q (k, 4) degrees, err (k,) cm),
    and with ``return_swivel`` the swivel angle (k,) radians of each solution (NaN where unreachable).
    """
    k = len(p_s)
    sw = _Swivel(p_s)
    qp = np.deg2rad(q_prev[:, :3])
    a_prev = qp[:, 0]
    lim = _LIM_RAD
    grid = np.linspace(-np.pi, np.pi, n_grid, endpoint=False)[None, :]  # shared: cos/sin computed once
    roots = np.concatenate(
        [
            sw.roots(0, a_prev),
            sw.roots(1, qp[:, 1]),
            sw.roots(2, qp[:, 2]),
            sw.roots(0, np.full(k, lim[0, 0])),
            sw.roots(0, np.full(k, lim[0, 1])),
            sw.roots(2, np.full(k, lim[2, 0])),
            sw.roots(2, np.full(k, lim[2, 1])),
        ],
        axis=1,
    )
    abc_g = sw.joints(grid, a_prev)
    abc_r = sw.joints(roots, a_prev)
    a, b, c = (np.concatenate([u, v], axis=1) for u, v in zip(abc_g, abc_r))
    phi = np.concatenate([np.broadcast_to(grid, (k, n_grid)), roots], axis=1)
    f = _objective(a, b, c, qp)
    rows = np.arange(k)
    j = np.argmin(f, axis=1)
    f_cur = f[rows, j]
    ok = np.isfinite(f_cur)
    ph = phi[rows, j][:, None]
    a, b, c = a[rows, j], b[rows, j], c[rows, j]  # copies
    swivel = ph[:, 0].copy()
    if n_newton > 0 and ok.any():
        out = (a, b, c, swivel)
        _newton(sw, np.flatnonzero(ok), ph, f_cur, qp, a_prev, 2 * np.pi / n_grid, n_newton, out)
    q = np.empty((k, 4))
    q[:, 0], q[:, 1], q[:, 2] = np.rad2deg(a), np.rad2deg(b), np.rad2deg(c)
    q[:, 3] = sw.d
    np.clip(q, Q_MIN, Q_MAX, out=q)
    bad = ~ok | (sw.r < _R_MIN) | (sw.r > _R_MAX)
    if bad.any():
        idx = np.flatnonzero(bad)
        q[idx] = _nearest_reachable(p_s[idx], sw.subset(idx), phi[idx], a_prev[idx])
        swivel[idx] = np.nan
    err = np.linalg.norm(fk(q) - p_s, axis=-1)
    if return_swivel:
        return q, err, swivel
    return q, err


def _newton(
    sw: _Swivel,
    idx: np.ndarray,
    ph: np.ndarray,
    f_cur: np.ndarray,
    qp: np.ndarray,
    a_prev: np.ndarray,
    h0: float,
    n_iter: int,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Safeguarded Newton on the squared joint distance along the swivel, for the rows ``idx``.

    ``ph`` (k, 1) start angles, ``f_cur`` (k,) their distances; a step (clipped to the trust radius,
    first ``h0``) is kept only if it lowers the distance and stays feasible; the radius doubles after
    a full accepted step and shrinks to a quarter of a rejected one. A row stops once its step is
    below 1e-11 rad, or when it sits on a joint limit and the step leaves the feasible set. The
    resulting (a, b, c) (radians) and swivel angles are written into ``out`` at the rows ``idx``.
    """
    sub = sw.subset(idx)
    qps, aps, ph = qp[idx], a_prev[idx], ph[idx]
    fc = f_cur[idx, None]
    h = np.full((idx.size, 1), h0)
    cur = sub.joints(ph, aps, deriv=True)
    lim = _LIM_RAD
    for it in range(n_iter):
        a, b, c, da, db, dc, dda, ddb, ddc = cur
        ra, rb, rc = a - qps[:, 0, None], b - qps[:, 1, None], c - qps[:, 2, None]
        g = ra * da + rb * db + rc * dc
        hess = da * da + db * db + dc * dc + ra * dda + rb * ddb + rc * ddc
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(hess > 0, -g / hess, -np.sign(g) * h)
        step = np.clip(np.nan_to_num(step), -h, h)
        new = sub.joints(ph + step, aps, deriv=True)
        fn = _objective(new[0], new[1], new[2], qps)
        acc = fn < fc
        ph = np.where(acc, ph + step, ph)
        fc = np.where(acc, fn, fc)
        cur = tuple(np.where(acc, nv, cv) for nv, cv in zip(new, cur))
        h = np.where(acc, np.where(np.abs(step) >= 0.99 * h, 2.0 * h, h), 0.25 * np.abs(step))
        at_lim = (np.abs(cur[0] - lim[0, 0]) < 1e-9) | (np.abs(cur[0] - lim[0, 1]) < 1e-9)
        at_lim |= (np.abs(cur[2] - lim[2, 0]) < 1e-9) | (np.abs(cur[2] - lim[2, 1]) < 1e-9)
        done = ((np.abs(step) < 1e-11) | (~acc & np.isinf(fn) & at_lim))[:, 0]
        if it == n_iter - 1:
            done[:] = True
        if done.any():
            rows = idx[done]
            out[0][rows], out[1][rows], out[2][rows] = cur[0][done, 0], cur[1][done, 0], cur[2][done, 0]
            out[3][rows] = ph[done, 0]
            keep = ~done
            if not keep.any():
                return
            idx, sub, qps, aps = idx[keep], sub.subset(keep), qps[keep], aps[keep]
            ph, fc, h = ph[keep], fc[keep], h[keep]
            cur = tuple(v[keep] for v in cur)


def _fk_jacobian(q: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d hand / d q, (k, 3, 4) in cm/degree, by central differences."""
    steps = np.eye(4) * h
    qq = np.concatenate([q[:, None, :] + steps[None], q[:, None, :] - steps[None]], axis=1)
    x = fk(qq)  # (k, 8, 3)
    return np.swapaxes((x[:, :4] - x[:, 4:]) / (2 * h), 1, 2)


def _nearest_reachable(
    p_s: np.ndarray, sw: _Swivel, phi: np.ndarray, a_prev: np.ndarray, n_iter: int = 60
) -> np.ndarray:
    """Posture within the limits whose hand is nearest ``p_s`` (k, 3), for unreachable targets.

    Start: the best of the swivel candidates ``phi`` (k, m) (distance clamped to [r_min, 59] cm,
    angles clipped to the limits); then projected Levenberg-Marquardt on ‖FK(q) - p‖² inside the box.
    """
    k = len(p_s)
    a, b, c = sw.joints(phi, a_prev)
    qc = np.stack([a, b, c, np.broadcast_to(np.deg2rad(sw.d)[:, None], a.shape)], axis=-1)
    qc = np.clip(np.nan_to_num(np.rad2deg(qc)), Q_MIN, Q_MAX)
    e = np.linalg.norm(fk(qc) - p_s[:, None, :], axis=-1)
    q = qc[np.arange(k), np.argmin(e, axis=1)]
    res = fk(q) - p_s
    cost = np.sum(res**2, axis=1)
    lam = np.full(k, 1e-3)
    eye = np.eye(4)
    for _ in range(n_iter):
        jac = _fk_jacobian(q)
        grad = np.einsum("kij,ki->kj", jac, res)
        # a joint at a limit whose gradient pushes outwards stays there
        free = ~(((q <= Q_MIN + 1e-12) & (grad > 0)) | ((q >= Q_MAX - 1e-12) & (grad < 0)))
        jf = jac * free[:, None, :]
        hess = np.einsum("kij,kil->kjl", jf, jf)
        hess = (
            hess + lam[:, None, None] * (eye * (1.0 + np.einsum("kjj->kj", hess)[:, :, None])) + 1e-12 * eye
        )
        step = -np.linalg.solve(hess, (grad * free)[..., None])[..., 0]
        q_new = np.clip(q + step, Q_MIN, Q_MAX)
        res_new = fk(q_new) - p_s
        cost_new = np.sum(res_new**2, axis=1)
        acc = cost_new < cost
        q[acc], res[acc], cost[acc] = q_new[acc], res_new[acc], cost_new[acc]
        lam = np.where(acc, lam * 0.3, lam * 10.0)
        if np.all(lam > 1e8):
            break
    return q


def _validate_targets(targets_w: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    targets_w = np.asarray(targets_w, dtype=float)
    if targets_w.ndim != 3 or targets_w.shape[2] != 3:
        raise DeepDrawError(f"targets_w: expected shape (n, T, 3) in cm, got {targets_w.shape}")
    n, t_max, _ = targets_w.shape
    finite = np.all(np.isfinite(targets_w), axis=2)
    if lengths is None:
        lengths = np.where(finite.any(axis=1), t_max - np.argmax(finite[:, ::-1], axis=1), 0)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
            raise DeepDrawError(f"lengths: expected ({n},) integers, got {lengths.shape} {lengths.dtype}")
        if np.any((lengths < 0) | (lengths > t_max)):
            raise DeepDrawError(f"lengths: expected values in [0, {t_max}]")
    valid = np.arange(t_max)[None, :] < lengths[:, None]
    if np.any(valid & ~finite):
        i = int(np.argmax(np.any(valid & ~finite, axis=1)))
        raise DeepDrawError(
            f"targets_w: trajectory {i} has NaN/inf within its first {int(lengths[i])} frames "
            "(expected NaN only as padding after the end)"
        )
    return targets_w, lengths.astype(np.int64)


def ik_batch(
    targets_w: np.ndarray,
    lengths: np.ndarray | None = None,
    q0: Sequence[float] | np.ndarray = Q_START,
    *,
    n_grid: int = 32,
    n_newton: int = 12,
    progress: bool = False,
    return_swivel: bool = False,
) -> tuple[np.ndarray, ...]:
    """Batched IK: at each frame, the feasible posture nearest the previous one that reaches the target.

    Same objective as :func:`ik_reference` (``min ‖q - q_prev‖`` s.t. ``FK(q) = target`` and the joint
    limits; ``q_prev = q0`` before the first frame), solved exactly up to ~1e-9 rad in the swivel for
    all trajectories at once (see the module docstring).

    targets_w: (n, T, 3) hand targets in {W}, cm; NaN after the end of a trajectory.
    lengths: (n,) int valid frames per trajectory; None: up to the last finite frame.
    q0: (4,) or (n, 4) posture before the first frame, degrees.
    n_grid, n_newton: swivel candidates on a uniform grid, and Newton refinement steps.
    Returns joints (n, T, 4) degrees and err (n, T) = ‖target - FK(q)‖ cm, both NaN beyond
    ``lengths``. Unreachable targets get the posture whose hand is nearest the target (within the
    limits) and a positive error; the next frame starts from that posture.
    ``return_swivel``: also return the swivel angle (n, T) radians of every frame's solution (NaN for
    unreachable targets and beyond ``lengths``): :func:`joints_from_swivel` rebuilds the same joints
    from it, bit for bit, without the search (the dataset's assembly re-uses it).
    """
    targets_w, lengths = _validate_targets(targets_w, lengths)
    n, t_max, _ = targets_w.shape
    q0 = np.asarray(q0, dtype=float)
    if q0.shape not in ((4,), (n, 4)):
        raise DeepDrawError(f"q0: expected shape (4,) or ({n}, 4) in degrees, got {q0.shape}")
    joints = np.full((n, t_max, 4), np.nan)
    err = np.full((n, t_max), np.nan)
    swivel = np.full((n, t_max), np.nan)
    if n == 0 or lengths.max(initial=0) == 0:
        return (joints, err, swivel) if return_swivel else (joints, err)
    order = np.argsort(-lengths, kind="stable")  # the trajectories still running form a prefix
    len_sorted = lengths[order]
    t_run = int(len_sorted[0])
    p_s = world_to_shoulder(targets_w[order, :t_run])
    q_prev = np.broadcast_to(q0, (n, 4))[order].copy()
    q_out = np.full((n, t_run, 4), np.nan)
    e_out = np.full((n, t_run), np.nan)
    s_out = np.full((n, t_run), np.nan)
    steps = range(t_run)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="ik_batch frames", leave=False)
    for t in steps:
        k = int(np.count_nonzero(len_sorted > t))  # padding frames cost nothing
        q, e, sv = _solve_frame(p_s[:k, t], q_prev[:k], n_grid, n_newton, return_swivel=True)
        q_out[:k, t] = q
        e_out[:k, t] = e
        s_out[:k, t] = sv
        q_prev[:k] = q
    joints[order, :t_run] = q_out
    err[order, :t_run] = e_out
    if not return_swivel:
        return joints, err
    swivel[order, :t_run] = s_out
    return joints, err, swivel


def joints_from_swivel(
    targets_w: np.ndarray,
    swivel: np.ndarray,
    lengths: np.ndarray | None = None,
    q0: Sequence[float] | np.ndarray = Q_START,
) -> tuple[np.ndarray, np.ndarray]:
    """The joints of :func:`ik_batch` (``return_swivel=True``) from its swivel angles, without the search.

    targets_w (n, T, 3) cm as given to :func:`ik_batch`; swivel (n, T) radians, finite on every valid
    frame (a trajectory with an unreachable frame, NaN there, must be solved again with
    :func:`ik_batch`). Each frame's joints follow in closed form from its target and swivel angle
    (:class:`_Swivel`, all frames at once), with the same operations as the search's last step, so the
    result is bit for bit :func:`ik_batch`'s. Only a frame exactly at the pole ``b = 0`` depends on the
    previous posture (``a`` is free there and keeps the previous value); those few frames are settled in
    time order. Returns joints (n, T, 4) degrees and err (n, T) cm, NaN beyond ``lengths``.
    """
    targets_w, lengths = _validate_targets(targets_w, lengths)
    n, t_max, _ = targets_w.shape
    swivel = np.asarray(swivel, dtype=np.float64)
    if swivel.shape != (n, t_max):
        raise DeepDrawError(f"swivel: expected shape ({n}, {t_max}) in radians, got {swivel.shape}")
    q0 = np.broadcast_to(np.asarray(q0, dtype=float), (n, 4))
    valid = np.arange(t_max)[None, :] < lengths[:, None]
    if not np.all(np.isfinite(swivel[valid])):
        i = int(np.argmax((valid & ~np.isfinite(swivel)).any(axis=1)))
        raise DeepDrawError(
            f"swivel: trajectory {i} has NaN within its first {int(lengths[i])} frames (an unreachable "
            "target); expected finite angles (solve it with ik_batch)"
        )
    joints = np.full((n, t_max, 4), np.nan)
    err = np.full((n, t_max), np.nan)
    if not valid.any():
        return joints, err
    rows, frames = np.nonzero(valid)  # row-major: each trajectory's frames in time order
    p_s = world_to_shoulder(targets_w[rows, frames])
    sw = _Swivel(p_s)
    sw.poles = []
    ph = swivel[rows, frames][:, None]
    a, b, c = sw.joints(ph, np.zeros(len(rows)))
    pole = sw.poles[0][:, 0]
    a, b, c = a[:, 0], b[:, 0], c[:, 0]
    q = np.empty((len(rows), 4))
    q[:, 0], q[:, 1], q[:, 2] = np.rad2deg(a), np.rad2deg(b), np.rad2deg(c)
    q[:, 3] = sw.d
    np.clip(q, Q_MIN, Q_MAX, out=q)
    for k in np.flatnonzero(pole):  # a = the previous frame's a (radians, clipped to its limits)
        a_prev = np.deg2rad(q[k - 1, 0] if frames[k] > 0 else q0[rows[k], 0])
        q[k, 0] = min(max(np.rad2deg(min(max(a_prev, _LIM_RAD[0, 0]), _LIM_RAD[0, 1])), Q_MIN[0]), Q_MAX[0])
    joints[rows, frames] = q
    err[rows, frames] = np.linalg.norm(fk(q) - p_s, axis=-1)
    return joints, err


def ik_from_swivel(
    targets_w: np.ndarray, swivel: np.ndarray, lengths: np.ndarray | None = None
) -> np.ndarray:
    """Joints (n, T, 4) degrees of :func:`ik_batch` for ``targets_w`` (n, T, 3) cm: rebuilt from the
    swivel angles (n, T) (:func:`joints_from_swivel`) where a trajectory has them on every valid frame,
    solved with :func:`ik_batch` for the others (NaN rows: no stored angles, or an unreachable frame).
    Bit for bit :func:`ik_batch`'s joints either way."""
    targets_w, lengths = _validate_targets(targets_w, lengths)
    swivel = np.asarray(swivel, dtype=np.float64)
    valid = np.arange(targets_w.shape[1])[None, :] < lengths[:, None]
    known = ~np.any(valid & ~np.isfinite(swivel), axis=1)
    joints = np.full(targets_w.shape[:2] + (4,), np.nan)
    for rows, rebuild in ((np.flatnonzero(known), True), (np.flatnonzero(~known), False)):
        if len(rows) == 0:
            continue
        t = int(lengths[rows].max())
        tg, ln = targets_w[rows, :t], lengths[rows]
        q = joints_from_swivel(tg, swivel[rows, :t], ln)[0] if rebuild else ik_batch(tg, ln)[0]
        joints[rows, :t] = q
    return joints


def reach_error(points_w: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Single-point reach error: distance (cm) from each point to the arm's workspace (within limits).

    points_w: (m, 3) cm in {W}. Returns (m,) cm: ~1e-13 for reachable points, the distance from the
    target to the nearest reachable hand position otherwise. A point is reachable (as in the original
    start-point search) when this is below :data:`REACH_TOL_CM`. Vectorised; the exact feasibility
    test uses the closed-form ends of the feasible swivel arcs, so no reachable point is missed.
    """
    pts = np.asarray(points_w, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DeepDrawError(f"points_w: expected shape (m, 3) in cm, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise DeepDrawError("points_w: expected finite coordinates (cm), got NaN/inf")
    out = np.empty(len(pts))
    q_ref = np.asarray(Q_START, dtype=float)
    for s in range(0, len(pts), chunk):
        p_s = world_to_shoulder(pts[s : s + chunk])
        k = len(p_s)
        q_prev = np.broadcast_to(q_ref, (k, 4))
        _, e = _solve_frame(p_s, q_prev, n_grid=16, n_newton=0)
        out[s : s + chunk] = e
    return out


def third_difference(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.gradient`` with unit spacing applied three times along ``axis`` (at least 2 points), bit for
    bit: central differences ``(x[t+1] - x[t-1]) / 2`` inside, one-sided ``x[1] - x[0]`` and
    ``x[-1] - x[-2]`` at the ends. A few array operations, without ``np.gradient``'s per-call set-up
    (the muscle-jerk screening calls it once per block of OpenSim frames)."""
    x = np.asarray(x, dtype=float)
    if axis != 0:
        x = np.moveaxis(x, axis, 0)
    if x.shape[0] < 2:
        raise DeepDrawError(
            f"third_difference: expected at least 2 points along axis {axis}, got {x.shape[0]}"
        )
    for _ in range(3):
        out = np.empty_like(x)
        np.subtract(x[2:], x[:-2], out=out[1:-1])
        out[1:-1] /= 2.0
        np.subtract(x[1], x[0], out=out[0])
        np.subtract(x[-1], x[-2], out=out[-1])
        x = out
    return x if axis == 0 else np.moveaxis(x, 0, axis)


def joint_jerk(
    q: np.ndarray, lengths: np.ndarray | None = None, omit_nan: bool = False
) -> float | np.ndarray:
    """Joint jerk as the original ``compute_jerk``: ``‖∇³q‖_F`` over a trajectory's valid frames.

    ``∇`` is ``np.gradient`` along time with unit spacing (per frame), applied three times; the
    original's (4, T) layout gives the same number as our (T, 4).
    q: (T, k) or (n, T, k), usually k = 4 joints in degrees (any k works, e.g. 25 muscle lengths in
    mm, the original ``muscle_jerk``); lengths: (n,) valid frames (None: up to the last finite frame).
    Returns a float for a (T, k) input, else (n,) (units of q per frame³). Fewer than 2 frames: NaN.
    ``omit_nan``: sum only the finite terms (a NaN entry spoils the third differences that use it,
    which are left out). With NaN for unknown entries this is a lower bound of the jerk the complete
    array would give, equal to it when nothing is unknown (the muscle-jerk screening of the dataset).
    """
    q = np.asarray(q, dtype=float)
    single = q.ndim == 2
    if single:
        q = q[None]
    if q.ndim != 3:
        raise DeepDrawError(f"q: expected shape (T, 4) or (n, T, 4), got {q.shape}")
    n, t_max, _ = q.shape
    if lengths is None:
        finite = np.all(np.isfinite(q), axis=2)
        lengths = np.where(finite.any(axis=1), t_max - np.argmax(finite[:, ::-1], axis=1), 0)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full(n, np.nan)
    for length in np.unique(lengths):
        if length < 2:
            continue
        rows = np.flatnonzero(lengths == length)
        x = third_difference(q[rows, :length], axis=1)
        out[rows] = np.sqrt((np.nansum if omit_nan else np.sum)(x**2, axis=(1, 2)))
    return float(out[0]) if single else out
