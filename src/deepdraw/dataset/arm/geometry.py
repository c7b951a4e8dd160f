"""The arm's geometry: segment lengths, postures, rotations, the shoulder and world frames, forward kinematics.

Joint angles ``q = (a, b, c, d)`` are in degrees: elevation plane ``a`` (elv_angle), shoulder elevation
``b`` (shoulder_elv), shoulder rotation ``c`` (shoulder_rot) and elbow flexion ``d`` (elbow_flexion).
Lengths are in cm: upper arm 33, forearm 26. Positions live in the shoulder frame {S} or in the world
frame {W} (origin at the shoulder, X forward, Y left/right, Z up/down), with ``s = Mᵀ w``.

Forward kinematics, as the original ``pcr_data_utils.Arm``::

    R_sh  = Ry(a) · Rz(b) · Ry(-a) · Ry(c)
    elbow = R_sh · (0, -33, 0)
    hand  = R_sh · (Rx(d) · (0, -26, 0) + (0, -33, 0))

The joint limits :data:`Q_MIN` and :data:`Q_MAX` are defined in :mod:`deepdraw.contracts` and
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...contracts import Q_MAX, Q_MIN
from ...errors import DeepDrawError

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
    "fk_jacobian",
    "world_to_shoulder",
    "shoulder_to_world",
    "elbow_flexion_from_distance",
]

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


def fk_jacobian(q: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d hand / d q, (k, 3, 4) in cm/degree, by central differences."""
    steps = np.eye(4) * h
    qq = np.concatenate([q[:, None, :] + steps[None], q[:, None, :] - steps[None]], axis=1)
    x = fk(qq)  # (k, 8, 3)
    return np.swapaxes((x[:, :4] - x[:, 4:]) / (2 * h), 1, 2)
