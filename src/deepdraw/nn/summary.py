"""The train stage's summary table, ``models/summary.csv``: its columns (:data:`SUMMARY_COLUMNS`) and the
two rows of one finished run (:func:`summary_rows`: the trained model and its untrained control, whose
metrics are computed once and cached in ``untrained_metrics.json``)."""

from __future__ import annotations

import math
from pathlib import Path

from deepdraw.errors import DeepDrawError
from deepdraw.nn.plan import PlannedRun
from deepdraw.nn.runio import read_json, write_json

__all__ = ["SUMMARY_COLUMNS", "summary_rows"]

SUMMARY_COLUMNS = [
    "model",
    "architecture",
    "family",
    "task",
    "seed",
    "state",
    "trained",
    "epochs",
    "best_epoch",
    "stopped_by",
    "wall_s",
    "n_parameters",
    "conv_weights",
    "test_loss",
    "test_accuracy",
    "test_error_cm",
    "test_rmse_scaled",
    "test_velocity_error_cm_s",
    "val_loss",
    "val_accuracy",
    "val_error_cm",
    "val_rmse_scaled",
    "checkpoint",
    "source",
    "dataset_check",
]
"""Columns of ``models/summary.csv`` (one row per trained model and one per untrained control); ``source``
is ``run`` (trained in this run) or ``zoo`` (a shipped paper-scale model, ``[train] source = "zoo"``);
``dataset_check``: for a shipped model, how this run's dataset relates to the one it was trained on
(:func:`deepdraw.zoo.dataset_match.compare_with_card`), empty for models trained in the run."""

_METRIC_KEYS = ("loss", "accuracy", "error_cm", "rmse_scaled", "velocity_error_cm_s")


def _metric_cols(prefix: str, m: dict | None) -> dict:
    m = m or {}
    return {f"{prefix}_{k}": m.get(k, math.nan) for k in _METRIC_KEYS}


def _untrained_metrics(run: PlannedRun, tc, metrics: dict) -> dict:
    """Test and validation metrics of the run's untrained control (cached next to it)."""
    from deepdraw.nn.train import evaluate

    n_train, n_val = int(metrics["n_train"]), int(metrics["n_val"])
    key = {
        "train_path": str(tc.train_path),
        "test_path": str(tc.test_path),
        "val_rows": [n_train, n_train + n_val],
    }
    path = run.directory / "untrained_metrics.json"
    cached = read_json(path)
    if cached.get("key") == key:
        return cached
    ck = run.checkpoint(False)
    test = evaluate(ck, tc.test_path, device=tc.device, batch_size=tc.eval_batch_size)
    val = (
        evaluate(
            ck,
            tc.train_path,
            rows=(n_train, n_train + n_val),
            device=tc.device,
            batch_size=tc.eval_batch_size,
        )
        if n_val
        else None
    )
    out = {"key": key, "model_name": run.untrained_name, "test": test, "validation": val}
    write_json(path, out)
    return out


def summary_rows(run: PlannedRun, tc, out_dir: str, metrics: dict) -> list[dict]:
    """The trained and untrained summary rows of a finished run."""
    if metrics.get("model_name") != run.name:
        raise DeepDrawError(
            f"{run.directory / 'metrics.json'}: holds model '{metrics.get('model_name')}'; expected '{run.name}'"
        )
    un = _untrained_metrics(run, tc, metrics)
    rel = Path(out_dir)

    def relpath(p: Path) -> str:
        try:
            return str(p.relative_to(rel))
        except ValueError:
            return str(p)

    common = {
        "source": "zoo" if metrics.get("source") == "zoo" else "run",
        "dataset_check": (metrics.get("dataset_check") or {}).get("status", math.nan),
        "architecture": run.architecture,
        "family": run.family,
        "task": run.task,
        "seed": run.seed,
        "n_parameters": metrics.get("n_parameters"),
        "conv_weights": metrics.get("conv_weights"),
    }
    trained = {
        "model": run.name,
        **common,
        "state": "trained",
        "trained": True,
        "epochs": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "stopped_by": metrics.get("stopped_by"),
        "wall_s": metrics.get("wall_time_s"),
        **_metric_cols("test", metrics.get("test")),
        **_metric_cols("val", metrics.get("best_validation")),
        "checkpoint": relpath(run.checkpoint(True)),
    }
    untrained = {
        "model": run.untrained_name,
        **common,
        "state": "untrained",
        "trained": False,
        "epochs": 0,
        "best_epoch": 0,
        "stopped_by": "untrained",
        "wall_s": 0.0,
        **_metric_cols("test", un.get("test")),
        **_metric_cols("val", un.get("validation")),
        "checkpoint": relpath(run.checkpoint(False)),
    }
    return [trained, untrained]
