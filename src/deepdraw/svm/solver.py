"""Linear hinge-loss SVMs along a C path, one-vs-one voting and the linear TDT decoder.

The pair solver minimises exactly the objective of ``sklearn.svm.LinearSVC(loss="hinge")``
(liblinear's L2-regularised L1-loss SVM, intercept as an extra constant feature of value 1 that is
regularised like the weights)::

    min_{w, b}  1/2 (|w|^2 + b^2) + C * sum_i max(0, 1 - y_i (w . x_i + b)),   y_i in {-1, +1}

through its dual, a box-constrained quadratic program::

    min_a  1/2 a^T Q a - sum_i a_i,   0 <= a_i <= C,   Q_ij = y_i y_j (x_i . x_j + 1)
    w = sum_i a_i y_i x_i,  b = sum_i a_i y_i

Differences to liblinear are in *how* it is solved (see ``docs/svm.md``):

* the data enter only through the Gram matrix ``X X^T`` (``n x n``, computed once per pair and shared
  by the whole C grid) when ``n`` is small, or through a reduced orthogonal basis of the data (the
  eigenvectors of ``X^T X``, optionally truncated to ``rank`` directions) otherwise;
* the dual is solved by a projected Newton method (Bertsekas 1982: an epsilon-active set is held at
  its bounds, a Newton step is taken on the free variables, with a backtracking search along the
  projection arc; a projected-gradient step with exact line search is the safeguard). Once the active
  set is right, one Newton step lands on the exact optimum, so it stops at a much tighter tolerance
  than liblinear's coordinate descent reaches in its 1000 epochs;
* the C grid is walked upwards with warm starts (``a`` at the old bound moves to the new bound), and
  once no ``a_i`` sits at its upper bound the solution is the same for every larger C (the bound is
  inactive), so those fits are copied instead of solved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
# The dual operator: Q given explicitly (Gram form) or as Q = A A^T (factor form)
# ----------------------------------------------------------------------------------------------------


class _GramQ:
    """Q held as an explicit ``(n, n)`` matrix."""

    def __init__(self, Q: np.ndarray) -> None:
        self.Q = Q
        self.diag = np.ascontiguousarray(np.diag(Q)).copy()
        self.n = Q.shape[0]

    def matvec(self, v: np.ndarray) -> np.ndarray:
        return self.Q @ v

    def matvec_sparse(self, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``Q[:, idx] @ v`` (``v`` holds the values at ``idx``)."""
        return self.Q[:, idx] @ v

    def solve_free(self, F: np.ndarray, gF: np.ndarray, rel_reg: float) -> np.ndarray:
        """``(Q_FF + delta I)^-1 gF``."""
        M = self.Q[np.ix_(F, F)]
        return _chol_solve(M, gF, rel_reg)


class _FactorQ:
    """Q = A A^T with ``A`` of shape ``(n, p)`` (rows ``y_i [z_i, 1]``)."""

    def __init__(self, A: np.ndarray) -> None:
        self.A = A
        self.diag = np.einsum("ij,ij->i", A, A)
        self.n = A.shape[0]

    def matvec(self, v: np.ndarray) -> np.ndarray:
        return self.A @ (self.A.T @ v)

    def matvec_sparse(self, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.A @ (self.A[idx].T @ v)

    def solve_free(self, F: np.ndarray, gF: np.ndarray, rel_reg: float) -> np.ndarray:
        AF = self.A[F]
        m, p = AF.shape
        if m <= p:
            return _chol_solve(AF @ AF.T, gF, rel_reg)
        # Woodbury: (AF AF^T + d I)^-1 g = (g - AF (d I + AF^T AF)^-1 AF^T g) / d
        G = AF.T @ AF
        delta = rel_reg * max(float(np.trace(G)) / m, 1e-300)
        G[np.diag_indices_from(G)] += delta
        t = sla.cho_solve(sla.cho_factor(G, check_finite=False), AF.T @ gF, check_finite=False)
        return (gF - AF @ t) / delta


def _chol_solve(M: np.ndarray, g: np.ndarray, rel_reg: float) -> np.ndarray:
    m = M.shape[0]
    delta = rel_reg * max(float(np.trace(M)) / max(m, 1), 1e-300)
    M = M.copy()
    M[np.diag_indices_from(M)] += delta
    for _ in range(6):
        try:
            return sla.cho_solve(sla.cho_factor(M, check_finite=False), g, check_finite=False)
        except np.linalg.LinAlgError:
            M[np.diag_indices_from(M)] += 9 * delta
            delta *= 10
    return np.linalg.lstsq(M, g, rcond=None)[0]


def _projected_gradient(alpha: np.ndarray, g: np.ndarray, C: float) -> np.ndarray:
    pg = g.copy()
    lo = alpha <= 0
    hi = alpha >= C
    pg[lo] = np.minimum(g[lo], 0)
    pg[hi] = np.maximum(g[hi], 0)
    return pg


def _solve_dual(
    op: _GramQ | _FactorQ,
    C: float,
    alpha: np.ndarray,
    tol: float,
    max_iter: int,
    rel_reg: float = 1e-11,
) -> tuple[np.ndarray, int, bool]:
    """Projected Newton on ``min 1/2 a^T Q a - 1^T a, 0 <= a <= C`` from the feasible ``alpha``.

    Stops when the largest projected-gradient entry is <= ``tol`` (margin units). Returns
    ``(alpha, iterations, converged)``.
    """
    n = op.n
    diag = np.maximum(op.diag, 1e-300)
    alpha = np.clip(alpha, 0.0, C)
    q = op.matvec(alpha)  # Q alpha
    f = 0.5 * float(alpha @ q) - float(alpha.sum())
    sigma = 1e-4
    for it in range(max_iter):
        g = q - 1.0
        pg = _projected_gradient(alpha, g, C)
        if np.max(np.abs(pg)) <= tol:
            return alpha, it, True
        # epsilon-active set (Bertsekas): variables near a bound that the gradient pushes onto it
        w = float(np.linalg.norm(alpha - np.clip(alpha - g / diag, 0.0, C)))
        eps = min(1e-3 * C, w)
        act = ((alpha <= eps) & (g > 0)) | ((alpha >= C - eps) & (g < 0))
        F = np.flatnonzero(~act)
        d = np.where(act, -g / diag, 0.0)
        if F.size:
            d[F] = -op.solve_free(F, g[F], rel_reg)
        accepted = False
        s = 1.0
        for _ in range(40):
            new = np.clip(alpha + s * d, 0.0, C)
            delta = new - alpha
            nz = np.flatnonzero(delta)
            if nz.size == 0:
                break
            gd = float(g[nz] @ delta[nz])
            if gd < 0:
                qd = op.matvec_sparse(nz, delta[nz])
                df = gd + 0.5 * float(delta @ qd)
                if df <= sigma * gd:
                    alpha, q, f = new, q + qd, f + df
                    accepted = True
                    break
            s *= 0.5
        if not accepted:
            # safeguard: projected (diagonally scaled) gradient step with exact line search
            delta = np.clip(alpha - g / diag, 0.0, C) - alpha
            nz = np.flatnonzero(delta)
            if nz.size == 0:
                return alpha, it, True
            qd = op.matvec_sparse(nz, delta[nz])
            gd = float(g[nz] @ delta[nz])
            curv = float(delta @ qd)
            if gd >= 0:
                return alpha, it, False
            t = 1.0 if curv <= 0 else min(1.0, -gd / curv)
            alpha = np.clip(alpha + t * delta, 0.0, C)
            q = op.matvec(alpha)
            f = 0.5 * float(alpha @ q) - float(alpha.sum())
    g = q - 1.0
    ok = bool(np.max(np.abs(_projected_gradient(alpha, g, C))) <= tol)
    del n
    return alpha, max_iter, ok


# ----------------------------------------------------------------------------------------------------
# Hinge SVM along a C path
# ----------------------------------------------------------------------------------------------------


@dataclass
class HingeFit:
    """One fitted linear SVM: ``f(x) = x . coef + intercept``; ``f > 0`` means the +1 class."""

    C: float
    coef: np.ndarray  # (d,) weights in input space
    intercept: float
    n_iter: int
    converged: bool
    objective: float  # primal objective on the training data

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


def fit_hinge_path(
    X: np.ndarray,
    y: np.ndarray,
    c_grid: Sequence[float],
    *,
    rank: int = 0,
    tol: float = 1e-5,
    max_iter: int = 200,
    gram_max: int = 6000,
    rtol: float = 1e-12,
) -> list[HingeFit]:
    """Fit ``LinearSVC(loss='hinge', C)`` for every C of ``c_grid`` on one data set.

    Parameters
    ----------
    X : (n, d) array of flattened samples (no scaling is applied).
    y : (n,) labels with exactly two values; the larger (or +1) is the positive class.
    c_grid : C values (any order; results are returned in the order given).
    rank : 0 solves exactly (all directions of the data above ``rtol`` of the largest eigenvalue);
        k > 0 first projects the samples on their top-k principal directions (uncentred SVD), an
        approximation that makes very large pairs cheap.
    tol : stop when every projected-gradient entry of the dual is below ``tol`` (margin units).
    gram_max : largest ``n`` for which the ``(n, n)`` dual matrix is formed explicitly.
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
    n, d = X.shape

    # --- the dual operator and the map from dual variables back to input-space weights ---
    use_gram = n <= gram_max and (rank <= 0 or rank >= min(n, d))
    if use_gram:
        K = X @ X.T
        Q = (K + 1.0) * np.outer(ys, ys)
        op: _GramQ | _FactorQ = _GramQ(Q)

        def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
            ya = a * ys
            return X.T @ ya, float(ya.sum())

    else:
        if n <= d:
            lam, U = np.linalg.eigh(X @ X.T)
            lam, U = lam[::-1], U[:, ::-1]
            keep = lam > rtol * max(lam[0], 1e-300)
            if rank > 0:
                keep[rank:] = False
            sq = np.sqrt(lam[keep])
            Z = U[:, keep] * sq
            V = X.T @ (U[:, keep] / sq)  # (d, r) orthonormal directions
        else:
            lam, V = np.linalg.eigh(X.T @ X)
            lam, V = lam[::-1], V[:, ::-1]
            keep = lam > rtol * max(lam[0], 1e-300)
            if rank > 0:
                keep[rank:] = False
            V = V[:, keep]
            Z = X @ V
        A = np.hstack([Z, np.ones((n, 1))]) * ys[:, None]
        op = _GramQ(A @ A.T) if n <= gram_max else _FactorQ(A)

        def to_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
            u = A.T @ a
            return V @ u[:-1], float(u[-1])

    order = np.argsort(c_grid, kind="stable")
    fits: dict[int, HingeFit] = {}
    alpha = None
    prev_C = None
    saturated: HingeFit | None = None
    for k in order:
        C = c_grid[k]
        if saturated is not None:
            # the upper bound was inactive at a smaller C: same solution for every larger C
            w, b = saturated.coef, saturated.intercept
            fits[k] = HingeFit(C, w, b, 0, saturated.converged, hinge_objective(w, b, X, ys, C))
            continue
        if alpha is None:
            alpha = np.full(n, C)
        else:
            alpha = np.where(alpha >= prev_C * (1 - 1e-12), C, alpha)
        alpha, it, ok = _solve_dual(op, C, alpha, tol, max_iter)
        if not ok:
            log.debug("dual did not reach tol %.1e at C=%g in %d iterations", tol, C, it)
        w, b = to_weights(alpha)
        fit = HingeFit(C, w, b, it, ok, hinge_objective(w, b, X, ys, C))
        fits[k] = fit
        if ok and np.all(alpha < C * (1 - 1e-9)):
            saturated = fit
        prev_C = C
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
        if self.coef_ is None:
            raise ValueError("call solve() first")
        Xs = (np.asarray(X, dtype=np.float64) - self.mx) / self.sx
        return (Xs @ self.coef_) * self.sy + self.my
