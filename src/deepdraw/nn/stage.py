"""Stage 3 orchestration: the entry points of training the model list, activations and evaluation.

This module is the stages' one import path (``deepdraw.nn.stage``); each job lives in its own module and
its public names are re-exported here (see ``docs/training.md``):

- :mod:`deepdraw.nn.section`: the checks of ``[train]`` and ``[activations]``
  (:func:`check_train_section`, :func:`check_activations_section`).
- :mod:`deepdraw.nn.plan`: the planned runs, models x tasks x seeds (:class:`PlannedRun`,
  :func:`planned_runs`, :func:`resolve_models`, :func:`lr_batch`); ``[train] models = "search"`` stands
  for the winners of the architecture search (read by :mod:`deepdraw.nn.search_results`).
- :mod:`deepdraw.nn.train_stage`: :func:`run_train`, every planned run trained (or installed from the
  zoo) into ``models/<name>/``, each with its untrained control; :func:`train_output_paths`;
  :data:`RUN_SETTINGS` and :func:`check_settings` (a run folder of other settings is refused).
- :mod:`deepdraw.nn.summary`: the table of all runs, ``models/summary.csv`` (:data:`SUMMARY_COLUMNS`).
- :mod:`deepdraw.nn.activations_stage`: :func:`run_activations`, every trained model and untrained
  control run on one seeded subset of the test file (:func:`activation_indices`, :func:`activation_paths`).
- :func:`run_evaluate` (here): metrics of one checkpoint on one PCRT file.
- the architecture search is :mod:`deepdraw.nn.search_stage`.

Seeds: the activation subset is drawn with ``SeedSequence(run.seed, spawn_key=(6,))``.
"""

from __future__ import annotations

import logging
import os

# `name as name`: re-exported names outside __all__ (as before the split)
from deepdraw.nn.activations_stage import activation_indices, activation_paths, run_activations
from deepdraw.nn.plan import PlannedRun, planned_runs, resolve_models
from deepdraw.nn.plan import lr_batch as lr_batch
from deepdraw.nn.runio import train_device
from deepdraw.nn.section import check_activations_section as check_activations_section
from deepdraw.nn.section import check_train_section as check_train_section
from deepdraw.nn.summary import SUMMARY_COLUMNS
from deepdraw.nn.train_stage import RUN_SETTINGS as RUN_SETTINGS
from deepdraw.nn.train_stage import check_settings as check_settings
from deepdraw.nn.train_stage import run_train, train_output_paths

__all__ = [
    "PlannedRun",
    "SUMMARY_COLUMNS",
    "resolve_models",
    "planned_runs",
    "run_train",
    "train_output_paths",
    "activation_indices",
    "activation_paths",
    "run_activations",
    "run_evaluate",
]

logger = logging.getLogger(__name__)


def run_evaluate(
    checkpoint: str | os.PathLike,
    data_path: str | os.PathLike,
    device: str | None = "auto",
    quiet: bool = True,
) -> dict:
    """Metrics of a checkpoint on a PCRT file, with the checkpoint's identity (JSON-ready)."""
    from deepdraw.nn.train import evaluate, load_checkpoint

    dev = train_device(device or "auto")
    _, ck = load_checkpoint(checkpoint)
    metrics = evaluate(checkpoint, data_path, device=dev, quiet=quiet)
    return {
        "checkpoint": str(checkpoint),
        "data": str(data_path),
        "model_name": ck["model_name"],
        "task": ck["task"],
        "trained": bool(ck["trained"]),
        "kind": ck["kind"],
        "epoch": int(ck["epoch"]),
        **metrics,
    }
