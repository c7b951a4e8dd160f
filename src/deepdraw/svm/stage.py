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

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import SVM_SCHEMA
from ..parallel import executor
from ..settings import Config
from .decoding import fit_linear_decoder, frame_features
from .fitting import SvmRun
from .pairs import PairTask, fit_pair_task
from .projection import project_rows, shared_basis
from .results import results_tables, run_summary, write_results
from .rows import read_rows
from .section import check_svm_section
from .subsets import ALL_SUBSETS, LATENTS, Subset, SubsetFit, parse_subsets, select_subset

log = logging.getLogger(__name__)

__all__ = [
    "ALL_SUBSETS",
    "LATENTS",
    "SVM_SCHEMA",
    "PairTask",
    "Subset",
    "SubsetFit",
    "check_svm_section",
    "fit_pair_task",
    "frame_features",
    "parse_subsets",
    "project_rows",
    "read_rows",
    "run_svm",
    "select_subset",
    "shared_basis",
]


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
    run = SvmRun(cfg, Path(train_path), Path(test_path), Path(out_dir), quiet)
    run.check_outputs(overwrite)
    run.read_files()
    run.make_subsets()
    with executor(cfg.parallel, quiet=quiet) as ex:
        for ii, key in enumerate(run.inputs):
            run.fit_input(ex, ii, key)
    work = run.out / ".svm_work"
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    decode = (
        fit_linear_decoder(cfg, run.train_path, run.test_path, run.n_use, quiet) if cfg.svm.decode else None
    )
    df_pairs, df_multi = results_tables(run)
    write_results(run, df_pairs, df_multi, decode, overwrite)
    summary = run_summary(run, df_multi, decode)
    summary["seconds"] = time.perf_counter() - t_start
    summary = {k: (float(v) if isinstance(v, np.floating | np.integer) else v) for k, v in summary.items()}
    log.info(
        "svm stage done in %.1f s (%d pair fits, %.1f s in the solver)",
        summary["seconds"],
        run.n_tasks,
        run.solver_seconds,
    )
    return summary
