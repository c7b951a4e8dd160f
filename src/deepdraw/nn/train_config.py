"""A training run's configuration (:class:`TrainConfig`), its checks and its result (:class:`TrainResult`).

The training itself: :mod:`deepdraw.nn.train` (one model) and :mod:`deepdraw.nn.group` (several at once).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from deepdraw.errors import DeepDrawError
from deepdraw.nn.models.families import get_family
from deepdraw.nn.models.spec import ModelSpec, parse_model_name
from deepdraw.nn.models.tasks import get_task
from deepdraw.nn.precision import check_precision

__all__ = ["TrainConfig", "TrainResult", "check_train_config", "resolve_batch_size"]


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        model: model name (e.g. ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``) or :class:`ModelSpec`.
        train_path: PCRT training file; its last ``val_fraction`` rows are the validation set.
        out_dir: where checkpoints and ``metrics.json`` go.
        task: ``art``, ``tdt`` or ``tdt_pv``.
        test_path: PCRT test file, evaluated with the best weights at the end (optional).
        lr, batch_size: None = family default (conv 5e-4 / 256, lstm 1e-3 / 128).
        max_epochs: epoch cap (the original: 50).
        patience: epochs without validation improvement before a plateau (5).
        lr_divisor: lr divisor at a plateau (4).
        max_plateaus: stop at this plateau (2: "after the second plateau").
        min_epochs: no stop before this epoch (the original's 40-epoch rule; 0 = off).
        schedule: ``paper`` (above) or ``constant`` (the original's effective behaviour, no decay/stop).
        seed: weight-init, dropout and shuffling seed; None = the name's seed, else 0. A given seed
            is written into the model name (``_{seed}``).
        val_fraction: fraction of the training file held out (last rows).
        device: None = CUDA when available, else CPU.
        quiet: no progress bars.
        chunk_rows: rows per HDF5 block when streaming.
        cache_gb: cache the whole training file as float32 on the device when it fits in this many GiB
            (None: half the free GPU memory on CUDA, half the available RAM on CPU); otherwise stream
            it from HDF5 in blocks.
        eval_batch_size: batch size for validation/test.
        target_alignment: TDT target frames: ``centre`` (receptive-field centres) or ``original``.
        resume: continue from ``out_dir/last.pt`` when present; with False an existing run is an error.
        deterministic: on CUDA, ask cuDNN for deterministic kernels (slower); CPU is deterministic.
        num_threads: set torch's intra-op CPU threads (None: leave as is). On a shared machine, fewer
            threads than cores avoids the large slow-down of oversubscribed OpenMP threads.
        precision: ``auto`` (default: the fast path, bfloat16 where native), ``bf16``, ``fast32`` or
            ``fp32`` (the exact reference path); see :mod:`deepdraw.nn.precision`.
        data_seed: seed of the batch order (None: ``seed``). Models trained together share one.
    """

    model: str | ModelSpec
    train_path: str | os.PathLike
    out_dir: str | os.PathLike
    task: str = "art"
    test_path: str | os.PathLike | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_epochs: int = 50
    patience: int = 5
    lr_divisor: float = 4.0
    max_plateaus: int = 2
    min_epochs: int = 0
    schedule: str = "paper"
    seed: int | None = None
    val_fraction: float = 0.1
    device: str | None = None
    quiet: bool = False
    chunk_rows: int = 2048
    cache_gb: float | None = None
    eval_batch_size: int = 512
    target_alignment: str = "centre"
    resume: bool = True
    deterministic: bool = False
    num_threads: int | None = None
    precision: str = "auto"
    data_seed: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.name if isinstance(self.model, ModelSpec) else str(self.model)
        for k in ("train_path", "out_dir", "test_path"):
            d[k] = None if d[k] is None else str(d[k])
        return d


@dataclass
class TrainResult:
    """Paths written by :func:`train_model` and its final metrics (also in ``metrics.json``)."""

    out_dir: Path
    untrained_path: Path
    best_path: Path
    last_path: Path
    metrics_path: Path
    metrics: dict


def check_train_config(cfg: TrainConfig) -> tuple[ModelSpec, str]:
    """The run's model spec (seed and ``_r_`` marker set) and task; bad settings raise."""
    spec = parse_model_name(cfg.model) if not isinstance(cfg.model, ModelSpec) else cfg.model
    task = get_task(cfg.task).name
    if cfg.schedule not in ("paper", "constant"):
        raise DeepDrawError(
            f"Unknown schedule '{cfg.schedule}' in the training config; expected 'paper' or 'constant'."
        )
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise DeepDrawError(
            f"Training config val_fraction is {cfg.val_fraction}; expected a value in [0, 1)."
        )
    if cfg.max_epochs < 0:
        raise DeepDrawError(f"Training config max_epochs is {cfg.max_epochs}; expected >= 0.")
    check_precision(cfg.precision, "Training config precision")
    if cfg.seed is not None:
        spec = spec.replace(seed=int(cfg.seed))
    regression = get_task(task).regression
    if spec.regression and not regression:
        raise DeepDrawError(
            f"Model name '{spec.name}' marks a regression model ('_r_'), but the training task is '{task}'."
        )
    # as the original, regression (TDT) models carry '_r_' after the family in their name
    return spec.replace(untrained=False, regression=regression), task


def resolve_batch_size(cfg: TrainConfig) -> int:
    """``cfg.batch_size``, or the family's default (conv 256, LSTM 128) when it is None."""
    spec = parse_model_name(cfg.model) if not isinstance(cfg.model, ModelSpec) else cfg.model
    return int(cfg.batch_size if cfg.batch_size is not None else get_family(spec.family).default_batch_size)
