"""The pairwise SVM jobs: one pair's fit (a Dask task) and the test decisions of every chosen pair model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..contracts import KIND_PCRT, LETTERS
from ..errors import DeepDrawError
from ..store import iter_chunks, open_artifact
from .hinge import fit_pair, split_train_val
from .rows import read_rows, require_finite
from .subsets import SubsetFit

__all__ = ["PairTask", "fit_pair_task", "pair_decisions"]


@dataclass(frozen=True)
class PairTask:
    """Everything one pair's fit needs (picklable)."""

    path: str
    key: str
    subset: str
    pair: tuple[int, int]  # (i, j), i < j; j is the positive class
    rows: np.ndarray  # sorted file rows of the pair inside the subset (and max_train)
    positive: np.ndarray  # bool per row: label == j
    c_grid: tuple[float, ...]
    val_fraction: float
    rank: int
    tol: float
    max_iter: int


def fit_pair_task(task: PairTask) -> dict[str, Any]:
    """Read one pair's rows of one input, fit its C path, return the scores and the chosen model."""
    t0 = time.perf_counter()
    i, j = task.pair
    where = f"{task.path}: key '{task.key}', pair {LETTERS[i]}/{LETTERS[j]}, subset '{task.subset}'"
    try:
        with h5py.File(task.path, "r") as f:
            X = read_rows(f[task.key], task.rows)
    except OSError as e:
        raise DeepDrawError(f"{where}: rows cannot be read (truncated or corrupt file?): {e}") from None
    X = X.reshape(X.shape[0], -1)
    bad = ~np.isfinite(X)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise DeepDrawError(f"{where}: sample {int(task.rows[r])} holds NaN/inf; expected finite values")
    y = np.where(task.positive, 1.0, -1.0)
    n_tr = split_train_val(y.size, task.val_fraction) if y.size >= 2 else 0
    if n_tr == 0 or np.unique(y[:n_tr]).size < 2:
        # too few samples of one class in this subset: the pair gets no model and casts no vote
        return {
            "skipped": f"pair {LETTERS[i]}/{LETTERS[j]} of subset '{task.subset}' has "
            f"{int(task.positive[:n_tr].sum())}/{int((~task.positive[:n_tr]).sum())} "
            f"training samples of {LETTERS[j]}/{LETTERS[i]}"
        }
    fit = fit_pair(X, y, task.c_grid, task.val_fraction, rank=task.rank, tol=task.tol, max_iter=task.max_iter)
    return {
        "val_acc": fit.val_acc,
        "train_acc": fit.train_acc,
        "n_iter": fit.n_iter,
        "converged": fit.converged,
        "best": fit.best,
        "coef": fit.coef,
        "intercept": fit.intercept,
        "n_train": fit.n_train,
        "n_val": fit.n_val,
        "seconds": time.perf_counter() - t0,
    }


def pair_decisions(
    test_path: Path,
    key: str,
    sub_info: list[SubsetFit],
    W: np.ndarray,
    B: np.ndarray,
    pair_index: dict[tuple[int, int], int],
    chunk: int,
    quiet: bool,
) -> list[np.ndarray]:
    """Decision values ``(n_test_in_subset, n_pairs_total)`` of every subset's chosen models.

    The test file is read once, in chunks of ``chunk`` samples; every subset takes its rows.
    """
    from tqdm.auto import tqdm

    masks = [info["test_mask"] for info in sub_info]
    need = np.logical_or.reduce(masks)
    out = [np.zeros((int(m.sum()), W.shape[1])) for m in masks]
    pos = [np.cumsum(m) - 1 for m in masks]  # row -> position in the subset's output
    with open_artifact(test_path, kind=KIND_PCRT) as f:
        ds = f[key]
        n = ds.shape[0]
        for sl in tqdm(
            list(iter_chunks(n, max(1, chunk))), desc=f"svm test {key}", disable=quiet, leave=False
        ):
            if not need[sl].any():
                continue
            X = ds[sl].reshape(sl.stop - sl.start, -1).astype(np.float64)
            require_finite(X, test_path, key, np.arange(sl.start, sl.stop))
            for si, info in enumerate(sub_info):
                m = masks[si][sl]
                if not m.any():
                    continue
                pks = [pair_index[p] for p in info["pairs"]]
                rows = np.flatnonzero(m)
                dst = pos[si][sl][rows]
                out[si][np.ix_(dst, pks)] = X[rows] @ W[si, pks].T + B[si, pks]
    return out
