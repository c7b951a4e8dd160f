"""The SVM stage's outputs from a finished :class:`~deepdraw.svm.fitting.SvmRun`: the tables
(``svm_pairs.csv``, ``svm_multiclass.csv``), ``svm_results.h5``, the figures and the summary numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import KIND_SVM, LETTERS
from ..store import ArtifactWriter, file_sha256, write_text_atomic
from .figures import multiclass_figure, pairwise_figure, tdt_figure
from .fitting import SvmRun
from .subsets import SubsetFit

__all__ = ["results_tables", "run_summary", "write_results"]


def results_tables(run: SvmRun) -> tuple[Any, Any]:
    """``svm_pairs.csv`` (every pair and C) and ``svm_multiclass.csv`` (every input and subset)."""
    import pandas as pd

    c_grid = np.asarray(run.sc.c_grid, dtype=np.float64)
    rows_pairs, rows_multi = [], []
    for ii, key in enumerate(run.inputs):
        for si, info in enumerate(run.sub_info):
            rows_pairs += _pair_rows(run, ii, key, si, info, c_grid)
            rows_multi.append(_multi_row(run, ii, key, si, info))
    return pd.DataFrame(rows_pairs), pd.DataFrame(rows_multi)


def _pair_rows(run: SvmRun, ii: int, key: str, si: int, info: SubsetFit, c_grid: np.ndarray) -> list[dict]:
    res, out = run.res, []
    for i, j in info["pairs"]:
        pk = run.pair_index[(i, j)]
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


def _multi_row(run: SvmRun, ii: int, key: str, si: int, info: SubsetFit) -> dict:
    res, s = run.res, info["subset"]
    pks = [
        run.pair_index[p]
        for p in info["pairs"]
        if np.isfinite(res["val_acc"][ii, si, run.pair_index[p]]).any()
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


def write_results(run: SvmRun, df_pairs: Any, df_multi: Any, decode: dict | None, overwrite: bool) -> None:
    """``svm_results.h5``, the two CSV tables and the figures."""
    run.out.mkdir(parents=True, exist_ok=True)
    arrays = dict(run.res)
    arrays.update(
        {
            "inputs": np.array([k.encode() for k in run.inputs]),
            "subsets": np.array([s.name.encode() for s in run.subsets]),
            "c_grid": np.asarray(run.sc.c_grid, dtype=np.float64),
            "pair_i": np.array([p[0] for p in run.all_pairs], np.int64),
            "pair_j": np.array([p[1] for p in run.all_pairs], np.int64),
            "test_label": run.y_te.astype(np.int16),
        }
    )
    for key, v in run.predictions.items():
        arrays[f"predictions/{key}"] = v
    for key, v in run.weights.items():
        arrays[f"weights/{key}"] = v
        arrays[f"intercepts/{key}"] = run.intercepts[key]
    if decode is not None:
        for k, v in decode["arrays"].items():
            arrays[f"decode/{k}"] = v
    attrs = {
        "svm_convention": "pair (i, j), i < j: decision > 0 votes for j; OvO tie-break as sklearn",
        "n_train_used": run.n_use,
        "projections": json.dumps(run.projections),
    }
    with ArtifactWriter(
        run.paths["results_h5"],
        KIND_SVM,
        config=run.cfg.to_dict(),
        inputs=input_hashes(run.train_path, run.test_path),
        attrs=attrs,
        overwrite=overwrite,
    ) as f:
        for k, v in arrays.items():
            v = np.asarray(v)
            f.create_dataset(
                k, data=v, compression="gzip" if v.size > 4096 and v.dtype.kind in "fiub" else None
            )
    write_text_atomic(run.paths["pairs_csv"], df_pairs.to_csv(index=False))
    write_text_atomic(run.paths["multiclass_csv"], df_multi.to_csv(index=False))
    main = run.main_subset
    pairwise_figure(
        run.paths["pairwise_png"],
        run.inputs,
        run.res["val_acc_matrix"][:, main],
        run.sub_info[main]["subset"].name,
    )
    multiclass_figure(run.paths["multiclass_png"], df_multi)
    if decode is not None:
        tdt_figure(run.paths["tdt_png"], decode)


def run_summary(run: SvmRun, df_multi: Any, decode: dict | None) -> dict[str, Any]:
    """The numbers :func:`~deepdraw.svm.stage.run_svm` returns (see its docstring), but ``seconds``."""
    out: dict[str, Any] = {}
    main = run.main_subset
    for key in run.inputs:
        for si, info in enumerate(run.sub_info):
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
    for key, pr in run.projections.items():
        out[f"projection_captured_{key}"] = pr["captured"]
        out[f"projection_seconds_{key}"] = pr["seconds"]
    out["n_pairs"] = len(run.sub_info[main]["pairs"])
    out["n_train_used"] = run.n_use
    out["solver_seconds"] = run.solver_seconds
    out.update({f"{k}_path": str(p) for k, p in run.paths.items()})
    return out


def input_hashes(train: Path, test: Path) -> dict[str, str]:
    """SHA-256 of the two input files, by file name (by full path when the names are the same)."""
    names = (train.name, test.name) if train.name != test.name else (str(train), str(test))
    return {names[0]: file_sha256(train), names[1]: file_sha256(test)}
