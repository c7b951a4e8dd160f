"""The batched IK's search along the swivel: the nearest feasible posture for many targets at once.

Elbow flexion follows from the shoulder-hand distance, ``|hand|² = 33² + 26² + 2·33·26·cos d``; the
remaining freedom is one angle ``φ``, the rotation of the whole arm about the shoulder-hand axis (the
swivel). Every rotation that puts the hand on the target is ``R(φ) = Rot(u, φ) · R0`` (``u`` the unit
shoulder-hand direction, ``R0`` any one such rotation), so each entry of ``R(φ)`` is
``A + B cos φ + C sin φ`` (:class:`Swivel`). Since ``R_sh = Ry(a) · Rz(b) · Ry(c - a)`` is a Y-Z-Y
Euler decomposition, the joints follow in closed form::

    a = atan2(R21, -R01),   b = arccos(R11),   c = atan2(R02 - R20, R00 + R22)

(the last one is smooth through ``b = 0``, where ``a`` is free and ``c`` alone sets the posture).
The joint limits span less than 360° inside (-180°, 180°], so there is no wrap-around: an angle is
feasible exactly when its principal value is within the limits. The feasible set in ``φ`` is a union
of arcs whose ends are roots of sinusoid equations (``a`` or ``c`` at a limit), found in closed form;
so are the points where ``a``, ``b`` or ``c`` equals the previous posture's value (these find the
narrow stretch near ``b = 0`` where ``a`` sweeps quickly). These roots and a uniform grid are the
candidates; the best feasible one is refined by safeguarded Newton steps on the squared joint
distance (analytic first and second derivatives in φ), all vectorised over the targets
(:func:`solve_frame`). A target with no feasible swivel (or out of the 25.7-59 cm distance range) is
unreachable: the posture whose hand is nearest the target is found by projected Levenberg-Marquardt
within the limits and its (positive) error returned.
"""

from __future__ import annotations

import numpy as np

from .geometry import FOREARM_CM, Q_MAX, Q_MIN, UPPER_ARM_CM, elbow_flexion_from_distance, fk, fk_jacobian

__all__ = ["LIM_RAD", "Swivel", "solve_frame"]

_L1 = UPPER_ARM_CM
_L2 = FOREARM_CM
_COS_D_MAX = np.cos(np.deg2rad(Q_MAX[3]))  # cos of the largest elbow flexion
_R_MIN = float(np.sqrt(_L1**2 + _L2**2 + 2 * _L1 * _L2 * _COS_D_MAX))  # closest reachable distance
_R_MAX = _L1 + _L2
_FEAS_TOL_DEG = 1e-7  # slack on the joint limits when testing candidates (fp error of the roots)
_FEAS_TOL_RAD = np.deg2rad(_FEAS_TOL_DEG)
LIM_RAD = np.deg2rad(np.stack([Q_MIN, Q_MAX], axis=1))
"""The joint limits, (4, 2) [lo, hi] radians (rows a, b, c, d)."""


class Swivel:
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

    def subset(self, rows: np.ndarray) -> Swivel:
        out = Swivel.__new__(Swivel)
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
            ap = np.clip(a_prev, *LIM_RAD[0])[:, None]
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


def _objective(a: np.ndarray, b: np.ndarray, c: np.ndarray, qp: np.ndarray) -> np.ndarray:
    """Squared distance (rad²) of (a, b, c) (k, m) to the previous posture qp (k, 3) radians; inf if infeasible.

    d is fixed by the target, and b = arccos(.) is always within [0°, 180°]: only a and c can leave
    their limits.
    """
    feas = (a >= LIM_RAD[0, 0] - _FEAS_TOL_RAD) & (a <= LIM_RAD[0, 1] + _FEAS_TOL_RAD)
    feas &= (c >= LIM_RAD[2, 0] - _FEAS_TOL_RAD) & (c <= LIM_RAD[2, 1] + _FEAS_TOL_RAD)
    f = (a - qp[:, 0, None]) ** 2 + (b - qp[:, 1, None]) ** 2 + (c - qp[:, 2, None]) ** 2
    f[~feas] = np.inf
    return f


def solve_frame(
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
    sw = Swivel(p_s)
    qp = np.deg2rad(q_prev[:, :3])
    a_prev = qp[:, 0]
    lim = LIM_RAD
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
    sw: Swivel,
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
    lim = LIM_RAD
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


def _nearest_reachable(
    p_s: np.ndarray, sw: Swivel, phi: np.ndarray, a_prev: np.ndarray, n_iter: int = 60
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
        jac = fk_jacobian(q)
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
