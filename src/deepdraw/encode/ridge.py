"""Cross-validated PCA + ridge regression for all neurons at once, from per-fold sufficient statistics.

:func:`cv_explained_variance` (the successor study's protocol, Marin Vargas, Bisi et al. 2024):

1. outer folds ``f = 0..K-1`` (given per row: contiguous blocks of frames, never single frames);
2. for each outer fold, the PCA of the features is fitted on the training folds only (mean and the
   top ``n_components`` eigenvectors of their scatter matrix, from per-fold Gram matrices ``XᵀX``);
3. every row is projected, ``Z = (X - mean) V``; per fold ``g`` the statistics ``ZᵀZ``, ``ΣZ``,
   ``ZᵀY``, ``ΣY``, ``ΣY²`` are formed once;
4. inner cross-validation over the other training folds (each in turn the validation fold) chooses
   one penalty per neuron from ``alphas`` (relative to the mean eigenvalue of the training scatter);
   the validation error of every penalty and every neuron follows from the statistics in closed form;
5. the ridge fit (with intercept) on all training folds with each neuron's penalty predicts the
   outer test fold; its squared error is again a closed form of the statistics.

Explained variance per neuron: ``1 - Σ_folds SSE / Σ (y - ȳ)²`` over all rows (pooled over folds;
``ȳ`` the mean over all rows). No per-neuron loop: every step is a matrix product over all neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DeepDrawError


@dataclass
class Stats:
    """Sufficient statistics of a set of rows in the PCA space: n, ΣZ (k,), ZᵀZ (k,k), ZᵀY (k,N),
    ΣY (N,), ΣY² (N,)."""

    n: float
    sz: np.ndarray
    zz: np.ndarray
    zy: np.ndarray
    sy: np.ndarray
    yy: np.ndarray

    def __add__(self, o: Stats) -> Stats:
        return Stats(
            self.n + o.n, self.sz + o.sz, self.zz + o.zz, self.zy + o.zy, self.sy + o.sy, self.yy + o.yy
        )


def _sum(stats: list[Stats]) -> Stats:
    out = stats[0]
    for s in stats[1:]:
        out = out + s
    return out


def ridge_paths(tr: Stats, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition of the centred training scatter: (Q (k,k), eigenvalues (k,), Qᵀ centred ZᵀY)."""
    zz = tr.zz - np.outer(tr.sz, tr.sz) / tr.n
    zy = tr.zy - np.outer(tr.sz, tr.sy) / tr.n
    lam, q = np.linalg.eigh(zz)
    return q, np.maximum(lam, 0.0), q.T @ zy


def coefficients(tr: Stats, q: np.ndarray, lam: np.ndarray, qzy: np.ndarray, alpha: np.ndarray):
    """Ridge weights (k, N) and intercepts (N,) with penalty ``alpha`` (N,) per neuron (absolute)."""
    b = q @ (qzy / (lam[:, None] + alpha[None, :]))
    icpt = (tr.sy - tr.sz @ b) / tr.n
    return b, icpt


def sse(v: Stats, b: np.ndarray, icpt: np.ndarray) -> np.ndarray:
    """Squared error per neuron of ``icpt + Z b`` on the rows of ``v``: Σ (y - i - zᵀb)²."""
    zb = v.sz @ b
    return (
        v.yy - 2 * icpt * v.sy - 2 * np.einsum("kn,kn->n", b, v.zy) + v.n * icpt**2 + 2 * icpt * zb
        + np.einsum("kn,kn->n", b, v.zz @ b)
    )  # fmt: skip


def fold_stats(z: np.ndarray, y: np.ndarray, fold: np.ndarray, K: int) -> list[Stats]:
    out = []
    for g in range(K):
        m = fold == g
        zg, yg = z[m], y[m]
        out.append(Stats(float(m.sum()), zg.sum(0), zg.T @ zg, zg.T @ yg, yg.sum(0), (yg * yg).sum(0)))
    return out


def pca_basis(gram: list[np.ndarray], sx: list[np.ndarray], n: list[float], train: list[int], k: int):
    """Mean (D,) and top-``k`` eigenvectors (D, k) of the training folds' features."""
    nt = sum(n[g] for g in train)
    mu = sum(sx[g] for g in train) / nt
    c = sum(gram[g] for g in train) - nt * np.outer(mu, mu)
    lam, v = np.linalg.eigh(c)
    return mu, v[:, ::-1][:, :k]


def project_stats(gram, sx, xy, ys: list[Stats], mu: np.ndarray, v: np.ndarray) -> list[Stats]:
    """The fold statistics in the PCA space from those of the features: with ``Z = (X - mu) V``,
    ``ZᵀZ = Vᵀ(XᵀX - sx muᵀ - mu sxᵀ + n mu muᵀ)V``, ``ΣZ = Vᵀ(sx - n mu)``, ``ZᵀY = Vᵀ(XᵀY - mu ΣYᵀ)``."""
    out = []
    for g, y in enumerate(ys):
        c = sx[g] - y.n * mu
        zz = v.T @ (gram[g] - np.outer(sx[g], mu) - np.outer(mu, c)) @ v
        out.append(Stats(y.n, v.T @ c, zz, v.T @ (xy[g] - np.outer(mu, y.sy)), y.sy, y.yy))
    return out


def cv_explained_variance(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, n_components: int, alphas: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(ev (N,), chosen relative penalty per neuron and outer fold (K, N))``; module docstring.

    The fold statistics in the PCA space come from ``XᵀY`` per fold (one product, projected per outer
    fold) when the layer is narrow (``D <= K * n_components``), else from the projected rows ``Z``
    (one product per outer fold): the same numbers, the cheaper way.
    """
    fold = np.asarray(fold)
    K = int(fold.max()) + 1
    if K < 3:
        raise DeepDrawError(f"predict: {K} folds; expected at least 3 (outer test fold + inner validation)")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rel = np.asarray(alphas, dtype=np.float64)
    rows = [np.flatnonzero(fold == g) for g in range(K)]
    gram = [x[r].T @ x[r] for r in rows]
    sx = [x[r].sum(0) for r in rows]
    n = [float(len(r)) for r in rows]
    narrow = x.shape[1] <= K * n_components
    xy = [x[r].T @ y[r] for r in rows] if narrow else None
    none = np.zeros(0)  # the feature parts of the target-only statistics (project_stats fills them)
    ys = [Stats(n[g], none, none, none, y[r].sum(0), (y[r] ** 2).sum(0)) for g, r in enumerate(rows)]
    total = np.zeros(y.shape[1])
    chosen = np.zeros((K, y.shape[1]))
    for f in range(K):
        train = [g for g in range(K) if g != f]
        k = max(1, min(n_components, x.shape[1], int(sum(n[g] for g in train)) - 1))
        mu, v = pca_basis(gram, sx, n, train, k)
        st = project_stats(gram, sx, xy, ys, mu, v) if narrow else fold_stats((x - mu) @ v, y, fold, K)
        tr = _sum([st[g] for g in train])
        q, lam, qzy = ridge_paths(tr, rel)
        scale = max(lam.mean(), 1e-12)
        err = np.zeros((len(rel), y.shape[1]))
        for h in train:  # inner CV: each other training fold validates once
            inner = _sum([st[g] for g in train if g != h])
            qi, li, qzyi = ridge_paths(inner, rel)
            for a, r in enumerate(rel):
                b, i0 = coefficients(inner, qi, li, qzyi, np.full(y.shape[1], r * scale))
                err[a] += sse(st[h], b, i0)
        best = rel[np.argmin(err, axis=0)]
        chosen[f] = best
        b, i0 = coefficients(tr, q, lam, qzy, best * scale)
        total += sse(st[f], b, i0)
    sst = (y * y).sum(0) - y.sum(0) ** 2 / len(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = np.where(sst > 0, 1.0 - total / sst, np.nan)
    return ev, chosen


def block_folds(movement: np.ndarray, frame: np.ndarray, block: int, K: int, seed: int) -> np.ndarray:
    """Fold (0..K-1) of each row: rows in blocks of ``block`` frames of one movement, blocks dealt to
    folds in a seeded random order (equal counts of blocks per fold, up to one)."""
    key = movement.astype(np.int64) * (1 << 32) + frame.astype(np.int64) // max(block, 1)
    uniq, inv = np.unique(key, return_inverse=True)
    if len(uniq) < K:
        raise DeepDrawError(
            f"predict: {len(uniq)} blocks of predict.block_frames = {block} frames; expected at least "
            f"predict.folds = {K} (lower either)"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    f = np.empty(len(uniq), dtype=np.int64)
    f[rng.permutation(len(uniq))] = np.arange(len(uniq)) % K
    return f[inv]
