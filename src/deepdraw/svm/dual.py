"""The dual problem of one training set of the pair solver: its matrix Q and the duality gap.

The hinge SVM of :mod:`deepdraw.svm.hinge` is solved through its dual, a box-constrained quadratic
program::

    min_a  D(a) = 1/2 a^T Q a - sum_i a_i,   0 <= a_i <= C,   Q_ij = y_i y_j (x_i . x_j + 1)
    w = sum_i a_i y_i x_i,   b = sum_i a_i y_i

The data enter through the Gram matrix ``X X^T`` (``n x n``, computed once per pair and shared by the
whole C grid) when ``n <= d``, or through an orthonormal basis of the rows of ``X`` (the eigenvectors
of ``X^T X``, optionally truncated to ``rank`` directions) otherwise. ``Q = A A^T`` with ``A`` the
``(n, p)`` matrix of rows ``y_i [z_i, 1]`` of reduced coordinates ``z_i``. :class:`DualQ` holds ``Q``
explicitly or as its factor ``A`` and offers the products and the free-variable solves that the
solvers of :mod:`deepdraw.svm.dual_solver` need; :func:`dual_operator` builds it from the data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg as sla

__all__ = ["DualQ", "chol_solve", "dual_operator", "dual_value", "primal_value"]


# ----------------------------------------------------------------------------------------------------
# The dual matrix Q, held explicitly (n x n) or as a factor Q = A A^T (n x p)
# ----------------------------------------------------------------------------------------------------


def chol_solve(M: np.ndarray, g: np.ndarray, rel_reg: float) -> np.ndarray:
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


class DualQ:
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
            return chol_solve(self.Q[np.ix_(F, F)], r, rel_reg)
        AF = self.factor()[F]
        m, p = AF.shape
        if m <= p:
            return chol_solve(AF @ AF.T, r, rel_reg)
        G = AF.T @ AF
        delta = rel_reg * max(float(np.trace(G)) / m, 1e-300)
        G[np.diag_indices_from(G)] += delta
        t = sla.cho_solve(sla.cho_factor(G, check_finite=False), AF.T @ r, check_finite=False)
        return (r - AF @ t) / delta


def primal_value(alpha: np.ndarray, q: np.ndarray, C: float) -> float:
    """Primal objective of the weights of a feasible ``alpha`` with ``q = Q alpha``: the margins of the
    primal point ``u = A^T alpha`` are ``q``, and ``|u|^2 = alpha . q``."""
    return 0.5 * float(alpha @ q) + C * float(np.maximum(0.0, 1.0 - q).sum())


def dual_value(alpha: np.ndarray, q: np.ndarray) -> float:
    """``D(alpha) = 1^T alpha - 1/2 alpha^T Q alpha`` (``q = Q alpha``): for a feasible ``alpha``, a
    lower bound of the primal optimum whatever C (weak duality)."""
    return float(alpha.sum()) - 0.5 * float(alpha @ q)


# ----------------------------------------------------------------------------------------------------
# Q from the data: explicit Gram matrix or factor on an orthonormal basis
# ----------------------------------------------------------------------------------------------------


def _top_eig(M: np.ndarray, rank: int, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    lam, V = np.linalg.eigh(M)
    lam, V = lam[::-1], V[:, ::-1]
    keep = lam > rtol * max(float(lam[0]), 1e-300)
    if rank > 0:
        keep[rank:] = False
    return lam[keep], V[:, keep]


def dual_operator(
    X: np.ndarray, ys: np.ndarray, rank: int, rtol: float, gram_max: int
) -> tuple[
    DualQ, Callable[[np.ndarray], tuple[np.ndarray, float]], Callable[[np.ndarray], tuple[np.ndarray, float]]
]:
    """The dual matrix Q of ``X`` (n, d) and signed labels ``ys`` (explicit or factored, see the module
    docs), the map from dual variables to the weights and intercept in input space, and the map from a
    primal point ``u`` of the factor's coordinates (``u = A^T a``; needs ``op.factor()``) to the same."""
    n, d = X.shape
    exact = rank <= 0 or rank >= min(n, d)
    basis: dict[str, np.ndarray] = {}  # V: (d, r) orthonormal directions of the factor's coordinates

    def from_factor(u: np.ndarray) -> tuple[np.ndarray, float]:
        return basis["V"] @ u[:-1], float(u[-1])

    if n <= d:
        K = X @ X.T

        def factor() -> np.ndarray:
            lam, U = _top_eig(K, 0 if exact else rank, rtol)
            s = np.sqrt(lam)
            basis["V"] = X.T @ (U / s)
            return np.hstack([U * s, np.ones((n, 1))]) * ys[:, None]

        if exact:
            Q = (K + 1.0) * np.outer(ys, ys)
            op = DualQ(Q, factor)

            def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
                ya = a * ys
                return X.T @ ya, float(ya.sum())

        else:
            A = factor()
            op = DualQ(A @ A.T if n <= gram_max and 2 * A.shape[1] >= n else None, A)

            def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
                return from_factor(A.T @ a)

    else:
        lam, basis["V"] = _top_eig(X.T @ X, 0 if exact else rank, rtol)
        A = np.hstack([X @ basis["V"], np.ones((n, 1))]) * ys[:, None]
        # the explicit (n, n) matrix only pays off when the factor is not much thinner than n
        op = DualQ(A @ A.T if n <= gram_max and 2 * A.shape[1] >= n else None, A)

        def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
            return from_factor(A.T @ a)

    return op, to_weights, from_factor
