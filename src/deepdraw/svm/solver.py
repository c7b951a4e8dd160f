"""Linear hinge-loss SVMs along a C path, one-vs-one voting and the linear TDT decoder.

The pair solver minimises exactly the objective of ``sklearn.svm.LinearSVC(loss="hinge")``
(liblinear's L2-regularised L1-loss SVM; the intercept is an extra constant feature of value 1 and
is regularised like the weights)::

    P(w, b) = 1/2 (|w|^2 + b^2) + C * sum_i max(0, 1 - y_i (w . x_i + b)),   y_i in {-1, +1}

through its dual, a box-constrained quadratic program::

    min_a  D(a) = 1/2 a^T Q a - sum_i a_i,   0 <= a_i <= C,   Q_ij = y_i y_j (x_i . x_j + 1)
    w = sum_i a_i y_i x_i,   b = sum_i a_i y_i

It differs from liblinear only in *how* the optimum is found (``docs/svm.md``):

* the data enter through the Gram matrix ``X X^T`` (``n x n``, computed once per pair and shared by
  the whole C grid) when ``n <= d``, or through an orthonormal basis of the rows of ``X`` (the
  eigenvectors of ``X^T X``, optionally truncated to ``rank`` directions) otherwise. ``Q = A A^T``
  with ``A`` the ``(n, p)`` matrix of rows ``y_i [z_i, 1]`` of reduced coordinates ``z_i``;
* the dual is solved by a primal-dual active-set (semismooth Newton) method: variables are split into
  those at 0, those at C and free ones, the free ones solve one linear system, and the split is
  updated from the new gradient until it repeats (then the KKT conditions hold exactly). If the
  split cycles (it can, on rank-deficient data), a globally convergent fallback takes over: Newton's
  method on the primal with the hinge smoothed into a Huber loss of width h, h driven from 1 to
  1e-4, whose final split restarts the active-set method (Chapelle 2007, "Training a support vector
  machine in the primal");
* the C grid is walked upwards, each C starting from the previous C's split; once no ``a_i`` sits at
  its upper bound, the solution is the same for every larger C (the bound is inactive), so those fits
  are copied instead of solved.

Accuracy: every fit reports its duality gap ``P - (-D)`` (>= 0, zero at the optimum).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

log = logging.getLogger(__name__)

__all__ = [
    "HingeFit",
    "PairFit",
    "LinearDecoder",
    "fit_hinge_path",
    "fit_pair",
    "hinge_objective",
    "ovo_pairs",
    "ovo_decision_function",
    "ovo_predict",
    "split_train_val",
]


# ----------------------------------------------------------------------------------------------------
# The dual matrix Q, held explicitly (n x n) or as a factor Q = A A^T (n x p)
# ----------------------------------------------------------------------------------------------------


def _chol_solve(M: np.ndarray, g: np.ndarray, rel_reg: float) -> np.ndarray:
    """``(M + delta I)^-1 g`` for a symmetric PSD ``M``, ``delta = rel_reg * mean(diag M)``."""
    m = M.shape[0]
    delta = rel_reg * max(float(np.trace(M)) / max(m, 1), 1e-300)
    M = M.copy()
    idx = np.diag_indices_from(M)
    M[idx] += delta
    for _ in range(8):
        try:
            return sla.cho_solve(sla.cho_factor(M, check_finite=False), g, check_finite=False)
        except np.linalg.LinAlgError:
            M[idx] += 9 * delta
            delta *= 10
    return np.linalg.lstsq(M, g, rcond=None)[0]


class _DualQ:
    """The dual matrix of one training set.

    ``Q`` (n x n) is formed when ``n <= gram_max``; the factor ``A`` (n x p, ``Q = A A^T`` up to the
    dropped near-null directions) is formed on demand (``factor()``) by the Huber-Newton fallback.
    """

    def __init__(
        self,
        Q: np.ndarray | None,
        factor: Callable[[], np.ndarray] | np.ndarray,
    ) -> None:
        self.Q = Q
        self._factor = factor
        if Q is not None:
            self.diag = np.diag(Q).copy()
            self.n = Q.shape[0]
        else:
            A = self.factor()
            self.diag = np.einsum("ij,ij->i", A, A)
            self.n = A.shape[0]

    def factor(self) -> np.ndarray:
        if callable(self._factor):
            self._factor = self._factor()
        return self._factor

    def matvec(self, v: np.ndarray) -> np.ndarray:
        if self.Q is not None:
            return self.Q @ v
        A = self.factor()
        return A @ (A.T @ v)

    def sub_sum(self, F: np.ndarray, U: np.ndarray) -> np.ndarray:
        """``Q[F][:, U] @ 1``."""
        if self.Q is not None:
            return self.Q[np.ix_(F, U)].sum(axis=1)
        A = self.factor()
        return A[F] @ A[U].sum(axis=0)

    def solve_free(self, F: np.ndarray, r: np.ndarray, rel_reg: float) -> np.ndarray:
        """``(Q_FF + delta I)^-1 r`` (Woodbury through ``A_F^T A_F`` when ``|F| > p``)."""
        if self.Q is not None and (callable(self._factor) or F.size <= self._factor.shape[1]):
            return _chol_solve(self.Q[np.ix_(F, F)], r, rel_reg)
        AF = self.factor()[F]
        m, p = AF.shape
        if m <= p:
            return _chol_solve(AF @ AF.T, r, rel_reg)
        G = AF.T @ AF
        delta = rel_reg * max(float(np.trace(G)) / m, 1e-300)
        G[np.diag_indices_from(G)] += delta
        t = sla.cho_solve(sla.cho_factor(G, check_finite=False), AF.T @ r, check_finite=False)
        return (r - AF @ t) / delta


def _projected_gradient(alpha: np.ndarray, g: np.ndarray, C: float) -> np.ndarray:
    pg = g.copy()
    lo = alpha <= 0
    hi = alpha >= C
    pg[lo] = np.minimum(g[lo], 0)
    pg[hi] = np.maximum(g[hi], 0)
    return pg


def _gap(alpha: np.ndarray, q: np.ndarray, C: float) -> tuple[float, float]:
    """(primal objective, duality gap) of a feasible ``alpha`` with ``q = Q alpha``.

    Margins of the primal point ``u = A^T alpha`` are ``q``, and ``|u|^2 = alpha . q``.
    """
    aq = float(alpha @ q)
    primal = 0.5 * aq + C * float(np.maximum(0.0, 1.0 - q).sum())
    dual = float(alpha.sum()) - 0.5 * aq
    return primal, primal - dual


# ----------------------------------------------------------------------------------------------------
# Solvers of the dual box QP
# ----------------------------------------------------------------------------------------------------


def _pdas(
    op: _DualQ,
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
            d = -(grad - AS.T @ _chol_solve(M, AS @ grad, 1e-14))
        else:
            AS = A[S]
            H = (C / h) * (AS.T @ AS)
            H[np.diag_indices_from(H)] += 1.0
            d = -_chol_solve(H, grad, 1e-14)
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


def _solve_dual(
    op: _DualQ,
    C: float,
    alpha: np.ndarray,
    partition: tuple[np.ndarray, np.ndarray] | None,
    tol: float,
    max_iter: int,
    rel_reg: float = 1e-11,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Solve ``min 1/2 a^T Q a - 1^T a, 0 <= a <= C``; returns ``(alpha, Q alpha, iterations, ok)``.

    Active-set method from the warm-start split; if it cycles, Huber-Newton continuation on the
    primal (h from >= 1 down to 1e-4), handing each band's split to the active-set method.
    """
    a1, q1, it1, ok = _pdas(op, C, alpha, partition, tol, max_iter, rel_reg)
    if ok:
        return a1, q1, it1, True
    A = op.factor()

    def primal(u: np.ndarray) -> float:
        return 0.5 * float(u @ u) + C * float(np.maximum(0.0, 1.0 - A @ u).sum())

    # the smoothed primal starts from the best of: the active-set method's point, the warm start,
    # and zero (a cycling active-set run can end far from the optimum; Newton then needs long)
    starts = [A.T @ a1, A.T @ np.clip(alpha, 0.0, C), np.zeros(A.shape[1])]
    u = min(starts, key=primal)
    it_total = it1
    # without convergence, the point returned is the one whose weights have the lowest primal
    # objective (the weights are what is used; a lower dual value does not imply better weights)
    best = (a1, q1)
    best_p = _gap(a1, q1, C)[0]
    # start wide enough that most samples sit in the quadratic band, then narrow it; from h <= 1 on,
    # the band's split is handed to the active-set method, which finishes when the split is right
    h = max(1.0, 2.0 * float(np.max(1.0 - A @ u)))
    while True:
        u, beta, k = _huber_newton(A, C, u, h, 200)
        it_total += k
        if h <= 1.0:
            r = 1.0 - A @ u
            a2, q2, it2, ok = _pdas(op, C, beta, (r >= h, r <= 0), tol, min(max_iter, 20), rel_reg)
            it_total += it2
            if ok:
                return a2, q2, it_total, True
            p2 = _gap(a2, q2, C)[0]
            if p2 < best_p:
                best, best_p = (a2, q2), p2
        if h <= 1e-4:
            break
        h = max(h / 10.0, 1e-4)
    qb = op.matvec(beta)  # u = A^T beta at the smoothed optimum: beta carries the Newton solution
    if _gap(beta, qb, C)[0] < best_p:
        best = (beta, qb)
    return best[0], best[1], it_total, False


# ----------------------------------------------------------------------------------------------------
# Hinge SVM along a C path
# ----------------------------------------------------------------------------------------------------


@dataclass
class HingeFit:
    """One fitted linear SVM: ``f(x) = x . coef + intercept``; ``f > 0`` predicts the +1 class."""

    C: float
    coef: np.ndarray  # (d,) weights in input space
    intercept: float
    n_iter: int  # active-set (+ Newton) iterations; 0 when copied from a smaller C
    converged: bool
    objective: float  # primal objective on the training data
    gap: float  # duality gap (>= 0); objective - gap is a lower bound of the optimum

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept


def hinge_objective(coef: np.ndarray, intercept: float, X: np.ndarray, y: np.ndarray, C: float) -> float:
    """Primal objective of ``LinearSVC(loss='hinge')`` (``y`` in {-1, +1}, intercept regularised)."""
    m = y * (X @ coef + intercept)
    return 0.5 * (float(coef @ coef) + intercept**2) + C * float(np.maximum(0.0, 1.0 - m).sum())


def _as_signed(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    vals = np.unique(y)
    if vals.size != 2:
        raise ValueError(f"expected two classes in y, got {vals.size}")
    if set(vals.tolist()) <= {-1, 1}:
        return y.astype(np.float64)
    return np.where(y == vals[1], 1.0, -1.0)


def _top_eig(M: np.ndarray, rank: int, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    lam, V = np.linalg.eigh(M)
    lam, V = lam[::-1], V[:, ::-1]
    keep = lam > rtol * max(float(lam[0]), 1e-300)
    if rank > 0:
        keep[rank:] = False
    return lam[keep], V[:, keep]


def _dual_operator(
    X: np.ndarray, ys: np.ndarray, rank: int, rtol: float, gram_max: int
) -> tuple[_DualQ, Callable[[np.ndarray], tuple[np.ndarray, float]]]:
    """The dual matrix Q of ``X`` (n, d) and signed labels ``ys`` (explicit or factored, see the module
    docs), and the map from dual variables to the weights and intercept in input space."""
    n, d = X.shape
    exact = rank <= 0 or rank >= min(n, d)

    if n <= d:
        K = X @ X.T
        holder: dict[str, np.ndarray] = {}

        def factor() -> np.ndarray:
            lam, U = _top_eig(K, 0 if exact else rank, rtol)
            holder["U"], holder["s"] = U, np.sqrt(lam)
            return np.hstack([U * holder["s"], np.ones((n, 1))]) * ys[:, None]

        if exact:
            Q = (K + 1.0) * np.outer(ys, ys)
            op = _DualQ(Q, factor)

            def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
                ya = a * ys
                return X.T @ ya, float(ya.sum())

        else:
            A = factor()
            op = _DualQ(A @ A.T if n <= gram_max and 2 * A.shape[1] >= n else None, A)
            V = X.T @ (holder["U"] / holder["s"])  # (d, r) orthonormal directions

            def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
                u = A.T @ a
                return V @ u[:-1], float(u[-1])

    else:
        lam, V = _top_eig(X.T @ X, 0 if exact else rank, rtol)
        A = np.hstack([X @ V, np.ones((n, 1))]) * ys[:, None]
        # the explicit (n, n) matrix only pays off when the factor is not much thinner than n
        op = _DualQ(A @ A.T if n <= gram_max and 2 * A.shape[1] >= n else None, A)

        def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
            u = A.T @ a
            return V @ u[:-1], float(u[-1])

    return op, to_weights


def fit_hinge_path(
    X: np.ndarray,
    y: np.ndarray,
    c_grid: Sequence[float],
    *,
    rank: int = 0,
    tol: float = 1e-6,
    max_iter: int = 100,
    gram_max: int = 6000,
    rtol: float = 1e-13,
    gap_tol: float = 1e-6,
) -> list[HingeFit]:
    """Fit ``LinearSVC(loss='hinge', C)`` for every C of ``c_grid`` on one training set.

    Parameters
    ----------
    X : (n, d) flattened samples, used as they are (no scaling).
    y : (n,) labels with exactly two values; the larger one (or +1) is the positive class.
    c_grid : positive C values, any order; results come back in the order given.
    rank : 0 solves exactly (every direction of the data whose eigenvalue exceeds ``rtol`` times the
        largest); k > 0 first projects the samples on their top-k principal directions (uncentred),
        an approximation for very large pairs.
    tol : the dual is solved when every projected-gradient entry is <= ``tol`` (margin units) or
        the duality gap is <= ``gap_tol`` times the primal objective (``HingeFit.converged``).
    gram_max : largest ``n`` for which the (n, n) dual matrix is formed explicitly.
    """
    c_grid = [float(c) for c in c_grid]
    if not c_grid:
        raise ValueError("c_grid is empty")
    if any(not np.isfinite(c) or c <= 0 for c in c_grid):
        raise ValueError(f"C values must be positive and finite, got {c_grid}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    ys = _as_signed(y)
    n = X.shape[0]
    op, to_weights = _dual_operator(X, ys, rank, rtol, gram_max)
    order = np.argsort(c_grid, kind="stable")
    prev_C = c_grid[order[0]]
    fits: dict[int, HingeFit] = {}
    alpha: np.ndarray | None = None
    partition: tuple[np.ndarray, np.ndarray] | None = None
    saturated: tuple[np.ndarray, np.ndarray, bool] | None = None
    for k in order:
        C = c_grid[k]
        if saturated is not None:
            # no a_i reached its bound at a smaller C: the same point is optimal for every larger C
            alpha, q, ok = saturated
            it = 0
        else:
            if alpha is None:
                alpha = np.full(n, C)
                partition = (np.ones(n, bool), np.zeros(n, bool))
            else:
                partition = (alpha >= prev_C * (1 - 1e-12), alpha <= 0)
                alpha = np.where(partition[0], C, alpha)
            alpha, q, it, ok = _solve_dual(op, C, alpha, partition, tol, max_iter)
            primal, gap = _gap(alpha, q, C)
            ok = ok or gap <= gap_tol * max(primal, 1e-300)
            if ok and np.all(alpha < C * (1 - 1e-9)):
                saturated = (alpha, q, ok)
        prev_C = C
        primal, gap = _gap(alpha, q, C)
        if not ok:
            log.debug(
                "dual not solved to tol %.1e at C=%g (relative gap %.2e)", tol, C, gap / max(primal, 1e-300)
            )
        w, b = to_weights(alpha)
        fits[k] = HingeFit(C, w, b, it, ok, hinge_objective(w, b, X, ys, C), max(gap, 0.0))
    return [fits[k] for k in range(len(c_grid))]


# ----------------------------------------------------------------------------------------------------
# One pair: 90/10 split in file order, C chosen on the validation part
# ----------------------------------------------------------------------------------------------------


def split_train_val(n: int, val_fraction: float) -> int:
    """Number of leading (file-order) samples used for training; the rest is validation.

    As the original: ``int((1 - val_fraction) * n)`` training samples, at least one of each part.
    """
    n_tr = int((1.0 - val_fraction) * n)
    return min(max(n_tr, 1), n - 1)


@dataclass
class PairFit:
    """The C path of one pair: validation accuracy per C and the model of the best C."""

    c_grid: np.ndarray  # (nC,)
    val_acc: np.ndarray  # (nC,)
    train_acc: np.ndarray  # (nC,)
    n_iter: np.ndarray  # (nC,)
    converged: np.ndarray  # (nC,) bool
    best: int  # index of the chosen C (first maximum of val_acc, i.e. the smallest such C)
    coef: np.ndarray  # (d,) weights of the chosen C
    intercept: float
    n_train: int
    n_val: int
    extra: dict = field(default_factory=dict)


def fit_pair(
    X: np.ndarray,
    y: np.ndarray,
    c_grid: Sequence[float],
    val_fraction: float = 0.1,
    **solver_kw,
) -> PairFit:
    """Fit the C path on the first ``1 - val_fraction`` of the rows and pick C on the rest.

    ``y`` in {-1, +1} (``+1`` = the positive class; decision > 0 predicts it). Rows are in file order.
    """
    X = np.asarray(X)
    ys = np.asarray(y, dtype=np.float64)
    n = X.shape[0]
    n_tr = split_train_val(n, val_fraction)
    Xtr, ytr = X[:n_tr], ys[:n_tr]
    Xva, yva = X[n_tr:], ys[n_tr:]
    if np.unique(ytr).size < 2:
        raise ValueError("the training part of the pair holds a single class")
    fits = fit_hinge_path(Xtr, ytr, c_grid, **solver_kw)
    Xtr64 = np.asarray(Xtr, dtype=np.float64)
    Xva64 = np.asarray(Xva, dtype=np.float64)
    W = np.stack([f.coef for f in fits], axis=1)  # (d, nC)
    bvec = np.array([f.intercept for f in fits])
    val_acc = np.mean(np.where(Xva64 @ W + bvec > 0, 1.0, -1.0) == yva[:, None], axis=0)
    train_acc = np.mean(np.where(Xtr64 @ W + bvec > 0, 1.0, -1.0) == ytr[:, None], axis=0)
    best = int(np.argmax(val_acc))
    return PairFit(
        c_grid=np.asarray([f.C for f in fits]),
        val_acc=val_acc,
        train_acc=train_acc,
        n_iter=np.array([f.n_iter for f in fits]),
        converged=np.array([f.converged for f in fits]),
        best=best,
        coef=fits[best].coef,
        intercept=fits[best].intercept,
        n_train=n_tr,
        n_val=n - n_tr,
    )


# ----------------------------------------------------------------------------------------------------
# One-vs-one voting (scikit-learn's OneVsOneClassifier semantics)
# ----------------------------------------------------------------------------------------------------


def ovo_pairs(n_classes: int) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, in scikit-learn's order."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def ovo_decision_function(
    decisions: np.ndarray, n_classes: int, pairs: Sequence[tuple[int, int]] | None = None
) -> np.ndarray:
    """Votes plus transformed summed confidences, as ``sklearn.multiclass._ovr_decision_function``.

    ``decisions`` is ``(n_samples, n_pairs)``: for pair ``(i, j)`` a positive value is a vote for
    ``j`` (the binary classifier was trained with ``j`` as its positive class), zero or negative a vote
    for ``i``. Each class gets ``votes + s / (3 (|s| + 1))`` where ``s`` is the sum of the confidences
    for it; the added term is below 1/3 in size, so it only breaks ties between equal vote counts.
    """
    decisions = np.asarray(decisions, dtype=np.float64)
    if pairs is None:
        pairs = ovo_pairs(n_classes)
    if decisions.ndim != 2 or decisions.shape[1] != len(pairs):
        raise ValueError(f"decisions must be (n_samples, {len(pairs)}), got {decisions.shape}")
    n = decisions.shape[0]
    votes = np.zeros((n, n_classes))
    conf = np.zeros((n, n_classes))
    for k, (i, j) in enumerate(pairs):
        dk = decisions[:, k]
        conf[:, i] -= dk
        conf[:, j] += dk
        pos = dk > 0
        votes[:, j] += pos
        votes[:, i] += ~pos
    return votes + conf / (3.0 * (np.abs(conf) + 1.0))


def ovo_predict(
    decisions: np.ndarray, n_classes: int, pairs: Sequence[tuple[int, int]] | None = None
) -> np.ndarray:
    """Class index (0..n_classes-1) with the largest :func:`ovo_decision_function` value."""
    return np.argmax(ovo_decision_function(decisions, n_classes, pairs), axis=1)


# ----------------------------------------------------------------------------------------------------
# Linear decoding baseline (TDT): streaming standardised least squares
# ----------------------------------------------------------------------------------------------------


class LinearDecoder:
    """Linear regression from standard-scaled inputs to standard-scaled targets.

    Fed in chunks (:meth:`partial_fit`); means and co-moments are merged with Chan et al.'s pairwise
    update, so the accumulation is exact and stable whatever the chunking. :meth:`solve` then fits
    ``Y_s = X_s B`` (``X_s``, ``Y_s`` z-scored, so no intercept is needed) by ridge regression with a
    tiny ``alpha`` (relative to the number of rows), i.e. ordinary least squares unless the inputs are
    collinear.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mx: np.ndarray | None = None
        self.my: np.ndarray | None = None
        self.Sxx: np.ndarray | None = None
        self.Sxy: np.ndarray | None = None
        self.Syy: np.ndarray | None = None
        self.coef_: np.ndarray | None = None

    def partial_fit(self, X: np.ndarray, Y: np.ndarray) -> LinearDecoder:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        m = X.shape[0]
        if m == 0:
            return self
        mx, my = X.mean(0), Y.mean(0)
        Xc, Yc = X - mx, Y - my
        sxx, sxy, syy = Xc.T @ Xc, Xc.T @ Yc, np.einsum("ij,ij->j", Yc, Yc)
        if self.n == 0:
            self.n, self.mx, self.my, self.Sxx, self.Sxy, self.Syy = m, mx, my, sxx, sxy, syy
            return self
        n = self.n
        tot = n + m
        dx, dy = mx - self.mx, my - self.my
        f = n * m / tot
        self.Sxx = self.Sxx + sxx + f * np.outer(dx, dx)
        self.Sxy = self.Sxy + sxy + f * np.outer(dx, dy)
        self.Syy = self.Syy + syy + f * dy * dy
        self.mx = self.mx + dx * m / tot
        self.my = self.my + dy * m / tot
        self.n = tot
        return self

    def solve(self, alpha: float = 1e-6) -> LinearDecoder:
        if self.n < 2:
            raise ValueError("LinearDecoder needs at least two rows")
        # set together by the first partial_fit with rows (n > 0)
        assert self.Sxx is not None and self.Sxy is not None and self.Syy is not None
        sx = np.sqrt(np.maximum(np.diag(self.Sxx) / self.n, 0.0))
        sy = np.sqrt(np.maximum(self.Syy / self.n, 0.0))
        self.sx = np.where(sx > 0, sx, 1.0)
        self.sy = np.where(sy > 0, sy, 1.0)
        Cxx = self.Sxx / (self.n * np.outer(self.sx, self.sx))
        Cxy = self.Sxy / (self.n * np.outer(self.sx, self.sy))
        Cxx[np.diag_indices_from(Cxx)] += alpha
        self.coef_ = np.linalg.solve(Cxx, Cxy)  # (p, q) in scaled units
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None or self.mx is None or self.my is None:
            raise ValueError("call solve() first")
        Xs = (np.asarray(X, dtype=np.float64) - self.mx) / self.sx
        return (Xs @ self.coef_) * self.sy + self.my
