"""The SVM stage: pairwise / one-vs-one linear SVMs and the linear TDT decoding baseline (spec 2).

:func:`run_svm` reads ``pcrt_train.h5`` / ``pcrt_test.h5`` and, for every input of ``svm.inputs``
and every subset of ``svm.subsets``:

1. fits a hinge-loss linear SVM for each of the 190 character pairs over the C grid, C chosen on the
   last 10 % (file order) of the pair's training rows (one Dask task per pair, reading only that
   pair's rows of that input);
2. votes one-vs-one on the test file (for an augmentation-suppressed subset: on the test samples with
   the same latent values), ties broken by the summed confidences as scikit-learn does;
3. writes a tidy CSV per pair and C, a multi-class table, ``svm_results.h5`` (kind ``"svm"``) and two
   figures (Fig. 3B-like pairwise matrix, Fig. 3C-like multi-class accuracy).

It also fits the linear decoding baseline of the trajectory-decoding task: hand position
(``endeffector_coords``, cm) per frame from the proprioceptive inputs (``spindle_info``) at that frame,
both standard-scaled, by least squares (streaming normal equations), and reports the mean 3-D error
over the test frames. See ``docs/svm.md``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import LETTERS
from ..config import PLANES, Config
from ..errors import DeepDrawError
from ..parallel import executor
from ..store import ArtifactWriter, Field, file_sha256, iter_chunks, open_artifact
from .solver import LinearDecoder, fit_pair, ovo_pairs, ovo_predict, split_train_val

log = logging.getLogger(__name__)

__all__ = [
    "ALL_SUBSETS",
    "LATENTS",
    "SVM_SCHEMA",
    "Subset",
    "parse_subsets",
    "read_rows",
    "run_svm",
    "select_subset",
]

N_CLASSES = len(LETTERS)
N_FRAMES = 320

LATENTS: dict[str, type] = {
    "plane": str,
    "size": float,
    "speed": float,
    "rot": float,
    "shear_x": float,
    "shear_y": float,
}
"""Latent keys of a PCRT file a subset may fix, and their value types."""

SIZES = (0.7, 1.0, 1.3)
SPEEDS = (0.8, 1.0, 1.2, 1.4)

ALL_SUBSETS: tuple[str, ...] = (
    "full",
    *(f"plane={p}" for p in PLANES),
    *(f"size={s}" for s in SIZES),
    *(f"speed={s}" for s in SPEEDS),
    *(f"size={s},plane={p}" for s in SIZES for p in PLANES),
)
"""``svm.subsets = ["all"]``: full variability and the original's 15 augmentation-suppressed subsets
(svm_horizontal/vertical, svm_size1-3, svm_speed1-4, svm_sp1-6), in the original's order."""

SVM_SCHEMA = {
    "inputs": Field(("i",), "S", doc="input keys"),
    "subsets": Field(("s",), "S", doc="subset names"),
    "c_grid": Field(("c",), "f", doc="C values"),
    "pair_i": Field(("p",), "iu", doc="first class of each pair (negative class)"),
    "pair_j": Field(("p",), "iu", doc="second class of each pair (positive class)"),
    "val_acc": Field(("i", "s", "p", "c"), "f", doc="validation accuracy per C (NaN: pair not fitted)"),
    "train_acc": Field(("i", "s", "p", "c"), "f"),
    "converged": Field(("i", "s", "p", "c"), "b"),
    "n_iter": Field(("i", "s", "p", "c"), "iu"),
    "best_c": Field(("i", "s", "p"), "f", doc="C of the chosen model"),
    "pair_test_acc": Field(("i", "s", "p"), "f", doc="binary test accuracy of the chosen model"),
    "n_train": Field(("i", "s", "p"), "iu"),
    "n_val": Field(("i", "s", "p"), "iu"),
    "val_acc_matrix": Field(("i", "s", N_CLASSES, N_CLASSES), "f", doc="best validation accuracy"),
    "test_acc_matrix": Field(("i", "s", N_CLASSES, N_CLASSES), "f"),
    "multiclass_acc": Field(("i", "s"), "f", doc="one-vs-one test accuracy"),
    "confusion": Field(("i", "s", N_CLASSES, N_CLASSES), "iu", doc="rows: true, columns: predicted"),
    "n_test": Field(("s",), "iu", doc="test samples per subset"),
}
"""Datasets of ``svm_results.h5`` (kind ``"svm"``); see ``docs/svm.md`` for the optional ones."""


# ----------------------------------------------------------------------------------------------------
# Subsets ("full" and augmentation-suppressed)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subset:
    """Samples whose latents equal the given values (``conds`` empty: every sample)."""

    name: str
    conds: tuple[tuple[str, Any], ...] = ()

    @property
    def suppressed_var(self) -> str:
        return "+".join(k for k, _ in self.conds) if self.conds else "none"

    @property
    def suppressed_val(self) -> str:
        return ",".join(_fmt_value(v) for _, v in self.conds) if self.conds else ""

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.conds]


def _fmt_value(v: Any) -> str:
    return v if isinstance(v, str) else repr(float(v))


def parse_subsets(specs: Sequence[str], where: str = "svm.subsets") -> list[Subset]:
    """Parse ``svm.subsets`` entries: ``"full"``, ``"all"`` or ``"key=value[,key=value...]"``.

    Names are canonical (``size=1`` becomes ``size=1.0``); duplicates are dropped.
    """
    out: dict[str, Subset] = {}
    for spec in specs:
        spec = str(spec).strip()
        if spec == "all":
            for s in parse_subsets(ALL_SUBSETS, where):
                out.setdefault(s.name, s)
            continue
        if spec == "full":
            out.setdefault("full", Subset("full"))
            continue
        conds: list[tuple[str, Any]] = []
        for part in spec.split(","):
            key, sep, raw = part.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise DeepDrawError(
                    f"{where}: entry '{spec}' is not understood; expected 'full', 'all' or "
                    f"'latent=value[,latent=value]' (e.g. 'size=0.7,plane=vertical')"
                )
            if key not in LATENTS:
                raise DeepDrawError(
                    f"{where}: entry '{spec}' names the unknown latent '{key}'; expected one of "
                    f"{', '.join(LATENTS)}"
                )
            if any(k == key for k, _ in conds):
                raise DeepDrawError(f"{where}: entry '{spec}' fixes '{key}' twice; expected each latent once")
            if LATENTS[key] is str:
                if key == "plane" and raw not in PLANES:
                    raise DeepDrawError(
                        f"{where}: entry '{spec}' has plane '{raw}'; expected one of {', '.join(PLANES)}"
                    )
                conds.append((key, raw))
            else:
                try:
                    val = float(raw)
                except ValueError:
                    raise DeepDrawError(
                        f"{where}: entry '{spec}' has {key}='{raw}'; expected a number"
                    ) from None
                conds.append((key, val))
        name = ",".join(f"{k}={_fmt_value(v)}" for k, v in conds)
        out.setdefault(name, Subset(name, tuple(conds)))
    if not out:
        raise DeepDrawError(f"{where}: no subset given; expected 'full', 'all' or 'latent=value' entries")
    return list(out.values())


def select_subset(latents: dict[str, np.ndarray], subset: Subset) -> np.ndarray:
    """Boolean mask of the samples whose latents equal the subset's values exactly.

    Float latents are compared in the file's own dtype (``0.7`` is cast to float32 first for a
    float32 column), so a value stored as written is matched exactly. ``plane`` may be bytes or str.
    """
    n = len(next(iter(latents.values()))) if latents else 0
    mask = np.ones(n, dtype=bool)
    for key, val in subset.conds:
        arr = latents[key]
        if LATENTS[key] is str:
            if arr.dtype.kind == "S":
                mask &= arr == val.encode()
            else:
                mask &= arr.astype(str) == val
        else:
            mask &= arr == np.asarray(val, dtype=arr.dtype)
    return mask


# ----------------------------------------------------------------------------------------------------
# Reading rows from HDF5
# ----------------------------------------------------------------------------------------------------


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


def _read_latents(f: h5py.File, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
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


def _check_input(f: h5py.File, path: Path, key: str, n: int, why: str) -> tuple[int, ...]:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DeepDrawError(f"{path}: key '{key}' is missing; expected a dataset of shape ({n}, ...) ({why})")
    shape = f[key].shape
    if len(shape) < 2 or shape[0] != n:
        raise DeepDrawError(f"{path}: key '{key}' has shape {shape}; expected ({n}, ...) like 'label'")
    if f[key].dtype.kind not in "fiu":
        raise DeepDrawError(f"{path}: key '{key}' has dtype {f[key].dtype}; expected numbers")
    return tuple(shape[1:])


def _read_labels(f: h5py.File, path: Path) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------
# One pair (a Dask task)
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------


def check_svm_section(cfg: Config) -> None:
    """Checks of ``[svm]`` (run by :func:`deepdraw.config.load_config`)."""
    s = cfg.svm
    if not s.c_grid:
        raise DeepDrawError("key 'svm.c_grid' is empty; expected at least one C value")
    for c in s.c_grid:
        if not (math.isfinite(c) and c > 0):
            raise DeepDrawError(f"key 'svm.c_grid' holds {c}; expected positive finite C values")
    if not s.inputs:
        raise DeepDrawError("key 'svm.inputs' is empty; expected at least one input key")
    if len(set(s.inputs)) != len(s.inputs):
        raise DeepDrawError(f"key 'svm.inputs' lists a key twice ({s.inputs}); expected each once")
    if not 0 < s.val_fraction < 1:
        raise DeepDrawError(f"key 'svm.val_fraction' is {s.val_fraction}; expected 0 < x < 1")
    if s.max_train < 0:
        raise DeepDrawError(f"key 'svm.max_train' is {s.max_train}; expected 0 (all) or a positive count")
    if s.rank < 0:
        raise DeepDrawError(f"key 'svm.rank' is {s.rank}; expected 0 (exact) or a positive count")
    if s.project < 0:
        raise DeepDrawError(
            f"key 'svm.project' is {s.project}; expected 0 (every feature) or a positive count"
        )
    if s.project and s.project_sample < s.project:
        raise DeepDrawError(
            f"key 'svm.project_sample' is {s.project_sample}; expected at least svm.project "
            f"({s.project}) rows"
        )
    if s.decode_window < 1 or s.decode_window % 2 == 0:
        raise DeepDrawError(f"key 'svm.decode_window' is {s.decode_window}; expected an odd count >= 1")
    for key in ("project_sample", "max_iter", "read_chunk"):
        if getattr(s, key) < 1:
            raise DeepDrawError(f"key 'svm.{key}' is {getattr(s, key)}; expected a positive integer")
    if not (math.isfinite(s.tol) and s.tol > 0):
        raise DeepDrawError(f"key 'svm.tol' is {s.tol}; expected a positive tolerance")
    parse_subsets(s.subsets)
    if s.decode_alpha < 0:
        raise DeepDrawError(f"key 'svm.decode_alpha' is {s.decode_alpha}; expected >= 0")


def _input_hashes(train: Path, test: Path) -> dict[str, str]:
    names = (train.name, test.name) if train.name != test.name else (str(train), str(test))
    return {names[0]: file_sha256(train), names[1]: file_sha256(test)}


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _require_finite(X: np.ndarray, path: Path, key: str, rows: np.ndarray) -> None:
    """Raise naming the first sample (file row ``rows[i]`` of ``X[i]``) that holds NaN/inf."""
    bad = ~np.isfinite(X)
    if bad.any():
        r = int(rows[int(np.argwhere(bad)[0][0])])
        raise DeepDrawError(f"{path}: key '{key}' holds NaN/inf in sample {r}; expected finite values")


# ----------------------------------------------------------------------------------------------------
# Shared projection (svm.project): one basis per input for all pairs, for paper-scale inputs
# ----------------------------------------------------------------------------------------------------


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
    _require_finite(Xs, path, key, rows)
    _, sv, Vt = randomized_svd(Xs, n_components=k, n_iter=4, random_state=seed)
    V, _ = np.linalg.qr(Vt.T.astype(np.float64))
    total = float(np.einsum("ij,ij->", Xs, Xs, dtype=np.float64))
    captured = float(np.sum(sv.astype(np.float64) ** 2) / total) if total > 0 else 1.0
    return V, captured


def project_rows(path: Path, key: str, n_use: int, V: np.ndarray, dst: Path, chunk: int, quiet: bool) -> None:
    """Write ``X[:n_use] @ V`` of ``path[key]`` to ``dst[key]`` (``(n_use, k)`` float64), atomically."""
    from tqdm.auto import tqdm

    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(path, "r") as f, h5py.File(tmp, "w") as g:
            ds = f[key]
            out = g.create_dataset(key, shape=(n_use, V.shape[1]), dtype=np.float64)
            for sl in tqdm(
                list(iter_chunks(n_use, chunk)), desc=f"svm project {key}", disable=quiet, leave=False
            ):
                X = ds[sl].reshape(sl.stop - sl.start, -1).astype(np.float64)
                _require_finite(X, path, key, np.arange(sl.start, sl.stop))
                out[sl] = X @ V
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def run_svm(
    cfg: Config,
    train_path: str | os.PathLike,
    test_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the SVM stage (see the module docstring); returns the summary numbers.

    Outputs in ``out_dir``: ``svm_pairs.csv``, ``svm_multiclass.csv``, ``svm_results.h5``,
    ``svm_pairwise_matrix.png``, ``svm_multiclass.png`` (and ``svm_tdt_linear.png`` when decoding).

    Returned keys (accuracies are fractions): ``pairwise_mean_acc_<input>`` /
    ``pairwise_std_acc_<input>`` (binary test accuracy of the chosen model, mean / SD over pairs),
    ``pairwise_mean_val_acc_<input>``, ``pairwise_frac_below_70_<input>``, ``multiclass_acc_<input>``
    (these on the "full" subset, or the first subset run), ``multiclass_acc_<input>_<subset>`` for the
    other subsets, ``tdt_linear_error_cm`` (mean 3-D test error of the linear decoder),
    ``tdt_linear_error_cm_train``, ``n_pairs``, ``seconds``, and the output paths (``*_path``).
    """
    import pandas as pd

    t_start = time.perf_counter()
    quiet = quiet or cfg.run.quiet
    check_svm_section(cfg)
    sc = cfg.svm
    subsets = parse_subsets(sc.subsets)
    train_path, test_path, out = Path(train_path), Path(test_path), Path(out_dir)
    paths = {
        "pairs_csv": out / "svm_pairs.csv",
        "multiclass_csv": out / "svm_multiclass.csv",
        "results_h5": out / "svm_results.h5",
        "pairwise_png": out / "svm_pairwise_matrix.png",
        "multiclass_png": out / "svm_multiclass.png",
    }
    if sc.decode:
        paths["tdt_png"] = out / "svm_tdt_linear.png"
    if not overwrite:
        for p in paths.values():
            if p.exists():
                raise DeepDrawError(
                    f"{p}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
                )
    inputs = list(sc.inputs)
    latent_keys = sorted({k for s in subsets for k in s.keys})

    # --- metadata of both files (small), and checks of every input key ---
    meta: dict[str, dict[str, Any]] = {}
    for role, path in (("train", train_path), ("test", test_path)):
        with open_artifact(path, kind="pcrt") as f:
            labels = _read_labels(f, path)
            n = labels.size
            if n == 0:
                raise DeepDrawError(f"{path}: key 'label' is empty; expected at least one sample")
            shapes = {k: _check_input(f, path, k, n, "listed in svm.inputs") for k in inputs}
            if sc.decode:
                shapes[sc.decode_input] = _check_input(
                    f, path, sc.decode_input, n, "svm.decode_input, TDT baseline"
                )
                shapes["endeffector_coords"] = _check_input(
                    f, path, "endeffector_coords", n, "hand position targets of the TDT baseline"
                )
            meta[role] = {"labels": labels, "latents": _read_latents(f, path, latent_keys), "shapes": shapes}
    for k in inputs:
        if meta["train"]["shapes"][k] != meta["test"]["shapes"][k]:
            raise DeepDrawError(
                f"{test_path}: key '{k}' has sample shape {meta['test']['shapes'][k]}; expected "
                f"{meta['train']['shapes'][k]} as in {train_path}"
            )
    n_train_file = meta["train"]["labels"].size
    n_use = min(n_train_file, sc.max_train) if sc.max_train else n_train_file
    y_tr = meta["train"]["labels"][:n_use]
    y_te = meta["test"]["labels"]
    lat_tr = {k: v[:n_use] for k, v in meta["train"]["latents"].items()}
    lat_te = meta["test"]["latents"]

    # --- subsets: masks, classes, pairs ---
    sub_info = []
    for s in subsets:
        m_tr = select_subset(lat_tr, s) if s.conds else np.ones(n_use, bool)
        m_te = select_subset(lat_te, s) if s.conds else np.ones(y_te.size, bool)
        if not m_tr.any():
            raise DeepDrawError(
                f"{train_path}: subset '{s.name}' selects no training sample; expected samples with "
                f"{s.name} among the first {n_use}"
            )
        classes = np.unique(y_tr[m_tr])
        if classes.size < 2:
            raise DeepDrawError(
                f"{train_path}: subset '{s.name}' holds training samples of one class only "
                f"({LETTERS[int(classes[0])]}); expected at least two classes"
            )
        if not m_te.any():
            log.warning(
                "%s: subset '%s' selects no test sample; its multi-class accuracy is NaN", test_path, s.name
            )
        pairs = [(int(classes[a]), int(classes[b])) for a, b in ovo_pairs(classes.size)]
        sub_info.append(
            {"subset": s, "train_mask": m_tr, "test_mask": m_te, "classes": classes, "pairs": pairs}
        )
    all_pairs = ovo_pairs(N_CLASSES)
    pair_index = {p: k for k, p in enumerate(all_pairs)}
    nI, nS, nP, nC = len(inputs), len(subsets), len(all_pairs), len(sc.c_grid)

    res = {
        "val_acc": np.full((nI, nS, nP, nC), np.nan),
        "train_acc": np.full((nI, nS, nP, nC), np.nan),
        "converged": np.zeros((nI, nS, nP, nC), bool),
        "n_iter": np.zeros((nI, nS, nP, nC), np.int64),
        "best_c": np.full((nI, nS, nP), np.nan),
        "pair_test_acc": np.full((nI, nS, nP), np.nan),
        "n_train": np.zeros((nI, nS, nP), np.int64),
        "n_val": np.zeros((nI, nS, nP), np.int64),
        "val_acc_matrix": np.full((nI, nS, N_CLASSES, N_CLASSES), np.nan),
        "test_acc_matrix": np.full((nI, nS, N_CLASSES, N_CLASSES), np.nan),
        "multiclass_acc": np.full((nI, nS), np.nan),
        "confusion": np.zeros((nI, nS, N_CLASSES, N_CLASSES), np.int64),
        "n_test": np.array([int(si["test_mask"].sum()) for si in sub_info], np.int64),
    }
    weights: dict[str, np.ndarray] = {}
    intercepts: dict[str, np.ndarray] = {}
    predictions: dict[str, np.ndarray] = {}
    solver_seconds = 0.0
    n_tasks = 0

    work = out / ".svm_work"
    projections: dict[str, dict[str, float]] = {}
    with executor(cfg.parallel, quiet=quiet) as ex:
        for ii, key in enumerate(inputs):
            d = int(np.prod(meta["train"]["shapes"][key]))
            pair_path, V = str(train_path), None
            if 0 < sc.project < d:
                t_proj = time.perf_counter()
                V, captured = shared_basis(
                    train_path, key, n_use, sc.project, sc.project_sample, cfg.run.seed
                )
                pair_path = str(work / f"{key}_proj.h5")
                project_rows(train_path, key, n_use, V, Path(pair_path), max(1024, sc.read_chunk), quiet)
                projections[key] = {
                    "dims": float(sc.project),
                    "captured": captured,
                    "seconds": time.perf_counter() - t_proj,
                }
                log.info(
                    "svm %s: pairs fitted in %d shared directions (%.4f of the squared norm of %d "
                    "sampled rows), found and applied in %.0f s",
                    key,
                    sc.project,
                    captured,
                    min(n_use, sc.project_sample),
                    projections[key]["seconds"],
                )
            tasks: list[PairTask] = []
            where: list[tuple[int, int]] = []
            for si, info in enumerate(sub_info):
                m = info["train_mask"]
                for i, j in info["pairs"]:
                    rows = np.flatnonzero(m & ((y_tr == i) | (y_tr == j)))
                    tasks.append(
                        PairTask(
                            pair_path,
                            key,
                            info["subset"].name,
                            (i, j),
                            rows,
                            y_tr[rows] == j,
                            tuple(float(c) for c in sc.c_grid),
                            sc.val_fraction,
                            sc.rank,
                            sc.tol,
                            sc.max_iter,
                        )
                    )
                    where.append((si, pair_index[(i, j)]))
            log.info("svm %s: %d pair fits over %d subset(s)", key, len(tasks), nS)
            try:
                results = ex.map(fit_pair_task, tasks, desc=f"svm pairs {key}")
            finally:
                if V is not None:  # the projected rows are a work file, also after a failure
                    Path(pair_path).unlink(missing_ok=True)
            n_tasks += len(tasks)
            W = np.zeros((nS, nP, d), np.float64)
            B = np.zeros((nS, nP), np.float64)
            skipped = [r["skipped"] for r in results if "skipped" in r]
            if skipped:
                log.warning(
                    "svm %s: %d pair(s) not fitted (e.g. %s); they cast no vote",
                    key,
                    len(skipped),
                    skipped[0],
                )
            fitted: list[set[int]] = [set() for _ in sub_info]
            for (si, pk), r in zip(where, results):
                if "skipped" in r:
                    continue
                fitted[si].add(pk)
                res["val_acc"][ii, si, pk] = r["val_acc"]
                res["train_acc"][ii, si, pk] = r["train_acc"]
                res["converged"][ii, si, pk] = r["converged"]
                res["n_iter"][ii, si, pk] = r["n_iter"]
                res["best_c"][ii, si, pk] = sc.c_grid[r["best"]]
                res["n_train"][ii, si, pk] = r["n_train"]
                res["n_val"][ii, si, pk] = r["n_val"]
                W[si, pk], B[si, pk] = (r["coef"] if V is None else V @ r["coef"]), r["intercept"]
                solver_seconds += r["seconds"]
                i, j = all_pairs[pk]
                acc = float(r["val_acc"][r["best"]])
                res["val_acc_matrix"][ii, si, i, j] = res["val_acc_matrix"][ii, si, j, i] = acc
            n_conv = res["converged"][ii].sum()
            n_fit = int(np.isfinite(res["val_acc"][ii]).sum())
            if n_conv < n_fit:
                log.warning(
                    "svm %s: %d of %d fits stopped before the solver tolerance", key, n_fit - n_conv, n_fit
                )
            # --- one pass over the test file: decisions of every chosen model ---
            dec = _test_decisions(test_path, key, sub_info, W, B, pair_index, sc.read_chunk, quiet)
            pred_all = np.full((nS, y_te.size), -1, np.int16)
            for si, info in enumerate(sub_info):
                rows = np.flatnonzero(info["test_mask"])
                if rows.size == 0:
                    continue
                yt = y_te[rows]
                cls = info["classes"]
                local_of = {int(c): a for a, c in enumerate(cls)}
                pks = [pair_index[p] for p in info["pairs"] if pair_index[p] in fitted[si]]
                local_pairs = [(local_of[all_pairs[pk][0]], local_of[all_pairs[pk][1]]) for pk in pks]
                local = ovo_predict(dec[si][:, pks], cls.size, local_pairs)
                pred = cls[local]
                pred_all[si, rows] = pred
                res["multiclass_acc"][ii, si] = float(np.mean(pred == yt))
                np.add.at(res["confusion"][ii, si], (yt, pred), 1)
                for pk in pks:
                    i, j = all_pairs[pk]
                    sel = (yt == i) | (yt == j)
                    if sel.any():
                        acc = float(np.mean((dec[si][sel, pk] > 0) == (yt[sel] == j)))
                        res["pair_test_acc"][ii, si, pk] = acc
                        res["test_acc_matrix"][ii, si, i, j] = res["test_acc_matrix"][ii, si, j, i] = acc
            predictions[key] = pred_all
            if sc.save_weights:
                weights[key] = W.astype(np.float32)
                intercepts[key] = B
            del W, dec
            log.info(
                "svm %s: multi-class accuracy %s",
                key,
                ", ".join(
                    f"{info['subset'].name} {res['multiclass_acc'][ii, si]:.3f}"
                    for si, info in enumerate(sub_info)
                ),
            )

    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()

    decode = _fit_decoder(cfg, train_path, test_path, n_use, quiet) if sc.decode else None

    # --- tables ---
    c_grid = np.asarray(sc.c_grid, dtype=np.float64)
    rows_pairs = []
    rows_multi = []
    for ii, key in enumerate(inputs):
        for si, info in enumerate(sub_info):
            s = info["subset"]
            for i, j in info["pairs"]:
                pk = pair_index[(i, j)]
                if not np.isfinite(res["val_acc"][ii, si, pk]).any():
                    continue  # not fitted (too few samples of a class in this subset)
                best_c = res["best_c"][ii, si, pk]
                for ci, C in enumerate(c_grid):
                    is_best = bool(C == best_c)
                    rows_pairs.append(
                        {
                            "input": key,
                            "subset": s.name,
                            "pair": f"{LETTERS[i]}-{LETTERS[j]}",
                            "class_i": i,
                            "class_j": j,
                            "C": C,
                            "val_acc": res["val_acc"][ii, si, pk, ci],
                            "train_acc": res["train_acc"][ii, si, pk, ci],
                            "best": is_best,
                            "test_acc": res["pair_test_acc"][ii, si, pk] if is_best else np.nan,
                            "n_train": res["n_train"][ii, si, pk],
                            "n_val": res["n_val"][ii, si, pk],
                            "n_iter": res["n_iter"][ii, si, pk, ci],
                            "converged": bool(res["converged"][ii, si, pk, ci]),
                        }
                    )
            pks = [
                pair_index[p]
                for p in info["pairs"]
                if np.isfinite(res["val_acc"][ii, si, pair_index[p]]).any()
            ]
            bv = np.max(res["val_acc"][ii, si, pks], axis=1) if pks else np.array([np.nan])
            bt = res["pair_test_acc"][ii, si, pks]
            rows_multi.append(
                {
                    "input": key,
                    "subset": s.name,
                    "suppressed_var": s.suppressed_var,
                    "suppressed_val": s.suppressed_val,
                    "n_classes": int(info["classes"].size),
                    "n_train": int(info["train_mask"].sum()),
                    "n_test": int(res["n_test"][si]),
                    "accuracy": res["multiclass_acc"][ii, si],
                    "pairwise_mean_val_acc": float(np.mean(bv)),
                    "pairwise_sd_val_acc": float(np.std(bv)),
                    "pairwise_mean_test_acc": float(np.nanmean(bt)) if np.isfinite(bt).any() else np.nan,
                    "pairwise_sd_test_acc": float(np.nanstd(bt)) if np.isfinite(bt).any() else np.nan,
                    "pairwise_frac_below_70": float(np.mean(bt[np.isfinite(bt)] < 0.7))
                    if np.isfinite(bt).any()
                    else np.nan,
                }
            )
    df_pairs = pd.DataFrame(rows_pairs)
    df_multi = pd.DataFrame(rows_multi)

    # --- outputs ---
    out.mkdir(parents=True, exist_ok=True)
    arrays = dict(res)
    arrays.update(
        {
            "inputs": np.array([k.encode() for k in inputs]),
            "subsets": np.array([s.name.encode() for s in subsets]),
            "c_grid": c_grid,
            "pair_i": np.array([p[0] for p in all_pairs], np.int64),
            "pair_j": np.array([p[1] for p in all_pairs], np.int64),
            "test_label": y_te.astype(np.int16),
        }
    )
    for key, v in predictions.items():
        arrays[f"predictions/{key}"] = v
    for key, v in weights.items():
        arrays[f"weights/{key}"] = v
        arrays[f"intercepts/{key}"] = intercepts[key]
    if decode is not None:
        for k, v in decode["arrays"].items():
            arrays[f"decode/{k}"] = v
    attrs = {
        "svm_convention": "pair (i, j), i < j: decision > 0 votes for j; OvO tie-break as sklearn",
        "n_train_used": n_use,
        "projections": json.dumps(projections),
    }
    with ArtifactWriter(
        paths["results_h5"],
        "svm",
        config=cfg.to_dict(),
        inputs=_input_hashes(train_path, test_path),
        attrs=attrs,
        overwrite=overwrite,
    ) as f:
        for k, v in arrays.items():
            v = np.asarray(v)
            f.create_dataset(
                k, data=v, compression="gzip" if v.size > 4096 and v.dtype.kind in "fiub" else None
            )
    _write_text_atomic(paths["pairs_csv"], df_pairs.to_csv(index=False))
    _write_text_atomic(paths["multiclass_csv"], df_multi.to_csv(index=False))
    main_si = next((si for si, info in enumerate(sub_info) if info["subset"].name == "full"), 0)
    pairwise_figure(
        paths["pairwise_png"], inputs, res["val_acc_matrix"][:, main_si], sub_info[main_si]["subset"].name
    )
    multiclass_figure(paths["multiclass_png"], df_multi)
    if decode is not None:
        tdt_figure(paths["tdt_png"], decode)

    # --- summary ---
    summary: dict[str, Any] = {}
    for key in inputs:
        for si, info in enumerate(sub_info):
            row = df_multi[(df_multi.input == key) & (df_multi.subset == info["subset"].name)].iloc[0]
            if si == main_si:
                summary[f"pairwise_mean_acc_{key}"] = row.pairwise_mean_test_acc
                summary[f"pairwise_std_acc_{key}"] = row.pairwise_sd_test_acc
                summary[f"pairwise_mean_val_acc_{key}"] = row.pairwise_mean_val_acc
                summary[f"pairwise_std_val_acc_{key}"] = row.pairwise_sd_val_acc
                summary[f"pairwise_frac_below_70_{key}"] = row.pairwise_frac_below_70
                summary[f"multiclass_acc_{key}"] = row.accuracy
            else:
                summary[f"multiclass_acc_{key}_{info['subset'].name}"] = row.accuracy
    if decode is not None:
        summary["tdt_linear_error_cm"] = decode["error_cm"]
        summary["tdt_linear_error_cm_train"] = decode["error_cm_train"]
    for key, pr in projections.items():
        summary[f"projection_captured_{key}"] = pr["captured"]
        summary[f"projection_seconds_{key}"] = pr["seconds"]
    summary["n_pairs"] = len(sub_info[main_si]["pairs"])
    summary["n_train_used"] = n_use
    summary["solver_seconds"] = solver_seconds
    summary["seconds"] = time.perf_counter() - t_start
    summary.update({f"{k}_path": str(p) for k, p in paths.items()})
    summary = {k: (float(v) if isinstance(v, np.floating | np.integer) else v) for k, v in summary.items()}
    log.info(
        "svm stage done in %.1f s (%d pair fits, %.1f s in the solver)",
        summary["seconds"],
        n_tasks,
        solver_seconds,
    )
    return summary


def _test_decisions(
    test_path: Path,
    key: str,
    sub_info: list[dict],
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
    with open_artifact(test_path, kind="pcrt") as f:
        ds = f[key]
        n = ds.shape[0]
        for sl in tqdm(
            list(iter_chunks(n, max(1, chunk))), desc=f"svm test {key}", disable=quiet, leave=False
        ):
            if not need[sl].any():
                continue
            X = ds[sl].reshape(sl.stop - sl.start, -1).astype(np.float64)
            _require_finite(X, test_path, key, np.arange(sl.start, sl.stop))
            for si, info in enumerate(sub_info):
                m = masks[si][sl]
                if not m.any():
                    continue
                pks = [pair_index[p] for p in info["pairs"]]
                rows = np.flatnonzero(m)
                dst = pos[si][sl][rows]
                out[si][np.ix_(dst, pks)] = X[rows] @ W[si, pks].T + B[si, pks]
    return out


# ----------------------------------------------------------------------------------------------------
# Linear decoding baseline (TDT)
# ----------------------------------------------------------------------------------------------------


def frame_features(x: np.ndarray, window: int = 1) -> np.ndarray:
    """Per-frame design rows from an input block.

    ``x`` is ``(m, D, T)`` or ``(m, D, T, ch)`` (e.g. spindle_info ``(m, 25, 320, 2)``). Returns
    ``(m * T, D * ch * window)``: for sample s and frame t, the values of all channels at frames
    ``t - window//2 .. t + window//2`` (clamped at the ends), frame-major.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    m, D, T, ch = x.shape
    per_frame = np.transpose(x, (0, 2, 1, 3)).reshape(m, T, D * ch)
    if window == 1:
        return per_frame.reshape(m * T, D * ch)
    h = window // 2
    idx = np.clip(np.arange(T)[:, None] + np.arange(-h, h + 1)[None, :], 0, T - 1)  # (T, window)
    return per_frame[:, idx, :].reshape(m * T, window * D * ch)


def _fit_decoder(cfg: Config, train_path: Path, test_path: Path, n_use: int, quiet: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    sc = cfg.svm
    key, win = sc.decode_input, sc.decode_window
    dec = LinearDecoder()
    chunk = max(1, sc.read_chunk)
    with open_artifact(train_path, kind="pcrt") as f:
        xs, ys = f[key], f["endeffector_coords"]
        for sl in tqdm(list(iter_chunks(n_use, chunk)), desc="tdt linear fit", disable=quiet, leave=False):
            X = frame_features(xs[sl], win)
            Y = np.transpose(ys[sl], (0, 2, 1)).reshape(-1, 3)
            if not (np.isfinite(X).all() and np.isfinite(Y).all()):
                raise DeepDrawError(
                    f"{train_path}: keys '{key}' / 'endeffector_coords' hold NaN/inf in samples "
                    f"{sl.start}..{sl.stop - 1}; expected finite values"
                )
            dec.partial_fit(X, Y)
        dec.solve(sc.decode_alpha)
        err_tr, n_tr = 0.0, 0
        for sl in iter_chunks(n_use, chunk):
            X = frame_features(xs[sl], win)
            Y = np.transpose(ys[sl], (0, 2, 1)).reshape(-1, 3)
            e = np.linalg.norm(dec.predict(X) - Y, axis=1)
            err_tr += float(e.sum())
            n_tr += e.size
    err_sum, sq_axis, n_te = 0.0, np.zeros(3), 0
    hist = np.zeros(60, np.int64)  # 0.1 cm bins up to 6 cm (last bin: beyond)
    per_frame = np.zeros(N_FRAMES)
    per_frame_n = 0
    with open_artifact(test_path, kind="pcrt") as f:
        xs, ys = f[key], f["endeffector_coords"]
        n = xs.shape[0]
        for sl in tqdm(list(iter_chunks(n, chunk)), desc="tdt linear test", disable=quiet, leave=False):
            X = frame_features(xs[sl], win)
            Y = np.transpose(ys[sl], (0, 2, 1)).reshape(-1, 3)
            if not (np.isfinite(X).all() and np.isfinite(Y).all()):
                raise DeepDrawError(
                    f"{test_path}: keys '{key}' / 'endeffector_coords' hold NaN/inf in samples "
                    f"{sl.start}..{sl.stop - 1}; expected finite values"
                )
            diff = dec.predict(X) - Y
            e = np.linalg.norm(diff, axis=1)
            err_sum += float(e.sum())
            sq_axis += (diff**2).sum(0)
            n_te += e.size
            hist += np.bincount(np.minimum((e / 0.1).astype(np.int64), 59), minlength=60)
            T = xs.shape[2]
            if T == N_FRAMES:
                per_frame += e.reshape(-1, T).sum(0)
                per_frame_n += e.size // T
    error_cm = err_sum / max(n_te, 1)
    log.info("tdt linear decoder (%s, window %d): mean test error %.3f cm", key, win, error_cm)
    return {
        "error_cm": error_cm,
        "error_cm_train": err_tr / max(n_tr, 1),
        "input": key,
        "window": win,
        "arrays": {
            "coef": dec.coef_,
            "x_mean": dec.mx,
            "x_std": dec.sx,
            "y_mean": dec.my,
            "y_std": dec.sy,
            "error_cm": np.float64(error_cm),
            "error_cm_train": np.float64(err_tr / max(n_tr, 1)),
            "rmse_cm_per_axis": np.sqrt(sq_axis / max(n_te, 1)),
            "error_hist_0p1cm": hist,
            "error_cm_per_frame": per_frame / max(per_frame_n, 1),
            "n_train_frames": np.int64(n_tr),
            "n_test_frames": np.int64(n_te),
        },
    }


# ----------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)


def pairwise_figure(path: Path, inputs: Sequence[str], mats: np.ndarray, subset: str) -> None:
    """Fig. 3B-like: the 20 x 20 matrix of best validation accuracy, one panel per input."""
    plt = _plt()
    n = len(inputs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    im = None
    for k, key in enumerate(inputs):
        ax = axes[k // cols][k % cols]
        M = mats[k]
        im = ax.imshow(M, vmin=0.5, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(N_CLASSES), list(LETTERS), fontsize=7)
        ax.set_yticks(range(N_CLASSES), list(LETTERS), fontsize=7)
        iu = np.triu_indices(N_CLASSES, 1)
        v = M[iu][np.isfinite(M[iu])]
        ax.set_title(
            f"{key}\nval acc {100 * v.mean():.1f} ± {100 * v.std():.1f} % (n={v.size})" if v.size else key,
            fontsize=9,
        )
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="pairwise validation accuracy")
    fig.suptitle(f"Pairwise linear SVMs (subset: {subset})", fontsize=11)
    _save(fig, path)
    plt.close(fig)


def multiclass_figure(path: Path, df: Any) -> None:
    """Fig. 3C-like: one-vs-one test accuracy per input, for full variability and each subset."""
    plt = _plt()
    inputs = list(dict.fromkeys(df["input"]))
    subsets = list(dict.fromkeys(df["subset"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(subsets) * max(1, len(inputs)) * 0.35 + 3), 3.8))
    width = 0.8 / max(1, len(inputs))
    x = np.arange(len(subsets))
    for k, key in enumerate(inputs):
        d = df[df["input"] == key].set_index("subset")
        vals = [100 * float(d.loc[s, "accuracy"]) if s in d.index else np.nan for s in subsets]
        ax.bar(x + (k - (len(inputs) - 1) / 2) * width, vals, width, label=key)
    chance = 100.0 / max(1, int(df["n_classes"].max()))
    ax.axhline(chance, color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks(
        x,
        subsets,
        rotation=45 if len(subsets) > 3 else 0,
        ha="right" if len(subsets) > 3 else "center",
        fontsize=8,
    )
    ax.set_ylabel("one-vs-one test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Multi-class linear SVM (one-vs-one) per input and suppressed latent", fontsize=10)
    _save(fig, path)
    plt.close(fig)


def tdt_figure(path: Path, decode: dict[str, Any]) -> None:
    """Linear TDT baseline: distribution of the 3-D test error and its mean per frame."""
    plt = _plt()
    a = decode["arrays"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    edges = np.arange(61) * 0.1
    ax1.bar(edges[:-1], a["error_hist_0p1cm"], width=0.1, align="edge")
    ax1.axvline(decode["error_cm"], color="r", lw=1, label=f"mean {decode['error_cm']:.2f} cm")
    ax1.axvline(1.72, color="k", ls="--", lw=1, label="paper 1.72 cm")
    ax1.set_xlabel("3-D error per test frame (cm; last bin: beyond)")
    ax1.set_ylabel("frames")
    ax1.legend(fontsize=8)
    ax2.plot(a["error_cm_per_frame"])
    ax2.set_xlabel("frame")
    ax2.set_ylabel("mean error (cm)")
    fig.suptitle(
        f"Linear decoding of hand position from {decode['input']} (window {decode['window']})", fontsize=10
    )
    _save(fig, path)
    plt.close(fig)
