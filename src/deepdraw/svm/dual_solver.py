"""Solvers of the dual box QP of the pair solver (``Q`` from :mod:`deepdraw.svm.dual`).

The dual ``min 1/2 a^T Q a - sum_i a_i, 0 <= a_i <= C`` is solved by a primal-dual active-set
(semismooth Newton) method: variables are split into those at 0, those at C and free ones, the free
ones solve one linear system, and the split is updated from the new gradient until it repeats (then
the KKT conditions hold exactly). If the split cycles (it can, on rank-deficient data), a globally
convergent fallback takes over: Newton's method on the primal with the hinge smoothed into a Huber
loss of width h, h driven from 1 to 1e-4, whose final split restarts the active-set method (Chapelle
2007, "Training a support vector machine in the primal"). :func:`solve_dual` is the entry point.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .dual import DualQ, chol_solve, dual_value, primal_value

__all__ = ["DualSolution", "solve_dual"]


# ----------------------------------------------------------------------------------------------------
# Solvers of the dual box QP
# ----------------------------------------------------------------------------------------------------


def _projected_gradient(alpha: np.ndarray, g: np.ndarray, C: float) -> np.ndarray:
    pg = g.copy()
    lo = alpha <= 0
    hi = alpha >= C
    pg[lo] = np.minimum(g[lo], 0)
    pg[hi] = np.maximum(g[hi], 0)
    return pg


def _pdas(
    op: DualQ,
    C: float,
    alpha: np.ndarray,
    partition: tuple[np.ndarray, np.ndarray] | None,
    tol: float,
    max_iter: int,
    rel_reg: float,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Primal-dual active-set (semismooth Newton) iterations on the dual box QP.

    With ``z = alpha - g / diag(Q)`` (``g = Q alpha - 1``): variables with ``z <= 0`` are fixed at 0,
    ``z >= C`` at C, the rest solve ``Q_FF a_F = 1 - C Q_FU 1`` (zero gradient). When the split
    repeats, the iterate satisfies the KKT conditions. ``partition`` = (at_upper, at_lower) masks
    replace the first split (warm start). Returns ``(alpha, Q alpha, iterations, converged)`` for the
    best feasible (clipped) iterate; converged means every projected-gradient entry <= ``tol``.
    """
    n = op.n
    diag = np.maximum(op.diag, 1e-300)
    alpha = np.clip(alpha, 0.0, C)
    q = op.matvec(alpha)
    best, q_best = alpha, q
    f_best = 0.5 * float(alpha @ q) - float(alpha.sum())
    seen: set[bytes] = set()
    prev = b""
    it = stall = 0
    for it in range(1, max_iter + 1):
        if partition is not None and it == 1:
            upper, lower = partition
        else:
            z = alpha - (q - 1.0) / diag
            upper = z >= C
            lower = z <= 0
        key = np.packbits(upper).tobytes() + np.packbits(lower).tobytes()
        if key == prev or key in seen:  # solved (stable split) or cycling
            break
        seen.add(key)
        prev = key
        F = np.flatnonzero(~(upper | lower))
        U = np.flatnonzero(upper)
        alpha = np.zeros(n)
        alpha[U] = C
        if F.size:
            rhs = 1.0 - C * op.sub_sum(F, U) if U.size else np.ones(F.size)
            alpha[F] = op.solve_free(F, rhs, rel_reg)
        q = op.matvec(alpha)
        clipped = np.clip(alpha, 0.0, C)
        if np.any(clipped != alpha):
            q_c = op.matvec(clipped)
        else:
            q_c = q
        f_c = 0.5 * float(clipped @ q_c) - float(clipped.sum())
        if f_c < f_best - 1e-15 * abs(f_best):
            f_best, best, q_best = f_c, clipped, q_c
            stall = 0
        else:
            stall += 1
            if stall >= 6:  # no progress: not converging, hand over
                break
    pg = _projected_gradient(best, q_best - 1.0, C)
    return best, q_best, it, bool(np.max(np.abs(pg)) <= tol)


def _huber_step(
    r: np.ndarray, e: np.ndarray, ud: float, dd: float, C: float, h: float
) -> tuple[float, float]:
    """Step length along a Newton direction of :func:`_huber_newton`.

    ``phi'(t) = ud + t dd - sum_i C clip((r_i - t e_i) / h, 0, 1) e_i`` is increasing and piecewise
    linear; returns ``(t, phi'(t))`` with t = 1 when ``phi'(1) <= 0`` (the full step), else the root in
    (0, 1) by Newton steps kept inside a bisection bracket.
    """

    def dphi(t: float) -> tuple[float, float]:
        rt = r - t * e
        b = C * np.clip(rt / h, 0.0, 1.0)
        band = (rt > 0) & (rt < h)
        return ud + t * dd - float(b @ e), dd + (C / h) * float(e[band] @ e[band])

    val, slope = dphi(1.0)
    if val <= 0:
        return 1.0, val
    lo, hi, t = 0.0, 1.0, 1.0
    for _ in range(60):
        t_new = t - val / slope if slope > 0 else 0.5 * (lo + hi)
        if not lo < t_new < hi:
            t_new = 0.5 * (lo + hi)
        t = t_new
        val, slope = dphi(t)
        if abs(val) <= 1e-13 * (abs(ud) + 1e-300):
            break
        if val > 0:
            hi = t
        else:
            lo = t
        if hi - lo <= 1e-15:
            break
    return t, val


def _huber_newton(
    A: np.ndarray, C: float, u: np.ndarray, h: float, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray, int]:
    """Newton's method on ``1/2 |u|^2 + C sum_i huber_h(1 - a_i . u)`` (strongly convex, C^1).

    ``huber_h(r)`` is 0 for r <= 0, r^2 / (2h) for 0 < r < h and r - h/2 beyond: the hinge smoothed
    over a band of width h. The Hessian ``I + C/h A_S^T A_S`` (S: samples in the band) is solved
    through Woodbury when ``|S| < p``; the step length comes from an exact search on the piecewise
    quadratic line function. Returns ``(u, beta, iterations)`` with the dual point
    ``beta_i = C clip((1 - a_i . u) / h, 0, 1)`` (``u = A^T beta`` at the optimum).
    """
    n, p = A.shape
    it = 0
    for it in range(1, max_iter + 1):
        r = 1.0 - A @ u
        beta = C * np.clip(r / h, 0.0, 1.0)
        grad = u - A.T @ beta
        gnorm = float(np.linalg.norm(grad))
        if gnorm <= 1e-11 * (1.0 + float(np.linalg.norm(u))):
            return u, beta, it
        S = np.flatnonzero((r > 0) & (r < h))
        if S.size == 0:
            d = -grad
        elif S.size < p:
            AS = A[S]
            M = AS @ AS.T
            M[np.diag_indices_from(M)] += h / C
            d = -(grad - AS.T @ chol_solve(M, AS @ grad, 1e-14))
        else:
            AS = A[S]
            H = (C / h) * (AS.T @ AS)
            H[np.diag_indices_from(H)] += 1.0
            d = -chol_solve(H, grad, 1e-14)
        # exact line search on the piecewise quadratic phi(t) = objective(u + t d)
        e = A @ d
        t, val = _huber_step(r, e, float(u @ d), float(d @ d), C, h)
        u = u + t * d
        if t == 1.0 and val <= 0:
            r_new = 1.0 - A @ u
            if np.array_equal(S, np.flatnonzero((r_new > 0) & (r_new < h))):
                # same quadratic piece after a full Newton step: this is the exact minimiser
                return u, C * np.clip(r_new / h, 0.0, 1.0), it
    r = 1.0 - A @ u
    return u, C * np.clip(r / h, 0.0, 1.0), max_iter


class DualSolution(NamedTuple):
    """What :func:`solve_dual` found.

    ``alpha`` is the feasible dual point with the highest dual value ``dual`` = ``D(alpha)`` (it
    certifies the gap and warm starts the next C), ``q = Q alpha``. The weights to use are those of
    ``point``: a dual point (``point_is_dual``: the weights ``w = sum_i a_i y_i x_i``) or a primal point
    of the factor's coordinates (a Huber-Newton iterate of the fallback), whichever had the lowest
    primal objective seen. ``ok`` means the active-set method converged (then ``point`` is ``alpha``).
    """

    alpha: np.ndarray
    q: np.ndarray
    iterations: int
    ok: bool
    dual: float
    point: np.ndarray
    point_is_dual: bool


def solve_dual(
    op: DualQ,
    C: float,
    alpha: np.ndarray,
    partition: tuple[np.ndarray, np.ndarray] | None,
    tol: float,
    max_iter: int,
    rel_reg: float = 1e-11,
) -> DualSolution:
    """Solve ``min 1/2 a^T Q a - 1^T a, 0 <= a <= C`` (see :class:`DualSolution`).

    Active-set method from the warm-start split; if it cycles, Huber-Newton continuation on the
    primal (h from >= 1 down to 1e-4), handing each band's split to the active-set method.
    """
    a1, q1, it1, ok = _pdas(op, C, alpha, partition, tol, max_iter, rel_reg)
    if ok:
        return DualSolution(a1, q1, it1, True, dual_value(a1, q1), a1, True)
    A = op.factor()

    def primal(u: np.ndarray) -> float:
        return 0.5 * float(u @ u) + C * float(np.maximum(0.0, 1.0 - A @ u).sum())

    # without convergence, the weights kept are those with the lowest primal objective, and the
    # dual point kept is the one with the highest dual value: on ill-conditioned data a Newton
    # iterate u is a much better primal point than A^T beta of its own dual estimate beta
    # (u = A^T beta holds only at the exact smoothed optimum), so the two are tracked apart
    best_a, best_q, best_d = a1, q1, -np.inf
    best_point, best_is_dual, best_p = a1, True, np.inf

    def consider(a: np.ndarray, qa: np.ndarray) -> None:
        nonlocal best_a, best_q, best_d, best_point, best_is_dual, best_p
        p, d = primal_value(a, qa, C), dual_value(a, qa)
        if d > best_d:
            best_a, best_q, best_d = a, qa, d
        if p < best_p:
            best_point, best_is_dual, best_p = a, True, p

    def consider_primal(u: np.ndarray) -> None:
        nonlocal best_point, best_is_dual, best_p
        p = primal(u)
        if p < best_p:
            best_point, best_is_dual, best_p = u, False, p

    consider(a1, q1)
    # the smoothed primal starts from the best of: the active-set method's point, the warm start,
    # and zero (a cycling active-set run can end far from the optimum; Newton then needs long)
    starts = [A.T @ a1, A.T @ np.clip(alpha, 0.0, C), np.zeros(A.shape[1])]
    u = min(starts, key=primal)
    it_total = it1
    # start wide enough that most samples sit in the quadratic band, then narrow it; from h <= 1 on,
    # the band's split is handed to the active-set method, which finishes when the split is right
    h = max(1.0, 2.0 * float(np.max(1.0 - A @ u)))
    while True:
        u, beta, k = _huber_newton(A, C, u, h, 200)
        it_total += k
        consider_primal(u)
        consider(beta, op.matvec(beta))
        if h <= 1.0:
            r = 1.0 - A @ u
            a2, q2, it2, ok = _pdas(op, C, beta, (r >= h, r <= 0), tol, min(max_iter, 20), rel_reg)
            it_total += it2
            if ok:
                return DualSolution(a2, q2, it_total, True, dual_value(a2, q2), a2, True)
            consider(a2, q2)
        if h <= 1e-4:
            break
        h = max(h / 10.0, 1e-4)
    return DualSolution(best_a, best_q, it_total, False, best_d, best_point, best_is_dual)
