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
- reading the results back is :mod:`deepdraw.nn.search_results` (re-exported here): the tables' columns,
  :func:`rank_candidates` / :func:`best_per_family` (the ranking per family and task, by validation
  (default) or test metric, as described there) and :func:`search_winners` (the winners that
  ``[train] models = "search"`` trains).

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
from deepdraw.nn.search_results import (
    RANKING_COLUMNS,
    SEARCH_COLUMNS,
    SearchResultsMissing,
    best_per_family,
    rank_candidates,
    search_dir,
    search_winners,
    selection_metric,
)
from deepdraw.parallel import executor
from deepdraw.paths import RunPaths
from deepdraw.settings import Config
from deepdraw.value_checks import check_choice, check_count

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

_METRICS = ("loss", "accuracy", "error_cm")


# -------------------------------------------------------------------------------------------- config
def search_enabled(cfg: Config) -> bool:
    """Whether the run has a search stage (``[search] n_per_family > 0``)."""
    return cfg.search.n_per_family > 0


def check_search_section(cfg: Config) -> list[str]:
    """Checks of ``[search]`` (run by :func:`deepdraw.config.load_config`); returns the families searched,
    each once. ``n_per_family`` 0 is the default (no search); the other keys are checked either way."""
    from deepdraw.nn.models.families import FAMILIES
    from deepdraw.nn.models.tasks import TASKS
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
    check_count("search.max_epochs", s.max_epochs)
    if not s.tasks:
        raise DeepDrawError(f"key 'search.tasks' is empty; expected some of {', '.join(TASKS)}")
    for task in s.tasks:
        if task not in TASKS:
            raise DeepDrawError(f"key 'search.tasks' holds '{task}'; expected some of {', '.join(TASKS)}")
    check_choice("search.grid", s.grid, tuple(GRIDS))
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
    from deepdraw.nn.models.tasks import get_task

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

    from deepdraw.nn.models.build import build_model
    from deepdraw.nn.runio import read_json, write_json
    from deepdraw.nn.train import TrainConfig, evaluate, train_model
    from deepdraw.nn.train_stage import check_settings

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
    from deepdraw.nn.plan import lr_batch
    from deepdraw.nn.runio import train_device

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


# ------------------------------------------------------------------------------------------- the stage
def run_search(cfg: Config, seeds: bool = True) -> pd.DataFrame:
    """The search (see the module docstring); then, with ``seeds``, every seed and task of ``[train]`` of
    the winners (:func:`~deepdraw.nn.train_stage.run_train`, ``search/seeds_summary.csv``). Returns the
    results table (:data:`SEARCH_COLUMNS` + ``best``)."""
    from deepdraw.nn.runio import require_data, write_csv
    from deepdraw.nn.section import check_train_section

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
    from deepdraw.nn.train_stage import run_train

    sdir = search_dir(cfg)
    best = pd.read_csv(sdir / "best_per_family.csv")
    return run_train(cfg, models=list(best["name"]), summary_path=sdir / "seeds_summary.csv")
