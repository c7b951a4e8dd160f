"""The state of one SVM stage run: its files' labels and latents, the subsets and their pairs, and the
result arrays that the pair fits and the test votes fill, input by input."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import KIND_PCRT, LETTERS, N_CLASSES
from ..errors import DeepDrawError
from ..settings import Config
from ..store import open_artifact
from .ovo import ovo_pairs, ovo_predict
from .pairs import PairTask, fit_pair_task, pair_decisions
from .projection import project_rows, shared_basis
from .rows import check_input, read_labels, read_latents
from .subsets import SubsetFit, parse_subsets, select_subset

log = logging.getLogger("deepdraw.svm.stage")  # the stage's one logger name, as before the split

__all__ = ["SvmRun"]


class SvmRun:
    """The state of one :func:`~deepdraw.svm.stage.run_svm`: the files' labels and latents, the subsets and
    their pairs, the result arrays filled input by input (:mod:`deepdraw.svm.results` makes the tables,
    files and summary from them)."""

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
                labels = read_labels(f, path)
                n = labels.size
                if n == 0:
                    raise DeepDrawError(f"{path}: key 'label' is empty; expected at least one sample")
                shapes = {k: check_input(f, path, k, n, "listed in svm.inputs") for k in self.inputs}
                if sc.decode:
                    shapes[sc.decode_input] = check_input(
                        f, path, sc.decode_input, n, "svm.decode_input, TDT baseline"
                    )
                    shapes["endeffector_coords"] = check_input(
                        f, path, "endeffector_coords", n, "hand position targets of the TDT baseline"
                    )
                meta[role] = {
                    "labels": labels,
                    "latents": read_latents(f, path, latent_keys),
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
        dec = pair_decisions(
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

    @property
    def main_subset(self) -> int:
        """The subset the summary and the pairwise figure show: "full", or the first one run."""
        return next((si for si, info in enumerate(self.sub_info) if info["subset"].name == "full"), 0)
