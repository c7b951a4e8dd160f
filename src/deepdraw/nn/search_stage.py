"""The architecture search stage: random candidates of the paper's grid trained on ART and TDT, ranked on
the validation set, the winner of each family handed to ``train`` (``[train] models = "search"``).

Functions (see ``docs/training.md``, *Architecture search*):

- :func:`run_search`: ``[search] n_per_family`` architectures per family of ``[search] families``
  (:func:`deepdraw.nn.search.sample_architectures`), each trained for every task of ``[search] tasks``,
  one Dask task per (candidate, task), single-threaded torch, into ``search/<model>/``
  (``search/tdt_pv/<model>/`` for TDT-PV). A candidate whose ``search.json`` is complete is not trained
  again. Writes ``search/search_results.csv`` (:data:`SEARCH_COLUMNS`, one row per candidate and task),
  ``search/ranking.csv`` (:data:`RANKING_COLUMNS`) and ``search/best_per_family.csv``; the CLI's
  ``deepdraw search`` then trains the seeds of the winners (the pipeline leaves that to ``train``).
- :func:`rank_candidates` / :func:`best_per_family`: the ranking per family and task, by validation
  (default) or test metric; :func:`search_winners`: the winners that ``[train] models = "search"`` trains.

Selection: ART by accuracy (highest first), TDT and TDT-PV by the mean hand-position error in cm (lowest
first); ties go to fewer parameters, then the name. ``[search] select_by = "validation"`` ranks on the
validation rows of the training file (the last ``[train] val_fraction``); ``"test"`` on the test file, as
the original's ``train_initializations.py`` did (``nlargest(1)`` of the test accuracy).

Seeds: family ``f`` is sampled with ``SeedSequence(run.seed, spawn_key=(7, crc32(f)))``; every candidate is
initialised with the run seed.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepdraw.contracts import SEED_STREAM_SEARCH
from deepdraw.errors import DeepDrawError
from deepdraw.parallel import executor
from deepdraw.paths import RunPaths
from deepdraw.settings import Config

__all__ = [
    "SEARCH_COLUMNS",
    "RANKING_COLUMNS",
    "SearchResultsMissing",
    "check_search_section",
    "search_enabled",
    "search_dir",
    "search_candidates",
    "search_output_paths",
    "selection_metric",
    "rank_candidates",
    "best_per_family",
    "search_winners",
    "run_search",
]

logger = logging.getLogger(__name__)

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

_METRICS = ("loss", "accuracy", "error_cm")


class SearchResultsMissing(DeepDrawError):
    """``[train] models = "search"`` without the search's results table."""


# -------------------------------------------------------------------------------------------- config
def search_enabled(cfg: Config) -> bool:
    """Whether the run has a search stage (``[search] n_per_family > 0``)."""
    return cfg.search.n_per_family > 0


def check_search_section(cfg: Config) -> list[str]:
    """Checks of ``[search]`` (run by :func:`deepdraw.config.load_config`); returns the families searched,
    each once. ``n_per_family`` 0 is the default (no search); the other keys are checked either way."""
    from deepdraw.nn.models import FAMILIES, TASKS
    from deepdraw.nn.search import GRIDS

    s = cfg.search
    if not s.families:
        raise DeepDrawError(f"key 'search.families' is empty; expected some of {', '.join(FAMILIES)}")
    for fam in s.families:
        if fam not in FAMILIES:
            raise DeepDrawError(
                f"key 'search.families' holds '{fam}'; expected some of {', '.join(FAMILIES)}"
            )
    if s.n_per_family < 0:
        raise DeepDrawError(
            f"key 'search.n_per_family' is {s.n_per_family}; expected 0 (no search) or a positive integer"
        )
    if s.max_epochs < 1:
        raise DeepDrawError(f"key 'search.max_epochs' is {s.max_epochs}; expected a positive integer")
    if not s.tasks:
        raise DeepDrawError(f"key 'search.tasks' is empty; expected some of {', '.join(TASKS)}")
    for task in s.tasks:
        if task not in TASKS:
            raise DeepDrawError(f"key 'search.tasks' holds '{task}'; expected some of {', '.join(TASKS)}")
    if s.grid not in GRIDS:
        raise DeepDrawError(f"key 'search.grid' is '{s.grid}'; expected one of {', '.join(GRIDS)}")
    if s.select_by not in ("validation", "test"):
        raise DeepDrawError(
            f"key 'search.select_by' is '{s.select_by}'; expected 'validation' (default) or 'test' (the "
            "original's choice)"
        )
    if s.select_task not in s.tasks:
        raise DeepDrawError(
            f"key 'search.select_task' is '{s.select_task}'; expected one of search.tasks "
            f"({', '.join(s.tasks)})"
        )
    return list(dict.fromkeys(s.families))


def search_dir(cfg: Config) -> Path:
    """``<out_dir>/search``."""
    return Path(cfg.out_dir) / "search"


def _family_seed(seed: int, family: str) -> int:
    ss = np.random.SeedSequence(int(seed), spawn_key=(SEED_STREAM_SEARCH, zlib.crc32(family.encode())))
    return int(ss.generate_state(1)[0])


def search_candidates(cfg: Config) -> list:
    """The :class:`~deepdraw.nn.models.ModelSpec` of every candidate, family by family (seeded)."""
    from deepdraw.nn.search import sample_architectures

    out = []
    for fam in check_search_section(cfg):
        out += sample_architectures(
            fam, cfg.search.n_per_family, _family_seed(cfg.run.seed, fam), grid=cfg.search.grid
        )
    return out


def _candidate_dir(cfg: Config, spec, task: str) -> Path:
    from deepdraw.nn.models import get_task

    name = spec.replace(regression=get_task(task).regression).name
    root = search_dir(cfg)
    return (root / "tdt_pv" if task == "tdt_pv" else root) / name


def search_output_paths(cfg: Config) -> list[Path]:
    """What :func:`run_search` leaves: its three tables and every candidate's folder (folders: a stale
    candidate must be removed whole)."""
    d = search_dir(cfg)
    tables = [d / "search_results.csv", d / "ranking.csv", d / "best_per_family.csv"]
    if not search_enabled(cfg):
        return tables
    specs = search_candidates(cfg)
    return tables + [_candidate_dir(cfg, s, t) for s in specs for t in cfg.search.tasks]


# ------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class _SearchJob:
    name: str  # architecture
    family: str
    task: str
    n_layers: int
    out_dir: str
    train_path: str
    test_path: str
    seed: int
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    min_epochs: int
    schedule: str
    val_fraction: float
    device: str | None
    target_alignment: str
    precision: str


def _search_task(job: _SearchJob) -> dict:
    """Train one candidate for one task with single-threaded torch; its results row. A Dask task."""
    import torch

    from deepdraw.nn.models import build_model
    from deepdraw.nn.runio import read_json, write_json
    from deepdraw.nn.stage import check_settings
    from deepdraw.nn.train import TrainConfig, evaluate, train_model

    out = Path(job.out_dir)
    device = job.device
    if device in (None, "cuda"):
        from deepdraw.parallel import task_device

        device = task_device() or device
    prev = torch.get_num_threads()
    try:
        tc = TrainConfig(
            model=job.name,
            train_path=job.train_path,
            test_path=job.test_path,
            out_dir=out,
            task=job.task,
            seed=job.seed,
            lr=job.lr,
            batch_size=job.batch_size,
            max_epochs=job.max_epochs,
            patience=job.patience,
            min_epochs=job.min_epochs,
            schedule=job.schedule,
            val_fraction=job.val_fraction,
            device=device,
            target_alignment=job.target_alignment,
            precision=job.precision,
            num_threads=1,
            quiet=True,
        )
        check_settings(out, read_json(out / "metrics.json"), tc)
        done = read_json(out / "search.json")
        if done.get("name") == job.name and done.get("task") == job.task and set(SEARCH_COLUMNS) <= set(done):
            return done
        m = train_model(tc).metrics
        tr = evaluate(out / "best.pt", job.train_path, rows=(0, int(m["n_train"])), device=device)
    finally:
        torch.set_num_threads(prev)
    model = build_model(job.name, job.task)
    readout = sum(p.numel() for p in model.readout.parameters())
    va, te = m.get("best_validation") or {}, m.get("test") or {}
    row = {
        "name": job.name,
        "family": job.family,
        "task": job.task,
        "model_name": m["model_name"],
        "n_layers": job.n_layers,
        "depth": len(model.layer_names),
        "parameters": int(m["n_parameters"]),
        "parameters_no_readout": int(m["n_parameters"]) - int(readout),
        "conv_weights": int(m["conv_weights"]),
        **{
            f"{split}_{k}": d.get(k, math.nan)
            for split, d in (("train", tr), ("val", va), ("test", te))
            for k in _METRICS
        },
        "epochs": m["epochs_run"],
        "best_epoch": m.get("best_epoch"),
        "stopped_by": m.get("stopped_by"),
        "wall_s": m["wall_time_s"],
        "directory": f"tdt_pv/{out.name}" if job.task == "tdt_pv" else out.name,
    }
    write_json(out / "search.json", row)
    return row


def _jobs(cfg: Config) -> list[_SearchJob]:
    from deepdraw.nn.runio import train_device
    from deepdraw.nn.stage import lr_batch

    rp = RunPaths.of(cfg)
    device = train_device(cfg.train.device)
    t = cfg.train
    jobs = []
    for spec in search_candidates(cfg):
        lr, batch = lr_batch(cfg, spec.family)
        for task in cfg.search.tasks:
            jobs.append(
                _SearchJob(
                    name=spec.name,
                    family=spec.family,
                    task=task,
                    n_layers=spec.n_layers,
                    out_dir=str(_candidate_dir(cfg, spec, task)),
                    train_path=str(rp.pcrt_train),
                    test_path=str(rp.pcrt_test),
                    seed=int(cfg.run.seed),
                    lr=lr,
                    batch_size=batch,
                    max_epochs=cfg.search.max_epochs,
                    patience=t.patience,
                    min_epochs=t.min_epochs,
                    schedule=t.schedule,
                    val_fraction=t.val_fraction,
                    device=device,
                    target_alignment=t.target_alignment,
                    precision=t.precision,
                )
            )
    return jobs


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


# ------------------------------------------------------------------------------------------- the stage
def run_search(cfg: Config, seeds: bool = True) -> pd.DataFrame:
    """The search (see the module docstring); then, with ``seeds``, every seed and task of ``[train]`` of
    the winners (:func:`~deepdraw.nn.stage.run_train`, ``search/seeds_summary.csv``). Returns the results
    table (:data:`SEARCH_COLUMNS` + ``best``)."""
    from deepdraw.nn.runio import require_data, write_csv
    from deepdraw.nn.stage import check_train_section

    families = check_search_section(cfg)
    if not search_enabled(cfg):
        raise DeepDrawError(
            "key 'search.n_per_family' is 0 (no search); expected a positive number of candidates per "
            "family (the paper: 50)"
        )
    check_train_section(cfg)
    require_data(RunPaths.of(cfg))
    sdir = search_dir(cfg)
    jobs = _jobs(cfg)
    logger.info(
        "search: %d candidates x %d tasks (%s)",
        len(jobs) // len(cfg.search.tasks),
        len(cfg.search.tasks),
        ", ".join(families),
    )
    with executor(cfg.parallel, cfg.run.quiet) as ex:
        rows = ex.map(_search_task, jobs, desc="search", gpu=True)
    table = pd.DataFrame(rows, columns=SEARCH_COLUMNS)
    s = cfg.search
    best = best_per_family(table, s.select_by, s.select_task)
    table["best"] = table["name"].isin(set(best["name"]))
    write_csv(sdir / "search_results.csv", table)
    write_csv(sdir / "ranking.csv", rank_candidates(table, s.select_by, s.select_task))
    write_csv(sdir / "best_per_family.csv", best)
    for _, r in best.iterrows():
        logger.info("best %s: %s (%s %.4g)", r["family"], r["name"], r["metric"], r[r["metric"]])
    if seeds:
        train_winners(cfg)
    return table


def train_winners(cfg: Config) -> pd.DataFrame:
    """Every seed and task of ``[train]`` of the search's winners (``search/best_per_family.csv``) into
    ``models/``, summary in ``search/seeds_summary.csv``: what ``deepdraw search`` does after the search
    stage unless ``--no-seeds`` (in the pipeline, ``[train] models = "search"`` does it instead)."""
    from deepdraw.nn.stage import run_train

    sdir = search_dir(cfg)
    best = pd.read_csv(sdir / "best_per_family.csv")
    return run_train(cfg, models=list(best["name"]), summary_path=sdir / "seeds_summary.csv")
