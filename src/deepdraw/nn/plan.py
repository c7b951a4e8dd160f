"""The planned runs of the train stage: which architecture x task x seed runs ``[train]`` asks for,
their names and folders, and their learning rate and batch size.

- :func:`resolve_models`: ``[train] models``, or the winners of the architecture search for ``"search"``.
- :func:`planned_runs`: every run, as a :class:`PlannedRun`, in seed-major order.
- :func:`task_dir`: the folder of a task's runs or activations (``tdt_pv/`` under it for TDT-PV).
- :func:`lr_batch`: a family's learning rate and batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepdraw.errors import DeepDrawError
from deepdraw.nn.search_results import search_winners
from deepdraw.nn.section import check_train_section
from deepdraw.paths import RunPaths
from deepdraw.settings import Config

__all__ = ["PlannedRun", "task_dir", "resolve_models", "planned_runs", "lr_batch"]


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


def task_dir(root: Path, task: str) -> Path:
    """The folder of ``task``'s runs under ``root``: ``root/tdt_pv`` for TDT-PV (whose model names are
    those of TDT), ``root`` for the others."""
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
                    PlannedRun(arch.name, arch.family, task, int(seed), name, task_dir(root, task) / name)
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
