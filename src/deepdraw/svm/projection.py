"""The shared projection of ``svm.project``: one basis per input for all pairs (paper-scale inputs).

:func:`shared_basis` finds the top singular directions of a seeded sample of the training rows;
:func:`project_rows` writes the rows projected on them to a work file the pair fits read.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..store import atomic_path, iter_chunks
from .rows import read_rows, require_finite

__all__ = ["project_rows", "shared_basis"]


def shared_basis(
    path: Path, key: str, n_use: int, k: int, sample: int, seed: int
) -> tuple[np.ndarray, float]:
    """Top-``k`` right singular vectors (uncentred) of a seeded sample of the first ``n_use`` rows.

    Returns ``(V, captured)``: ``V`` is ``(d, k)`` with orthonormal columns (float64) and
    ``captured`` the share of the sample's squared norm that ``V`` keeps (1.0 = nothing lost).
    A randomized SVD (Halko et al. 2011, scikit-learn's implementation) with 4 power iterations.
    """
    from sklearn.utils.extmath import randomized_svd

    rng = np.random.default_rng(seed)
    m = min(n_use, sample)
    rows = np.sort(rng.choice(n_use, size=m, replace=False))
    with h5py.File(path, "r") as f:
        Xs = read_rows(f[key], rows).reshape(m, -1).astype(np.float32, copy=False)
    require_finite(Xs, path, key, rows)
    _, sv, Vt = randomized_svd(Xs, n_components=k, n_iter=4, random_state=seed)
    V, _ = np.linalg.qr(Vt.T.astype(np.float64))
    total = float(np.einsum("ij,ij->", Xs, Xs, dtype=np.float64))
    captured = float(np.sum(sv.astype(np.float64) ** 2) / total) if total > 0 else 1.0
    return V, captured


def project_rows(path: Path, key: str, n_use: int, V: np.ndarray, dst: Path, chunk: int, quiet: bool) -> None:
    """Write ``X[:n_use] @ V`` of ``path[key]`` to ``dst[key]`` (``(n_use, k)`` float64), atomically."""
    from tqdm.auto import tqdm

    with atomic_path(dst) as tmp, h5py.File(path, "r") as f, h5py.File(tmp, "w") as g:
        ds = f[key]
        out = g.create_dataset(key, shape=(n_use, V.shape[1]), dtype=np.float64)
        for sl in tqdm(
            list(iter_chunks(n_use, chunk)), desc=f"svm project {key}", disable=quiet, leave=False
        ):
            X = ds[sl].reshape(sl.stop - sl.start, -1).astype(np.float64)
            require_finite(X, path, key, np.arange(sl.start, sl.stop))
            out[sl] = X @ V
