"""Stage 3 orchestration: training the model list, the architecture search, activations, evaluation.

Functions (see ``docs/training.md``):

- :func:`run_train`: every model of ``[train] models`` x ``tasks`` x ``seeds`` trained with
  :func:`~deepdraw.nn.train.train_model` into ``models/<name>/`` (``models/tdt_pv/<name>/`` for TDT-PV,
  whose name would otherwise collide with the TDT one). Finished runs (``metrics.json`` with ``finished``)
  are skipped, killed ones resume from ``last.pt``. Each run's ``untrained.pt`` (its exact initial weights)
  is the untrained control of that seed; it is evaluated too (cached in ``untrained_metrics.json``).
  The table of all runs goes to ``models/summary.csv``.
- the architecture search is :mod:`deepdraw.nn.search_stage`; ``[train] models = "search"`` trains
  its winners (:func:`resolve_models`, read by :mod:`deepdraw.nn.search_results`).
- :func:`run_activations`: every trained model (``best.pt``) and untrained control (``untrained.pt``) of
  the train table run on one seeded subset of the test file, ``activations/<name>.h5`` (untrained names
  end in ``r``; TDT-PV files in ``activations/tdt_pv/``).
- :func:`run_evaluate`: metrics of one checkpoint on one PCRT file.

Seeds: the activation subset is drawn with ``SeedSequence(run.seed, spawn_key=(6,))``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deepdraw import store
from deepdraw.contracts import SEED_STREAM_ACTIVATIONS
from deepdraw.errors import DeepDrawError
from deepdraw.nn.runio import check_device_name, read_json, require_data, train_device, write_csv, write_json
from deepdraw.nn.search_results import search_winners
from deepdraw.parallel import executor
from deepdraw.paths import RunPaths
from deepdraw.settings import Config

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
]
"""Columns of ``models/summary.csv`` (one row per trained model and one per untrained control); ``source``
is ``run`` (trained in this run) or ``zoo`` (a shipped paper-scale model, ``[train] source = "zoo"``)."""

_METRIC_KEYS = ("loss", "accuracy", "error_cm", "rmse_scaled", "velocity_error_cm_s")


# --------------------------------------------------------------------------------------------- helpers
def _metric_cols(prefix: str, m: dict | None) -> dict:
    m = m or {}
    return {f"{prefix}_{k}": m.get(k, math.nan) for k in _METRIC_KEYS}


def _check_choice(key: str, value: str, options: Sequence[str]) -> None:
    if value not in options:
        raise DeepDrawError(f"key '{key}' is '{value}'; expected one of {', '.join(options)}")


def check_train_section(cfg: Config) -> None:
    """Checks of ``[train]`` (run by :func:`deepdraw.config.load_config`): choices, ranges, the device
    name (whether CUDA exists is checked when training starts), tasks, seeds and model names."""
    from deepdraw.nn.models.spec import parse_model_name
    from deepdraw.nn.models.tasks import TASKS
    from deepdraw.nn.precision import check_precision

    t = cfg.train
    _check_choice("train.schedule", t.schedule, ("paper", "constant"))
    _check_choice("train.target_alignment", t.target_alignment, ("centre", "original"))
    _check_choice("train.group", t.group, ("none", "seeds"))
    _check_choice("train.source", t.source, ("train", "zoo", "auto"))
    check_precision(t.precision, "key 'train.precision'")
    for key, v in (
        ("train.max_epochs", t.max_epochs),
        ("train.patience", t.patience),
        ("train.batch_size", t.batch_size),
        ("train.lstm_batch_size", t.lstm_batch_size),
    ):
        if v < 1:
            raise DeepDrawError(f"key '{key}' is {v}; expected a positive integer")
    if t.min_epochs < 0:
        raise DeepDrawError(f"key 'train.min_epochs' is {t.min_epochs}; expected 0 (off) or more")
    for key, rate in (("train.lr", t.lr), ("train.lstm_lr", t.lstm_lr)):
        if not (math.isfinite(rate) and rate > 0):
            raise DeepDrawError(f"key '{key}' is {rate}; expected a positive learning rate")
    if not 0 < t.val_fraction < 1:
        raise DeepDrawError(f"key 'train.val_fraction' is {t.val_fraction}; expected 0 < x < 1")
    if t.num_threads < 0:
        raise DeepDrawError(
            f"key 'train.num_threads' is {t.num_threads}; expected 0 (default) or a positive integer"
        )
    check_device_name("train.device", t.device)
    if isinstance(t.models, str):
        if t.models != "search":
            raise DeepDrawError(
                f"key 'train.models' is '{t.models}'; expected a list of model names or \"search\" (the "
                "winners of the architecture search)"
            )
        if cfg.search.n_per_family < 1:
            raise DeepDrawError(
                "key 'train.models' is \"search\" but search.n_per_family is 0 (no search); expected "
                "search.n_per_family > 0, or a list of model names"
            )
    elif not t.models:
        raise DeepDrawError("key 'train.models' is empty; expected at least one model name")
    if not t.tasks:
        raise DeepDrawError(f"key 'train.tasks' is empty; expected some of {', '.join(TASKS)}")
    for task in t.tasks:
        if task not in TASKS:
            raise DeepDrawError(f"key 'train.tasks' holds '{task}'; expected some of {', '.join(TASKS)}")
    if not t.seeds:
        raise DeepDrawError("key 'train.seeds' is empty; expected at least one seed (the paper: 1..5)")
    for s in t.seeds:
        if s < 0:
            raise DeepDrawError(f"key 'train.seeds' holds {s}; expected non-negative integers")
    for raw in [] if isinstance(t.models, str) else t.models:
        try:
            parse_model_name(raw)
        except DeepDrawError as e:
            raise DeepDrawError(f"key 'train.models' holds '{raw}': {e}") from None


def check_activations_section(cfg: Config) -> None:
    """Checks of ``[activations]``."""
    for key in ("n_samples", "batch_size"):
        v = getattr(cfg.activations, key)
        if v < 1:
            raise DeepDrawError(f"key 'activations.{key}' is {v}; expected a positive integer")


# ---------------------------------------------------------------------------------------- the runs
@dataclass(frozen=True)
class PlannedRun:
    """One training run of :func:`run_train`: an architecture, a task and a seed."""

    architecture: str  # name without seed, regression or untrained markers
    family: str
    task: str
    seed: int
    name: str  # trained model name: '_r_' for regression tasks, '_{seed}' at the end
    directory: Path  # models/<name> (models/tdt_pv/<name> for TDT-PV)

    @property
    def untrained_name(self) -> str:
        return self.name + "r"

    def checkpoint(self, trained: bool) -> Path:
        return self.directory / ("best.pt" if trained else "untrained.pt")


def _task_dir(root: Path, task: str) -> Path:
    return root / "tdt_pv" if task == "tdt_pv" else root


def resolve_models(cfg: Config, models: Sequence[str] | None = None) -> list[str]:
    """The architectures to train: ``models`` when given, else ``[train] models``; ``"search"`` there
    stands for the winners of the architecture search
    (:func:`~deepdraw.nn.search_results.search_winners`, an error naming the missing table)."""
    if models is not None:
        return list(models)
    if isinstance(cfg.train.models, str):
        return search_winners(cfg)
    return list(cfg.train.models)


def planned_runs(cfg: Config, models: Sequence[str] | None = None) -> list[PlannedRun]:
    """Runs of ``models`` (default ``[train] models``) x ``[train] tasks`` x ``[train] seeds``, checked.

    Seed-major order (every model and task of seed 1, then of seed 2, ...), so that a long run stopped
    part-way leaves complete seeds to compare tasks and architectures on.

    ``[train] models = "search"``: the search's winners (:func:`resolve_models`).
    A seed, ``_r_`` or ``r`` in a given model name is ignored: ``[train] seeds`` and the task decide.
    Unknown families, malformed names and unknown tasks raise :class:`DeepDrawError`. With ``[train]
    source = "zoo"`` only the runs the zoo ships are planned (an error when it ships none of them).
    """
    from deepdraw.nn.models.spec import parse_model_name
    from deepdraw.nn.models.tasks import get_task

    check_train_section(cfg)
    names = resolve_models(cfg, models)
    if not names:
        raise DeepDrawError("no model names given; expected at least one")
    tasks = [get_task(t).name for t in cfg.train.tasks]
    root = RunPaths.of(cfg).models
    out: list[PlannedRun] = []
    seen: set[tuple[str, str]] = set()
    zoo = cfg.train.source == "zoo" and models is None
    if zoo:
        from deepdraw.zoo import available

        shipped = set(available())
    archs = [parse_model_name(raw).architecture for raw in names]
    for seed in cfg.train.seeds:  # seed-major: a stopped run leaves whole seeds of every model and task
        for arch in archs:
            for task in tasks:
                name = arch.replace(seed=int(seed), regression=get_task(task).regression).name
                if (name, task) in seen or (zoo and name not in shipped):
                    continue
                seen.add((name, task))
                out.append(
                    PlannedRun(arch.name, arch.family, task, int(seed), name, _task_dir(root, task) / name)
                )
    if zoo and not out:
        raise DeepDrawError(
            "train.source is 'zoo', but the zoo ships none of train.models x tasks x seeds; "
            f"shipped: {', '.join(sorted(shipped)) or 'none'} (deepdraw zoo list)"
        )
    return out


def lr_batch(cfg: Config, family: str) -> tuple[float, int]:
    """Learning rate and batch size of a ``family`` from ``[train]`` (the LSTM has its own)."""
    from deepdraw.nn.models.families import get_family

    if get_family(family).recurrent:
        return float(cfg.train.lstm_lr), int(cfg.train.lstm_batch_size)
    return float(cfg.train.lr), int(cfg.train.batch_size)


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
        row for i, (run, tc, out_dir) in enumerate(jobs) for row in _summary_rows(run, tc, out_dir, done[i])
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
            run.name, run.directory, tc.test_path, device=tc.device, batch_size=tc.eval_batch_size
        )
        rows += _summary_rows(run, tc, out_dir, metrics)
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


def _summary_rows(run: PlannedRun, tc, out_dir: str, metrics: dict) -> list[dict]:
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


# ------------------------------------------------------------------------------------------ activations
def activation_indices(cfg: Config, n_test: int) -> np.ndarray:
    """Sorted rows of the test file whose activations are extracted, the same for every model.

    ``[activations] n_samples`` rows drawn without replacement with
    ``SeedSequence(run.seed, spawn_key=(6,))``; all rows when the file is not larger (or n_samples <= 0).
    """
    n_test = int(n_test)
    if n_test < 1:
        raise DeepDrawError(f"activation_indices: the test file has {n_test} rows; expected at least one")
    k = int(cfg.activations.n_samples)
    if k <= 0 or k >= n_test:
        return np.arange(n_test, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.run.seed, spawn_key=(SEED_STREAM_ACTIVATIONS,)))
    return np.sort(rng.choice(n_test, size=k, replace=False)).astype(np.int64)


def _activation_file(cfg: Config, name: str, task: str) -> Path:
    return _task_dir(RunPaths.of(cfg).activations, task) / f"{name}.h5"


def _activation_jobs(cfg: Config, table: pd.DataFrame | None) -> list[tuple[Path, Path, str]]:
    """``(checkpoint, activations file, model name)`` for every row of the train table."""
    if table is None:
        jobs = []
        for r in planned_runs(cfg):
            jobs.append((r.checkpoint(True), _activation_file(cfg, r.name, r.task), r.name))
            jobs.append(
                (r.checkpoint(False), _activation_file(cfg, r.untrained_name, r.task), r.untrained_name)
            )
        return jobs
    missing = {"model", "task", "checkpoint"} - set(table.columns)
    if missing:
        raise DeepDrawError(f"run_activations: the train table lacks columns {sorted(missing)}")
    jobs = []
    for _, row in table.iterrows():
        ck = Path(row["checkpoint"])
        ck = ck if ck.is_absolute() else Path(cfg.out_dir) / ck
        jobs.append((ck, _activation_file(cfg, str(row["model"]), str(row["task"])), str(row["model"])))
    return jobs


def activation_paths(cfg: Config) -> list[Path]:
    """The activations files :func:`run_activations` writes for ``cfg`` (two per planned run)."""
    return [out for _, out, _ in _activation_jobs(cfg, None)]


def _up_to_date(path: Path, name: str, idx: np.ndarray, checkpoint: Path) -> bool:
    """Same model name, same sample rows and the same checkpoint bytes (a resumed training rewrites it)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            same = np.array_equal(f["sample_index"][()], idx)
            held = f.attrs.get("model_name")
            held = held.decode() if isinstance(held, bytes) else held
            sha = f.attrs.get("checkpoint_sha256", "")
            sha = sha.decode() if isinstance(sha, bytes) else sha
    except (OSError, KeyError):
        return False
    return bool(same and held == name and sha == store.file_sha256(checkpoint))


def run_activations(cfg: Config, table: pd.DataFrame | None = None) -> list[Path]:
    """Activations of every model of the train table on the seeded test subset; the files written.

    ``table`` defaults to the planned runs of ``cfg`` (the rows of ``models/summary.csv``): trained models
    from ``best.pt``, untrained controls from ``untrained.pt``. An existing file with the same model and
    sample rows is kept; one with other rows is rewritten.
    """
    from deepdraw.nn.data import check_pcrt
    from deepdraw.nn.train import extract_activations

    rp = RunPaths.of(cfg)
    if not rp.pcrt_test.is_file():
        raise DeepDrawError(
            f"{rp.pcrt_test}: PCRT test file not found; run 'deepdraw dataset assemble' first"
        )
    if cfg.activations.batch_size < 1:
        raise DeepDrawError(
            f"activations.batch_size is {cfg.activations.batch_size}; expected a positive integer"
        )
    device = train_device(cfg.train.device)
    jobs = _activation_jobs(cfg, table)
    for ck, _, name in jobs:
        if not ck.is_file():
            raise DeepDrawError(f"{ck}: checkpoint of '{name}' not found; run 'deepdraw train' first")
    idx = activation_indices(cfg, check_pcrt(rp.pcrt_test))
    out: list[Path] = []
    for ck, path, name in tqdm(jobs, desc="activations", unit="model", disable=cfg.run.quiet):
        if _up_to_date(path, name, idx, ck):
            logger.info("%s: up to date, skipped", path)
        else:
            if path.exists():
                logger.warning("%s: other model, checkpoint or sample rows; rewritten", path)
            extract_activations(
                ck,
                rp.pcrt_test,
                idx,
                path,
                cfg.activations.batch_size,
                device=device,
                overwrite=True,
                quiet=True,
                expected=name,
                config=cfg.to_dict(["activations"]),
                seeds={"seed": cfg.run.seed, "spawn_key": [SEED_STREAM_ACTIVATIONS]},
            )
        out.append(path)
    return out


# --------------------------------------------------------------------------------------------- evaluate
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
