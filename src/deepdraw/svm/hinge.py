"""Linear hinge-loss SVMs along a C path (:func:`fit_hinge_path`) and one pair's fit (:func:`fit_pair`).

The pair solver minimises exactly the objective of ``sklearn.svm.LinearSVC(loss="hinge")``
(liblinear's L2-regularised L1-loss SVM; the intercept is an extra constant feature of value 1 and
is regularised like the weights)::

    P(w, b) = 1/2 (|w|^2 + b^2) + C * sum_i max(0, 1 - y_i (w . x_i + b)),   y_i in {-1, +1}

through its dual, a box-constrained quadratic program (its matrix: :mod:`deepdraw.svm.dual`; its
solvers: :mod:`deepdraw.svm.dual_solver`). It differs from liblinear only in *how* the optimum is
found (``docs/svm.md``); here, the C grid is walked upwards, each C starting from the previous C's
split; once no ``a_i`` sits at its upper bound, the solution is the same for every larger C (the
bound is inactive), so those fits are copied instead of solved.

Accuracy: every fit reports its duality gap: the objective of its weights minus the best dual
value found (>= 0, zero at the optimum). After the solver's fallback, the weights are the primal
point with the lowest objective seen and the dual value the highest seen, tracked apart.

One pair (:func:`fit_pair`): the C path is fitted on the leading rows (file order) and C is chosen
on the rest (:func:`split_train_val`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dual import dual_operator
from .dual_solver import DualSolution, solve_dual

log = logging.getLogger("deepdraw.svm.solver")  # the solver's logger name, as before the split

__all__ = ["HingeFit", "PairFit", "fit_hinge_path", "fit_pair", "hinge_objective", "split_train_val"]


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
    gap: float  # duality gap (>= 0); objective - gap is a lower bound of the optimum (with rank > 0:
    #             of the problem projected on the top directions)

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
    op, to_weights, from_factor = dual_operator(X, ys, rank, rtol, gram_max)
    order = np.argsort(c_grid, kind="stable")
    prev_C = c_grid[order[0]]
    fits: dict[int, HingeFit] = {}
    alpha: np.ndarray | None = None
    partition: tuple[np.ndarray, np.ndarray] | None = None
    saturated: DualSolution | None = None
    for k in order:
        C = c_grid[k]
        if saturated is not None:
            # no a_i reached its bound at a smaller C: the same point is optimal for every larger C
            # (D does not depend on C; the objective and so the gap are evaluated at this C below)
            sol = saturated._replace(iterations=0)
        else:
            if alpha is None:
                alpha = np.full(n, C)
                partition = (np.ones(n, bool), np.zeros(n, bool))
            else:
                partition = (alpha >= prev_C * (1 - 1e-12), alpha <= 0)
                alpha = np.where(partition[0], C, alpha)
            sol = solve_dual(op, C, alpha, partition, tol, max_iter)
            alpha = sol.alpha
        prev_C = C
        w, b = to_weights(sol.point) if sol.point_is_dual else from_factor(sol.point)
        objective = hinge_objective(w, b, X, ys, C)
        gap = max(objective - sol.dual, 0.0)  # weak duality: bounds objective - optimum
        ok = sol.ok or gap <= gap_tol * max(objective, 1e-300)
        if saturated is None and ok and sol.point is sol.alpha and np.all(alpha < C * (1 - 1e-9)):
            saturated = sol  # copies count as converged by its KKT test (C-free) or their own gap
        if not ok:
            log.debug(
                "dual not solved to tol %.1e at C=%g (relative gap %.2e)",
                tol,
                C,
                gap / max(objective, 1e-300),
            )
        fits[k] = HingeFit(C, w, b, sol.iterations, ok, objective, gap)
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
