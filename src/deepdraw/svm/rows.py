"""Reading a PCRT file's rows for the SVM stage: rows by index, labels, latents, checked input keys."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ..contracts import N_CLASSES
from ..errors import DeepDrawError
from ..store import iter_chunks

__all__ = ["check_input", "read_labels", "read_latents", "read_rows", "require_finite"]


def read_rows(dset: h5py.Dataset, rows: np.ndarray, block: int = 1024) -> np.ndarray:
    """``dset[rows]`` for sorted unique ``rows``, read in blocks.

    Dense runs of rows are read as one slice (then subset in memory); sparse ones by h5py point
    selection, so a pair's two classes are read without loading the other 18.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, *dset.shape[1:]), dtype=dset.dtype)
    for sl in iter_chunks(rows.size, block):
        r = rows[sl]
        lo, hi = int(r[0]), int(r[-1]) + 1
        if hi - lo <= 4 * r.size:
            out[sl] = dset[lo:hi][r - lo]
        else:
            out[sl] = dset[r]
    return out


def read_latents(f: h5py.File, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    n = f["label"].shape[0]
    for k in keys:
        if k not in f:
            raise DeepDrawError(
                f"{path}: key '{k}' is missing; expected a latent dataset of shape ({n},) to select the "
                f"suppressed subsets of svm.subsets"
            )
        a = f[k][()]
        if a.shape != (n,):
            raise DeepDrawError(f"{path}: key '{k}' has shape {a.shape}; expected ({n},) like 'label'")
        out[k] = a
    return out


def check_input(f: h5py.File, path: Path, key: str, n: int, why: str) -> tuple[int, ...]:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DeepDrawError(f"{path}: key '{key}' is missing; expected a dataset of shape ({n}, ...) ({why})")
    shape = f[key].shape
    if len(shape) < 2 or shape[0] != n:
        raise DeepDrawError(f"{path}: key '{key}' has shape {shape}; expected ({n}, ...) like 'label'")
    if f[key].dtype.kind not in "fiu":
        raise DeepDrawError(f"{path}: key '{key}' has dtype {f[key].dtype}; expected numbers")
    return tuple(shape[1:])


def read_labels(f: h5py.File, path: Path) -> np.ndarray:
    if "label" not in f:
        raise DeepDrawError(f"{path}: key 'label' is missing; expected integer class labels 0..19")
    y = f["label"][()]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DeepDrawError(
            f"{path}: key 'label' has shape {y.shape} and dtype {y.dtype}; expected (n,) integers"
        )
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DeepDrawError(
            f"{path}: key 'label' holds values {int(y.min())}..{int(y.max())}; expected 0..{N_CLASSES - 1}"
        )
    return y.astype(np.int64)


def require_finite(X: np.ndarray, path: Path, key: str, rows: np.ndarray) -> None:
    """Raise naming the first sample (file row ``rows[i]`` of ``X[i]``) that holds NaN/inf."""
    bad = ~np.isfinite(X)
    if bad.any():
        r = int(rows[int(np.argwhere(bad)[0][0])])
        raise DeepDrawError(f"{path}: key '{key}' holds NaN/inf in sample {r}; expected finite values")
