"""The SVM stage: pairwise / one-vs-one linear SVMs and the linear TDT decoding baseline (original: svm-analysis/).

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
from typing import Any, TypedDict

import h5py
import numpy as np

from ..contracts import KIND_PCRT, KIND_SVM, LETTERS, N_CLASSES, N_FRAMES, SVM_SCHEMA
from ..errors import DeepDrawError
from ..parallel import executor
from ..settings import PLANES, Config
from ..store import ArtifactWriter, file_sha256, iter_chunks, open_artifact
from .figures import multiclass_figure, pairwise_figure, tdt_figure
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


class SubsetFit(TypedDict):
    """One subset's samples and classes: boolean masks over the train/test rows, its classes and pairs."""

    subset: Subset
    train_mask: np.ndarray
    test_mask: np.ndarray
    classes: np.ndarray
    pairs: list[tuple[int, int]]


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
    t_start = time.perf_counter()
    quiet = quiet or cfg.run.quiet
    check_svm_section(cfg)
    run = _SvmRun(cfg, Path(train_path), Path(test_path), Path(out_dir), quiet)
    run.check_outputs(overwrite)
    run.read_files()
    run.make_subsets()
    with executor(cfg.parallel, quiet=quiet) as ex:
        for ii, key in enumerate(run.inputs):
            run.fit_input(ex, ii, key)
    work = run.out / ".svm_work"
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    decode = _fit_decoder(cfg, run.train_path, run.test_path, run.n_use, quiet) if cfg.svm.decode else None
    df_pairs, df_multi = run.tables()
    run.write_outputs(df_pairs, df_multi, decode, overwrite)
    summary = run.summary(df_multi, decode)
    summary["seconds"] = time.perf_counter() - t_start
    summary = {k: (float(v) if isinstance(v, np.floating | np.integer) else v) for k, v in summary.items()}
    log.info(
        "svm stage done in %.1f s (%d pair fits, %.1f s in the solver)",
        summary["seconds"],
        run.n_tasks,
        run.solver_seconds,
    )
    return summary


class _SvmRun:
    """The state of one :func:`run_svm`: the files' labels and latents, the subsets and their pairs, the
    result arrays filled input by input, then the tables, files and summary made from them."""

    def __init__(self, cfg: Config, train_path: Path, test_path: Path, out: Path, quiet: bool) -> None:
        self.cfg, self.sc, self.quiet = cfg, cfg.svm, quiet
        self.subsets = parse_subsets(self.sc.subsets)
        self.train_path, self.test_path, self.out = train_path, test_path, out
        self.paths = {
            "pairs_csv": out / "svm_pairs.csv",
            "multiclass_csv": out / "svm_multiclass.csv",
            "results_h5": out / "svm_results.h5",
            "pairwise_png": out / "svm_pairwise_matrix.png",
            "multiclass_png": out / "svm_multiclass.png",
        }
        if self.sc.decode:
            self.paths["tdt_png"] = out / "svm_tdt_linear.png"
        self.inputs = list(self.sc.inputs)
        self.all_pairs = ovo_pairs(N_CLASSES)
        self.pair_index = {p: k for k, p in enumerate(self.all_pairs)}
        self.weights: dict[str, np.ndarray] = {}
        self.intercepts: dict[str, np.ndarray] = {}
        self.predictions: dict[str, np.ndarray] = {}
        self.projections: dict[str, dict[str, float]] = {}
        self.solver_seconds = 0.0
        self.n_tasks = 0

    def check_outputs(self, overwrite: bool) -> None:
        if not overwrite:
            for p in self.paths.values():
                if p.exists():
                    raise DeepDrawError(
                        f"{p}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
                    )

    def read_files(self) -> None:
        """Labels, latents and checked input shapes of both files (small)."""
        sc = self.sc
        latent_keys = sorted({k for s in self.subsets for k in s.keys})
        meta: dict[str, dict[str, Any]] = {}
        for role, path in (("train", self.train_path), ("test", self.test_path)):
            with open_artifact(path, kind=KIND_PCRT) as f:
                labels = _read_labels(f, path)
                n = labels.size
                if n == 0:
                    raise DeepDrawError(f"{path}: key 'label' is empty; expected at least one sample")
                shapes = {k: _check_input(f, path, k, n, "listed in svm.inputs") for k in self.inputs}
                if sc.decode:
                    shapes[sc.decode_input] = _check_input(
                        f, path, sc.decode_input, n, "svm.decode_input, TDT baseline"
                    )
                    shapes["endeffector_coords"] = _check_input(
                        f, path, "endeffector_coords", n, "hand position targets of the TDT baseline"
                    )
                meta[role] = {
                    "labels": labels,
                    "latents": _read_latents(f, path, latent_keys),
                    "shapes": shapes,
                }
        for k in self.inputs:
            if meta["train"]["shapes"][k] != meta["test"]["shapes"][k]:
                raise DeepDrawError(
                    f"{self.test_path}: key '{k}' has sample shape {meta['test']['shapes'][k]}; expected "
                    f"{meta['train']['shapes'][k]} as in {self.train_path}"
                )
        n_train_file = meta["train"]["labels"].size
        self.n_use = min(n_train_file, sc.max_train) if sc.max_train else n_train_file
        self.shapes = meta["train"]["shapes"]
        self.y_tr = meta["train"]["labels"][: self.n_use]
        self.y_te = meta["test"]["labels"]
        self.lat_tr = {k: v[: self.n_use] for k, v in meta["train"]["latents"].items()}
        self.lat_te = meta["test"]["latents"]

    def make_subsets(self) -> None:
        """Masks, classes and pairs of every subset; the result arrays."""
        n_use, y_tr, y_te = self.n_use, self.y_tr, self.y_te
        self.sub_info: list[SubsetFit] = []
        for s in self.subsets:
            m_tr = select_subset(self.lat_tr, s) if s.conds else np.ones(n_use, bool)
            m_te = select_subset(self.lat_te, s) if s.conds else np.ones(y_te.size, bool)
            if not m_tr.any():
                raise DeepDrawError(
                    f"{self.train_path}: subset '{s.name}' selects no training sample; expected samples with "
                    f"{s.name} among the first {n_use}"
                )
            classes = np.unique(y_tr[m_tr])
            if classes.size < 2:
                raise DeepDrawError(
                    f"{self.train_path}: subset '{s.name}' holds training samples of one class only "
                    f"({LETTERS[int(classes[0])]}); expected at least two classes"
                )
            if not m_te.any():
                log.warning(
                    "%s: subset '%s' selects no test sample; its multi-class accuracy is NaN",
                    self.test_path,
                    s.name,
                )
            pairs = [(int(classes[a]), int(classes[b])) for a, b in ovo_pairs(classes.size)]
            self.sub_info.append(
                {"subset": s, "train_mask": m_tr, "test_mask": m_te, "classes": classes, "pairs": pairs}
            )
        nI, nS, nP, nC = len(self.inputs), len(self.subsets), len(self.all_pairs), len(self.sc.c_grid)
        self.res = {
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
            "n_test": np.array([int(si["test_mask"].sum()) for si in self.sub_info], np.int64),
        }

    # ---- one input representation
    def fit_input(self, ex: Any, ii: int, key: str) -> None:
        """Every pair of every subset on input ``key`` (Dask tasks), then their test decisions."""
        d = int(np.prod(self.shapes[key]))
        pair_path, V = self._project(key, d)
        tasks, where = self._pair_tasks(key, pair_path)
        log.info("svm %s: %d pair fits over %d subset(s)", key, len(tasks), len(self.subsets))
        try:
            results = ex.map(fit_pair_task, tasks, desc=f"svm pairs {key}")
        finally:
            if V is not None:  # the projected rows are a work file, also after a failure
                Path(pair_path).unlink(missing_ok=True)
        self.n_tasks += len(tasks)
        W, B, fitted = self._collect(ii, key, d, V, where, results)
        self._score_test(ii, key, W, B, fitted)
        if self.sc.save_weights:
            self.weights[key] = W.astype(np.float32)
            self.intercepts[key] = B
        log.info(
            "svm %s: multi-class accuracy %s",
            key,
            ", ".join(
                f"{info['subset'].name} {self.res['multiclass_acc'][ii, si]:.3f}"
                for si, info in enumerate(self.sub_info)
            ),
        )

    def _project(self, key: str, d: int) -> tuple[str, np.ndarray | None]:
        """The file the pairs read (the train file, or its rows projected on a shared basis) and the basis."""
        sc = self.sc
        if not 0 < sc.project < d:
            return str(self.train_path), None
        t_proj = time.perf_counter()
        V, captured = shared_basis(
            self.train_path, key, self.n_use, sc.project, sc.project_sample, self.cfg.run.seed
        )
        pair_path = str(self.out / ".svm_work" / f"{key}_proj.h5")
        project_rows(
            self.train_path, key, self.n_use, V, Path(pair_path), max(1024, sc.read_chunk), self.quiet
        )
        self.projections[key] = {
            "dims": float(sc.project),
            "captured": captured,
            "seconds": time.perf_counter() - t_proj,
        }
        log.info(
            "svm %s: pairs fitted in %d shared directions (%.4f of the squared norm of %d sampled rows), found "
            "and applied in %.0f s",
            key,
            sc.project,
            captured,
            min(self.n_use, sc.project_sample),
            self.projections[key]["seconds"],
        )
        return pair_path, V

    def _pair_tasks(self, key: str, pair_path: str) -> tuple[list[PairTask], list[tuple[int, int]]]:
        sc, y_tr = self.sc, self.y_tr
        tasks: list[PairTask] = []
        where: list[tuple[int, int]] = []
        for si, info in enumerate(self.sub_info):
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
                    )  # fmt: skip
                )
                where.append((si, self.pair_index[(i, j)]))
        return tasks, where

    def _collect(
        self,
        ii: int,
        key: str,
        d: int,
        V: np.ndarray | None,
        where: list[tuple[int, int]],
        results: list[dict],
    ) -> tuple[np.ndarray, np.ndarray, list[set[int]]]:
        """The pair fits into the result arrays; the weights (input space) and which pairs were fitted."""
        res, nS, nP = self.res, len(self.subsets), len(self.all_pairs)
        W = np.zeros((nS, nP, d), np.float64)
        B = np.zeros((nS, nP), np.float64)
        skipped = [r["skipped"] for r in results if "skipped" in r]
        if skipped:
            log.warning(
                "svm %s: %d pair(s) not fitted (e.g. %s); they cast no vote", key, len(skipped), skipped[0]
            )
        fitted: list[set[int]] = [set() for _ in self.sub_info]
        for (si, pk), r in zip(where, results):
            if "skipped" in r:
                continue
            fitted[si].add(pk)
            for k in ("val_acc", "train_acc", "converged", "n_iter", "n_train", "n_val"):
                res[k][ii, si, pk] = r[k]
            res["best_c"][ii, si, pk] = self.sc.c_grid[r["best"]]
            W[si, pk], B[si, pk] = (r["coef"] if V is None else V @ r["coef"]), r["intercept"]
            self.solver_seconds += r["seconds"]
            i, j = self.all_pairs[pk]
            acc = float(r["val_acc"][r["best"]])
            res["val_acc_matrix"][ii, si, i, j] = res["val_acc_matrix"][ii, si, j, i] = acc
        n_conv = res["converged"][ii].sum()
        n_fit = int(np.isfinite(res["val_acc"][ii]).sum())
        if n_conv < n_fit:
            log.warning(
                "svm %s: %d of %d fits stopped before the solver tolerance", key, n_fit - n_conv, n_fit
            )
        return W, B, fitted

    def _score_test(self, ii: int, key: str, W: np.ndarray, B: np.ndarray, fitted: list[set[int]]) -> None:
        """One pass over the test file: decisions of every chosen model, votes, accuracies."""
        res, y_te, all_pairs, pair_index = self.res, self.y_te, self.all_pairs, self.pair_index
        dec = _test_decisions(
            self.test_path, key, self.sub_info, W, B, pair_index, self.sc.read_chunk, self.quiet
        )
        pred_all = np.full((len(self.subsets), y_te.size), -1, np.int16)
        for si, info in enumerate(self.sub_info):
            rows = np.flatnonzero(info["test_mask"])
            if rows.size == 0:
                continue
            yt = y_te[rows]
            cls = info["classes"]
            local_of = {int(c): a for a, c in enumerate(cls)}
            pks = [pair_index[p] for p in info["pairs"] if pair_index[p] in fitted[si]]
            local_pairs = [(local_of[all_pairs[pk][0]], local_of[all_pairs[pk][1]]) for pk in pks]
            pred = cls[ovo_predict(dec[si][:, pks], cls.size, local_pairs)]
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
        self.predictions[key] = pred_all

    # ---- outputs
    def tables(self) -> tuple[Any, Any]:
        """``svm_pairs.csv`` (every pair and C) and ``svm_multiclass.csv`` (every input and subset)."""
        import pandas as pd

        c_grid = np.asarray(self.sc.c_grid, dtype=np.float64)
        rows_pairs, rows_multi = [], []
        for ii, key in enumerate(self.inputs):
            for si, info in enumerate(self.sub_info):
                rows_pairs += self._pair_rows(ii, key, si, info, c_grid)
                rows_multi.append(self._multi_row(ii, key, si, info))
        return pd.DataFrame(rows_pairs), pd.DataFrame(rows_multi)

    def _pair_rows(self, ii: int, key: str, si: int, info: SubsetFit, c_grid: np.ndarray) -> list[dict]:
        res, out = self.res, []
        for i, j in info["pairs"]:
            pk = self.pair_index[(i, j)]
            if not np.isfinite(res["val_acc"][ii, si, pk]).any():
                continue  # not fitted (too few samples of a class in this subset)
            best_c = res["best_c"][ii, si, pk]
            for ci, C in enumerate(c_grid):
                is_best = bool(C == best_c)
                out.append(
                    {
                        "input": key,
                        "subset": info["subset"].name,
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
                    }  # fmt: skip
                )
        return out

    def _multi_row(self, ii: int, key: str, si: int, info: SubsetFit) -> dict:
        res, s = self.res, info["subset"]
        pks = [
            self.pair_index[p]
            for p in info["pairs"]
            if np.isfinite(res["val_acc"][ii, si, self.pair_index[p]]).any()
        ]
        bv = np.max(res["val_acc"][ii, si, pks], axis=1) if pks else np.array([np.nan])
        bt = res["pair_test_acc"][ii, si, pks]
        ok = np.isfinite(bt).any()
        return {
            "input": key, "subset": s.name, "suppressed_var": s.suppressed_var, "suppressed_val": s.suppressed_val,
            "n_classes": int(info["classes"].size), "n_train": int(info["train_mask"].sum()),
            "n_test": int(res["n_test"][si]), "accuracy": res["multiclass_acc"][ii, si],
            "pairwise_mean_val_acc": float(np.mean(bv)), "pairwise_sd_val_acc": float(np.std(bv)),
            "pairwise_mean_test_acc": float(np.nanmean(bt)) if ok else np.nan,
            "pairwise_sd_test_acc": float(np.nanstd(bt)) if ok else np.nan,
            "pairwise_frac_below_70": float(np.mean(bt[np.isfinite(bt)] < 0.7)) if ok else np.nan,
        }  # fmt: skip

    @property
    def main_subset(self) -> int:
        """The subset the summary and the pairwise figure show: "full", or the first one run."""
        return next((si for si, info in enumerate(self.sub_info) if info["subset"].name == "full"), 0)

    def write_outputs(self, df_pairs: Any, df_multi: Any, decode: dict | None, overwrite: bool) -> None:
        """``svm_results.h5``, the two CSV tables and the figures."""
        self.out.mkdir(parents=True, exist_ok=True)
        arrays = dict(self.res)
        arrays.update(
            {
                "inputs": np.array([k.encode() for k in self.inputs]),
                "subsets": np.array([s.name.encode() for s in self.subsets]),
                "c_grid": np.asarray(self.sc.c_grid, dtype=np.float64),
                "pair_i": np.array([p[0] for p in self.all_pairs], np.int64),
                "pair_j": np.array([p[1] for p in self.all_pairs], np.int64),
                "test_label": self.y_te.astype(np.int16),
            }
        )
        for key, v in self.predictions.items():
            arrays[f"predictions/{key}"] = v
        for key, v in self.weights.items():
            arrays[f"weights/{key}"] = v
            arrays[f"intercepts/{key}"] = self.intercepts[key]
        if decode is not None:
            for k, v in decode["arrays"].items():
                arrays[f"decode/{k}"] = v
        attrs = {
            "svm_convention": "pair (i, j), i < j: decision > 0 votes for j; OvO tie-break as sklearn",
            "n_train_used": self.n_use,
            "projections": json.dumps(self.projections),
        }
        with ArtifactWriter(
            self.paths["results_h5"],
            KIND_SVM,
            config=self.cfg.to_dict(),
            inputs=_input_hashes(self.train_path, self.test_path),
            attrs=attrs,
            overwrite=overwrite,
        ) as f:
            for k, v in arrays.items():
                v = np.asarray(v)
                f.create_dataset(
                    k, data=v, compression="gzip" if v.size > 4096 and v.dtype.kind in "fiub" else None
                )
        _write_text_atomic(self.paths["pairs_csv"], df_pairs.to_csv(index=False))
        _write_text_atomic(self.paths["multiclass_csv"], df_multi.to_csv(index=False))
        main = self.main_subset
        pairwise_figure(
            self.paths["pairwise_png"],
            self.inputs,
            self.res["val_acc_matrix"][:, main],
            self.sub_info[main]["subset"].name,
        )
        multiclass_figure(self.paths["multiclass_png"], df_multi)
        if decode is not None:
            tdt_figure(self.paths["tdt_png"], decode)

    def summary(self, df_multi: Any, decode: dict | None) -> dict[str, Any]:
        """The numbers :func:`run_svm` returns (see its docstring), but ``seconds``."""
        out: dict[str, Any] = {}
        main = self.main_subset
        for key in self.inputs:
            for si, info in enumerate(self.sub_info):
                row = df_multi[(df_multi.input == key) & (df_multi.subset == info["subset"].name)].iloc[0]
                if si == main:
                    out[f"pairwise_mean_acc_{key}"] = row.pairwise_mean_test_acc
                    out[f"pairwise_std_acc_{key}"] = row.pairwise_sd_test_acc
                    out[f"pairwise_mean_val_acc_{key}"] = row.pairwise_mean_val_acc
                    out[f"pairwise_std_val_acc_{key}"] = row.pairwise_sd_val_acc
                    out[f"pairwise_frac_below_70_{key}"] = row.pairwise_frac_below_70
                    out[f"multiclass_acc_{key}"] = row.accuracy
                else:
                    out[f"multiclass_acc_{key}_{info['subset'].name}"] = row.accuracy
        if decode is not None:
            out["tdt_linear_error_cm"] = decode["error_cm"]
            out["tdt_linear_error_cm_train"] = decode["error_cm_train"]
        for key, pr in self.projections.items():
            out[f"projection_captured_{key}"] = pr["captured"]
            out[f"projection_seconds_{key}"] = pr["seconds"]
        out["n_pairs"] = len(self.sub_info[main]["pairs"])
        out["n_train_used"] = self.n_use
        out["solver_seconds"] = self.solver_seconds
        out.update({f"{k}_path": str(p) for k, p in self.paths.items()})
        return out


def _test_decisions(
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
    with open_artifact(train_path, kind=KIND_PCRT) as f:
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
    with open_artifact(test_path, kind=KIND_PCRT) as f:
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
