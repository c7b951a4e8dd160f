"""The train stage, ``deepdraw train``: every planned run trained (or installed from the zoo) and the
summary table written.

- :func:`run_train`: every model of ``[train] models`` x ``tasks`` x ``seeds``
  (:func:`~deepdraw.nn.plan.planned_runs`) trained with :func:`~deepdraw.nn.train.train_model` into
  ``models/<name>/`` (``models/tdt_pv/<name>/`` for TDT-PV, whose name would otherwise collide with the
  TDT one), in this process or as Dask tasks; with ``[train] group = "seeds"`` the seeds of a model and
  task are trained together on shared batches. Finished runs (``metrics.json`` with ``finished``) are
  skipped, killed ones resume from ``last.pt``; a run folder trained with other :data:`RUN_SETTINGS` is
  refused (:func:`check_settings`). With ``[train] source`` "zoo" or "auto" shipped models are
  installed instead of trained. Each run's ``untrained.pt`` (its exact initial weights) is the untrained
  control of that seed; it is evaluated too (cached in ``untrained_metrics.json``). The table of all
  runs goes to ``models/summary.csv`` (:mod:`deepdraw.nn.summary`).
- :func:`train_output_paths`: what :func:`run_train` leaves.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from deepdraw.errors import DeepDrawError
from deepdraw.nn.plan import PlannedRun, lr_batch, planned_runs, resolve_models
from deepdraw.nn.runio import read_json, require_data, train_device, write_csv
from deepdraw.nn.section import check_train_section
from deepdraw.nn.summary import SUMMARY_COLUMNS, summary_rows
from deepdraw.parallel import executor
from deepdraw.paths import RunPaths
from deepdraw.settings import Config

__all__ = ["RUN_SETTINGS", "check_settings", "run_train", "train_output_paths"]

logger = logging.getLogger("deepdraw.nn.stage")  # the train stage's logger name, as before the split


def _train_config(cfg: Config, run: PlannedRun, quiet: bool):
    from deepdraw.nn.train import TrainConfig

    rp = RunPaths.of(cfg)
    lr, batch = lr_batch(cfg, run.family)
    return TrainConfig(
        model=run.architecture,
        train_path=str(rp.pcrt_train),
        test_path=str(rp.pcrt_test),
        out_dir=str(run.directory),
        task=run.task,
        seed=run.seed,
        lr=lr,
        batch_size=batch,
        max_epochs=cfg.train.max_epochs,
        patience=cfg.train.patience,
        min_epochs=cfg.train.min_epochs,
        schedule=cfg.train.schedule,
        val_fraction=cfg.train.val_fraction,
        device=train_device(cfg.train.device),
        target_alignment=cfg.train.target_alignment,
        num_threads=cfg.train.num_threads or None,
        precision=cfg.train.precision,
        quiet=quiet,
    )


RUN_SETTINGS = (
    "lr",
    "batch_size",
    "max_epochs",
    "patience",
    "lr_divisor",
    "max_plateaus",
    "min_epochs",
    "schedule",
    "val_fraction",
    "target_alignment",
)
"""Training settings an existing run folder must share with the config to be reused or resumed."""


def check_settings(directory: Path, metrics: dict, tc) -> None:
    """Refuse a run folder whose ``metrics`` were trained with other :data:`RUN_SETTINGS` than ``tc``."""
    held, want = metrics.get("config") or {}, tc.to_dict()
    diff = [
        f"{k}={held[k]!r} (config: {want[k]!r})" for k in RUN_SETTINGS if k in held and held[k] != want[k]
    ]
    if diff:
        raise DeepDrawError(
            f"{directory}: holds a run trained with {', '.join(diff)}; "
            "delete the folder or use another run.out_dir"
        )


def _train_job(jobs: list[tuple]) -> list[dict]:
    """Train (or skip) the runs of one group (one run, or several on shared batches with ``[train]
    group``); their trained and untrained summary rows. A Dask task."""
    from deepdraw.nn.group import train_group
    from deepdraw.nn.train import train_model

    jobs = [(run, _on_task_device(tc), out_dir) for run, tc, out_dir in jobs]
    done: dict[int, dict] = {}
    todo = []
    for i, (run, tc, _) in enumerate(jobs):
        metrics = read_json(run.directory / "metrics.json")
        check_settings(run.directory, metrics, tc)
        if metrics.get("finished"):
            _check_finished(run)
            logger.info("%s (%s): finished run found, skipped", run.name, run.task)
            done[i] = metrics
        else:
            todo.append(i)
    if len(todo) == 1:
        done[todo[0]] = train_model(jobs[todo[0]][1]).metrics
    elif todo:
        results = train_group([jobs[i][1] for i in todo])
        done.update({i: r.metrics for i, r in zip(todo, results, strict=True)})
    return [
        row for i, (run, tc, out_dir) in enumerate(jobs) for row in summary_rows(run, tc, out_dir, done[i])
    ]


def _on_task_device(tc):
    """``tc`` on the GPU that the Dask worker running this task owns (:func:`deepdraw.parallel.task_device`),
    when ``[train] device`` is "auto" or "cuda"; unchanged outside such a task."""
    import dataclasses

    from deepdraw.parallel import task_device

    device = task_device()
    if device is None or tc.device not in (None, "cuda"):
        return tc
    return dataclasses.replace(tc, device=device)


def _check_finished(run: PlannedRun) -> None:
    """A finished run's checkpoints open and hold its model (a truncated or foreign file is an error)."""
    from deepdraw.nn.checkpoints import read_checkpoint

    for trained in (True, False):
        path = run.checkpoint(trained)
        name = run.name if trained else run.untrained_name
        try:
            held = read_checkpoint(path).get("model_name")
        except DeepDrawError as exc:
            raise DeepDrawError(
                f"{run.directory}: metrics.json says the run finished, but {exc} Delete the folder to train "
                "it again."
            ) from None
        if held != name:
            raise DeepDrawError(f"{path}: field 'model_name' is '{held}'; expected '{name}'")


def _zoo_job(jobs: list[tuple]) -> list[dict]:
    """Install the shipped models of ``jobs`` (``[train] source = "zoo"``); their summary rows."""
    from deepdraw.zoo.install import install_run

    rows = []
    for run, tc, out_dir in jobs:
        tc = _on_task_device(tc)
        metrics = install_run(
            run.name,
            run.directory,
            tc.test_path,
            train_path=tc.train_path,
            device=tc.device,
            batch_size=tc.eval_batch_size,
        )
        rows += summary_rows(run, tc, out_dir, metrics)
    return rows


def _run_group(task: tuple) -> list[dict]:
    """One Dask task of :func:`run_train`: ``(job function, its jobs)``."""
    job, jobs = task
    return job(jobs)


def _trained_here(run: PlannedRun) -> bool:
    """Whether ``run``'s folder holds training done in this run (finished, or a ``last.pt`` to resume)."""
    if (run.directory / "last.pt").is_file():
        return True
    metrics = read_json(run.directory / "metrics.json")
    return bool(metrics) and metrics.get("source") != "zoo"


def _from_zoo(cfg: Config, runs: Sequence[PlannedRun]) -> set[str]:
    """Names of the runs installed from the zoo instead of trained: all of them with ``[train] source =
    "zoo"``; with "auto" those the zoo ships whose folder holds no training of this run (a finished or
    started run of this run folder always wins: it is never replaced by the shipped model)."""
    if cfg.train.source == "train":
        return set()
    if cfg.train.source == "zoo":
        return {r.name for r in runs}
    from deepdraw.zoo import available

    shipped = set(available())
    return {r.name for r in runs if r.name in shipped and not _trained_here(r)}


def _groups(jobs: list[tuple], how: str) -> list[list[tuple]]:
    """Jobs cut into groups trained together: ``seeds`` = one group per (architecture, task)."""
    if how == "none":
        return [[j] for j in jobs]
    groups: dict[tuple[str, str], list[tuple]] = {}
    for j in jobs:
        groups.setdefault((j[0].architecture, j[0].task), []).append(j)
    return list(groups.values())


def run_train(
    cfg: Config, models: Sequence[str] | None = None, summary_path: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Train every planned run (see :func:`planned_runs`) and write the summary table.

    Runs go in order in this process (torch uses the cores), or as Dask tasks with ``parallel.mode``
    "scheduler" or "slurm", or "local" with ``parallel.gpus`` (one worker per GPU; each task takes one). Returns the table written to ``summary_path`` (default
    ``models/summary.csv``), columns :data:`SUMMARY_COLUMNS`; ``checkpoint`` is relative to ``run.out_dir``.
    """
    check_train_section(cfg)
    names = resolve_models(cfg, models)
    runs = planned_runs(cfg, models)
    rp = RunPaths.of(cfg)
    require_data(rp)
    quiet = cfg.run.quiet
    p = cfg.parallel
    distributed = p.mode in ("scheduler", "slurm") or (p.mode == "local" and p.gpus > 0)
    if cfg.train.source == "zoo":
        n_req = len(names) * len(cfg.train.tasks) * len(cfg.train.seeds)
        if len(runs) < n_req:
            logger.warning(
                "train.source = 'zoo': %d of the %d planned runs are shipped (deepdraw zoo list); the others "
                "are left out",
                len(runs),
                n_req,
            )
    jobs = [(r, _train_config(cfg, r, quiet or distributed), str(cfg.out_dir)) for r in runs]
    logger.info(
        "training %d runs (%d models x %d tasks x %d seeds)",
        len(runs),
        len(names),
        len(cfg.train.tasks),
        len(cfg.train.seeds),
    )
    t0 = time.perf_counter()
    from_zoo = _from_zoo(cfg, runs)
    if cfg.train.source == "auto" and from_zoo:
        logger.info(
            "train.source = 'auto': %d shipped runs installed from the zoo, not trained: %s",
            len(from_zoo),
            ", ".join(sorted(from_zoo)),
        )
    zoo_jobs = [j for j in jobs if j[0].name in from_zoo]
    train_jobs = [j for j in jobs if j[0].name not in from_zoo]
    tasks = [(_zoo_job, [j]) for j in zoo_jobs] + [
        (_train_job, g) for g in _groups(train_jobs, cfg.train.group)
    ]
    if distributed:
        with executor(cfg.parallel, quiet) as ex:
            results = ex.map(_run_group, tasks, desc="train", gpu=True)
    else:
        results = [_run_group(t) for t in tqdm(tasks, desc="train", unit="group", disable=quiet)]
    order = {j[0].name: i for i, j in enumerate(jobs)}  # summary rows in the planned order
    results.sort(
        key=lambda rows: min(order.get(r["model"], len(order)) for r in rows) if rows else len(order)
    )
    table = pd.DataFrame([row for rows in results for row in rows], columns=SUMMARY_COLUMNS)
    out = Path(summary_path) if summary_path is not None else rp.models / "summary.csv"
    write_csv(out, table)
    logger.info("%d runs in %.1f s; summary in %s", len(runs), time.perf_counter() - t0, out)
    return table


def train_output_paths(cfg: Config) -> list[Path]:
    """What :func:`run_train` leaves: ``models/summary.csv`` and every run's folder.

    Folders, not files: a stale run must be removed whole (a ``last.pt`` left alone would be resumed).
    """
    return [RunPaths.of(cfg).models / "summary.csv", *(r.directory for r in planned_runs(cfg))]
