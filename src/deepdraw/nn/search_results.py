"""The results of the architecture search, read back: the tables' columns, the ranking of the candidates
and the winners of each family (what ``[train] models = "search"`` trains).

The search itself (training the candidates, writing the tables) is :mod:`deepdraw.nn.search_stage`; this
module only reads and ranks, so the train stage (:mod:`deepdraw.nn.plan`) can ask for the winners
without importing the search stage.

Selection: ART by accuracy (highest first), TDT and TDT-PV by the mean hand-position error in cm (lowest
first); ties go to fewer parameters, then the name. ``[search] select_by = "validation"`` ranks on the
validation rows of the training file (the last ``[train] val_fraction``); ``"test"`` on the test file, as
the original's ``train_initializations.py`` did (``nlargest(1)`` of the test accuracy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepdraw.errors import DeepDrawError
from deepdraw.settings import Config

__all__ = [
    "SEARCH_COLUMNS",
    "RANKING_COLUMNS",
    "SearchResultsMissing",
    "search_dir",
    "selection_metric",
    "rank_candidates",
    "best_per_family",
    "search_winners",
]

SEARCH_COLUMNS = [
    "name",
    "family",
    "task",
    "model_name",
    "n_layers",
    "depth",
    "parameters",
    "parameters_no_readout",
    "conv_weights",
    "train_loss",
    "val_loss",
    "test_loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "train_error_cm",
    "val_error_cm",
    "test_error_cm",
    "epochs",
    "best_epoch",
    "stopped_by",
    "wall_s",
    "directory",
]
"""Columns of ``search/search_results.csv`` (plus ``best``): one row per candidate and task. ``name`` is the
architecture (no task marker or seed); ``n_layers`` the family's layer count N, ``depth`` the layers of the
network (2N for spatial-temporal, N for spatiotemporal, N + 1 for the LSTM); ``parameters`` counts every
trained weight, ``parameters_no_readout`` leaves the task's readout out (as the paper's Fig. 3—S1B);
``accuracy`` is filled for ART, ``error_cm`` (mean hand-position error per output frame) for TDT;
``train_*`` are the best weights on the training rows, ``val_*`` on the validation rows, ``test_*`` on the
test file; ``wall_s`` is the training time; ``directory`` is relative to ``search/``."""

RANKING_COLUMNS = ["family", "task", "rank", "name", "metric", "value", "parameters", "selected"]
"""Columns of ``search/ranking.csv``: every candidate's rank (1 = best) within its family for each task,
on the metric that :func:`selection_metric` names; ``selected`` marks the winner of each family (rank 1 of
``[search] select_task``)."""


class SearchResultsMissing(DeepDrawError):
    """``[train] models = "search"`` without the search's results table."""


def search_dir(cfg: Config) -> Path:
    """``<out_dir>/search``."""
    return Path(cfg.out_dir) / "search"


# ----------------------------------------------------------------------------------------- selection
def selection_metric(task: str, select_by: str = "validation") -> tuple[str, bool]:
    """``(column, higher_is_better)`` that ranks candidates of ``task``: ``val_accuracy`` / ``test_accuracy``
    for ART, ``val_error_cm`` / ``test_error_cm`` (lower is better) for TDT and TDT-PV."""
    if select_by not in ("validation", "test"):
        raise DeepDrawError(f"search.select_by is '{select_by}'; expected 'validation' or 'test'")
    split = "val" if select_by == "validation" else "test"
    return (f"{split}_accuracy", True) if task == "art" else (f"{split}_error_cm", False)


def rank_candidates(
    table: pd.DataFrame, select_by: str = "validation", select_task: str = "art"
) -> pd.DataFrame:
    """Every candidate's rank within its family for each task of ``table`` (:data:`RANKING_COLUMNS`).

    A candidate without a finite metric ranks last. ``selected`` marks rank 1 of ``select_task``."""
    rows = []
    families = list(dict.fromkeys(table["family"]))
    for task in dict.fromkeys(table["task"]):
        col, higher = selection_metric(str(task), select_by)
        for fam in families:
            g = table[(table["task"] == task) & (table["family"] == fam)].copy()
            if g.empty:
                continue
            value = pd.to_numeric(g[col], errors="coerce")
            g["_key"] = np.where(np.isfinite(value), -value if higher else value, np.inf)
            g = g.sort_values(["_key", "parameters", "name"], kind="mergesort")
            for rank, (_, r) in enumerate(g.iterrows(), start=1):
                rows.append(
                    {
                        "family": fam,
                        "task": task,
                        "rank": rank,
                        "name": r["name"],
                        "metric": col,
                        "value": r[col],
                        "parameters": r["parameters"],
                        "selected": bool(rank == 1 and task == select_task),
                    }
                )
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


def best_per_family(
    table: pd.DataFrame, select_by: str = "validation", select_task: str = "art"
) -> pd.DataFrame:
    """The winning row of each family (family order of ``table``): rank 1 of ``select_task`` on the
    ``select_by`` metric (see :func:`rank_candidates`); columns of ``table`` plus ``metric``."""
    if "task" not in table.columns or select_task not in set(table["task"]):
        raise DeepDrawError(
            f"the search table holds no '{select_task}' candidates; expected search.select_task to be one "
            "of search.tasks"
        )
    ranking = rank_candidates(table, select_by, select_task)
    win = ranking[ranking["selected"]]
    rows = table[table["task"] == select_task].set_index(["family", "name"], drop=False)
    best = rows.loc[list(zip(win["family"], win["name"]))].reset_index(drop=True)
    best["metric"] = list(win["metric"])
    return best


def search_winners(cfg: Config) -> list[str]:
    """The architectures that ``[train] models = "search"`` trains: the best of each family in the run's
    ``search/search_results.csv``, by ``[search] select_by`` and ``select_task``.

    Raises :class:`SearchResultsMissing` (naming the file and the command) when the table is missing."""
    path = search_dir(cfg) / "search_results.csv"
    if not path.is_file():
        src = cfg.source or "CONFIG"
        raise SearchResultsMissing(
            f'{path}: search results not found; [train] models = "search" trains the winners of the '
            f"architecture search: run it first with 'deepdraw search {src} --no-seeds' or "
            f"'deepdraw pipeline {src}'"
        )
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise DeepDrawError(f"{path}: unreadable search table ({e}); run 'deepdraw search' again") from None
    missing = {"name", "family", "task", "parameters"} - set(table.columns)
    if missing:
        raise DeepDrawError(
            f"{path}: lacks columns {sorted(missing)} (a table of an older deepdraw?); run 'deepdraw search' "
            "again to rewrite it"
        )
    try:
        best = best_per_family(table, cfg.search.select_by, cfg.search.select_task)
    except DeepDrawError as e:
        raise DeepDrawError(f"{path}: {e}") from None
    return list(best["name"])
