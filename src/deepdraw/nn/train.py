"""Training: configuration, the paper's schedule, evaluation and the training loop.

Training (:func:`train_model`, configured by :class:`TrainConfig`; one model's state is a
:class:`Trainer`, which :func:`deepdraw.nn.group.train_group` drives for several models at once):

- Adam (β 0.9/0.999, eps 1e-8); ``art``: softmax cross-entropy, ``tdt``/``tdt_pv``: MSE. Defaults as the
  original: lr 5e-4 and batch 256 for conv families; lr 1e-3 and batch 128 for the LSTM (the original's
  recurrent search, ``train_networks.py``; the paper says "same settings").
- Precision (``precision``, :mod:`deepdraw.nn.precision`): ``fp32`` is the reference path (the model's
  own NCHW convolutions); the default ``auto`` trains with the fast path (:mod:`deepdraw.nn.lowered`,
  bfloat16 where the hardware has it). Validation uses the training path; the final test metrics use
  the reference float32 forward, i.e. the model as every later stage sees it.
- Validation = the last ``val_fraction`` (10 %) of the training file, in file order, as the original.
  Validated once per epoch (the original every 100 steps).
- Schedule (paper, :class:`PlateauSchedule`): when the validation loss has not improved for ``patience``
  epochs, divide the lr by ``lr_divisor`` (4) and reload the best weights (and their optimizer state);
  stop at the second plateau or at ``max_epochs``. The original computed the plateau threshold in steps
  but counted validations, so with 144k samples it never fired: its effective schedule was a constant lr
  for ``num_epochs`` keeping the best-validation snapshot. ``schedule='constant'`` reproduces that.
- Randomness: the weights come from ``seed`` (a private generator); the batch order from ``data_seed``
  (default: ``seed``); dropout from the global torch RNG seeded with ``seed`` on the reference path, and
  from a generator of the model's own seeded with ``seed`` on the fast paths (so that models trained
  together keep their own streams). All of it is saved in ``last.pt``.
- Regression (TDT, TDT-PV) models get the original's ``_r_`` name marker
  (``spatial_temporal_r_4_..._7293_1``).
- Files in ``out_dir``: ``untrained.pt`` (exact initial weights, written before the first step: the
  untrained control, name suffix ``r``), ``best.pt`` (best validation loss), ``last.pt`` (end of every
  epoch, with optimizer, schedule, RNG state and history: a killed run resumes from it and ends with the
  same weights as an uninterrupted one on CPU), ``metrics.json``. Every file is written to a temporary
  name and renamed. Checkpoint layout: :mod:`deepdraw.nn.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from deepdraw.errors import DeepDrawError
from deepdraw.nn.activations import extract_activations
from deepdraw.nn.checkpoints import (
    check_same,
    load_checkpoint,
    load_into,
    read_checkpoint,
    resolve_device,
    rng_state,
    save_checkpoint,
    set_rng_state,
    versions,
    write_json,
)
from deepdraw.nn.data import BatchStream, check_pcrt, open_pcrt
from deepdraw.nn.lowered import LoweredForward
from deepdraw.nn.models import (
    DeepDrawNet,
    ModelSpec,
    build_model,
    conv_weight_count,
    get_family,
    get_task,
    parse_model_name,
)
from deepdraw.nn.precision import check_precision, resolve_precision, training_forward
from deepdraw.nn.targets import TargetSpec

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PlateauSchedule",
    "Trainer",
    "train_model",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "load_into",
    "extract_activations",
    "resolve_device",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- config
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


# ----------------------------------------------------------------------------------------- schedule
class PlateauSchedule:
    """The paper's schedule, driven once per epoch with the validation loss.

    :meth:`step` returns ``'improved'`` (new best: save it), ``'wait'``, ``'decay'`` (plateau: the lr
    is now ``lr / divisor``; reload the best weights) or ``'stop'`` (plateau number ``max_plateaus``).
    A plateau is ``patience`` consecutive epochs without a strictly lower loss. Before ``min_epochs``
    a final plateau decays instead of stopping (the original's 40-epoch rule). ``enabled=False`` never
    decays or stops (the original's effective schedule).
    """

    def __init__(
        self,
        lr: float,
        patience: int = 5,
        divisor: float = 4.0,
        max_plateaus: int = 2,
        min_epochs: int = 0,
        enabled: bool = True,
    ) -> None:
        self.lr = float(lr)
        self.patience = int(patience)
        self.divisor = float(divisor)
        self.max_plateaus = int(max_plateaus)
        self.min_epochs = int(min_epochs)
        self.enabled = bool(enabled)
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.plateaus = 0
        self.stopped = False

    def step(self, loss: float, epoch: int) -> str:
        if loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = float(loss), int(epoch), 0
            return "improved"
        self.bad_epochs += 1
        if not self.enabled or self.bad_epochs < self.patience:
            return "wait"
        self.bad_epochs = 0
        self.plateaus += 1
        if self.plateaus >= self.max_plateaus:
            if epoch >= self.min_epochs:
                self.stopped = True
                return "stop"
            self.plateaus = self.max_plateaus - 1
        self.lr /= self.divisor
        return "decay"

    def state_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "lr",
                "patience",
                "divisor",
                "max_plateaus",
                "min_epochs",
                "enabled",
                "best",
                "best_epoch",
                "bad_epochs",
                "plateaus",
                "stopped",
            )
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


# ------------------------------------------------------------------------------------------ metrics
class _Meter:
    """Running sums of loss and task metrics over batches (kept on the device; one sync at the end)."""

    def __init__(self, task: str, targets: TargetSpec) -> None:
        self.task, self.targets = task, targets
        self.sums: dict[str, torch.Tensor | float] = {}
        self.n = 0

    def _add(self, key, value) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        b = out.shape[0]
        self.n += b
        self._add("loss", loss.detach() * b)
        if self.task == "art":
            self._add("correct", (out.detach().argmax(1) == y).sum())
            return
        o, t = out.detach(), y
        if self.task == "tdt_pv":
            o, t = self.targets.unscale(o), self.targets.unscale(t)
            self._add("vel_err", torch.linalg.vector_norm(o[..., 3:6] - t[..., 3:6], dim=-1).mean(-1).sum())
        self._add("pos_err", torch.linalg.vector_norm(o[..., :3] - t[..., :3], dim=-1).mean(-1).sum())

    def result(self) -> dict:
        n = max(self.n, 1)
        r = {k: float(v) / n for k, v in self.sums.items()}
        out = {"loss": r.get("loss", math.nan), "n": self.n}
        if self.task == "art":
            out["accuracy"] = r.get("correct", math.nan)
        else:
            out["error_cm"] = r.get("pos_err", math.nan)
            if self.task == "tdt_pv":
                out["rmse_scaled"] = math.sqrt(out["loss"]) if out["loss"] >= 0 else math.nan
                out["velocity_error_cm_s"] = r.get("vel_err", math.nan)
        return out


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y) if task == "art" else F.mse_loss(out, y)


@torch.no_grad()
def _evaluate_stream(
    model: DeepDrawNet,
    stream: BatchStream,
    targets: TargetSpec,
    quiet: bool,
    desc: str,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Metrics of ``model`` over one pass of ``stream``; ``forward`` computes it (default the model)."""
    model.eval()
    forward = forward or model
    meter = _Meter(model.task, targets)
    for x, y in tqdm(stream.epoch(0), total=len(stream), desc=desc, disable=quiet, leave=False):
        out = forward(x)
        meter.update(out, y, _loss(model.task, out, y))
    return meter.result()


def evaluate(
    model_or_checkpoint: DeepDrawNet | str | os.PathLike,
    path: str | os.PathLike,
    *,
    rows: tuple[int, int] | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    targets: TargetSpec | None = None,
    cache_gb: float = 0.0,
    quiet: bool = True,
) -> dict:
    """Evaluate a model (or checkpoint) on rows ``[a, b)`` (default all) of a PCRT file.

    Returns ``{'loss', 'n', 'accuracy'}`` for ``art``; ``{'loss' (MSE), 'n', 'error_cm'}`` for ``tdt``
    (mean Euclidean distance per output frame, cm); ``tdt_pv`` adds ``rmse_scaled`` and
    ``velocity_error_cm_s``. A checkpoint brings its own targets (frames, scaler).
    """
    dev = resolve_device(device)
    if isinstance(model_or_checkpoint, DeepDrawNet):
        model = model_or_checkpoint.to(dev)
        if targets is None:
            if model.task == "tdt_pv":
                raise DeepDrawError(
                    "Evaluating a tdt_pv model object needs targets= with the training min-max scaler."
                )
            targets = TargetSpec.for_model(model)
    else:
        model, ck = load_checkpoint(model_or_checkpoint, device=dev)
        targets = targets or TargetSpec.from_state(ck["targets"])
    n = check_pcrt(path, model.task, model.input_shape, rows)
    rows = rows or (0, n)
    stream = BatchStream(
        path, rows, batch_size, targets, device=dev, cache_bytes=int(cache_gb * 2**30), quiet=quiet
    )
    return _evaluate_stream(model, stream, targets, quiet, f"eval {Path(path).name}")


# ----------------------------------------------------------------------------------------- training
def _check_config(cfg: TrainConfig) -> tuple[ModelSpec, str]:
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


class Trainer:
    """One model's training: its weights, optimizer, schedule, data streams, files and history.

    :func:`train_model` drives one; :func:`deepdraw.nn.group.train_group` drives several on shared
    batches. The protocol per epoch: :meth:`begin_epoch`, :meth:`step` per batch of
    ``train_stream.epoch(trainer.epoch)``, :meth:`end_epoch`; then :meth:`finish`. Construction sets up
    the output folder (``untrained.pt``) or resumes from ``last.pt``.
    """

    def __init__(self, cfg: TrainConfig, *, streams: tuple[BatchStream, BatchStream | None] | None = None):
        self.cfg = cfg
        spec, task = _check_config(cfg)
        self.spec, self.task = spec, task
        self.seed = seed = spec.seed if spec.seed is not None else 0
        self.data_seed = int(cfg.data_seed) if cfg.data_seed is not None else seed
        fam = get_family(spec.family)
        lr = float(cfg.lr if cfg.lr is not None else fam.default_lr)
        self.batch_size = resolve_batch_size(cfg)
        self.device = device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cudnn.deterministic = cfg.deterministic
            if self.precision != "fp32":  # TF32 for the float32 parts of the fast paths
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
        if cfg.num_threads is not None:
            torch.set_num_threads(int(cfg.num_threads))
        out = self.out = Path(cfg.out_dir)
        self.paths = {k: out / f"{k}.pt" for k in ("untrained", "best", "last")}
        self.metrics_path = out / "metrics.json"

        self.model = model = build_model(spec, task, seed=seed)
        self.n_total = n_total = check_pcrt(cfg.train_path, task, model.input_shape)
        self.n_val = n_val = int(round(n_total * cfg.val_fraction))
        self.n_train = n_train = n_total - n_val
        if n_train < 1 or (cfg.val_fraction > 0 and n_val < 1):
            raise DeepDrawError(
                f"PCRT file {cfg.train_path} has {n_total} rows; too few for a train/validation split at val_fraction={cfg.val_fraction}."
            )
        n_test = check_pcrt(cfg.test_path, task, model.input_shape) if cfg.test_path else 0
        self.targets = TargetSpec.for_model(model, cfg.target_alignment)
        out.mkdir(parents=True, exist_ok=True)

        self.history: list[dict] = []
        self.wall = 0.0
        self.epoch = 0
        self.schedule = PlateauSchedule(
            lr, cfg.patience, cfg.lr_divisor, cfg.max_plateaus, cfg.min_epochs, cfg.schedule == "paper"
        )
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.forward = training_forward(model, self.precision)
        self.generator: torch.Generator | None = None
        if isinstance(self.forward, LoweredForward):  # the fast path draws dropout from its own generator
            self.generator = torch.Generator(device=device).manual_seed(seed)
            self.forward.generator = self.generator
        if cfg.resume and self.paths["last"].exists():
            self._resume()
        else:
            self._start()
        self.train_stream, self.val_stream = streams if streams is not None else self.make_streams()
        self.base = {
            "model_name": spec.name,
            "task": task,
            "family": spec.family,
            "seed": seed,
            "data_seed": self.data_seed,
            "device": str(device),
            "precision": self.precision,
            "lr_initial": lr,
            "batch_size": self.batch_size,
            "n_train": n_train,
            "n_val": n_val,
            "n_test": n_test,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "conv_weights": conv_weight_count(model),
            "target_frames": None if self.targets.frames is None else [int(f) for f in self.targets.frames],
            "config": cfg.to_dict(),
            "versions": versions(),
        }
        self._meter: _Meter | None = None
        self._t0 = 0.0

    # ---- set-up
    def _start(self) -> None:
        cfg, paths = self.cfg, self.paths
        if not cfg.resume and (paths["last"].exists() or paths["best"].exists()):
            raise DeepDrawError(
                f"Output folder {self.out} already holds a training run; pass resume=True or use another folder."
            )
        if self.task == "tdt_pv":
            self.targets.fit_scaler(
                _target_blocks(cfg.train_path, self.targets.key, self.n_train, cfg.chunk_rows)
            )
        self.model.to(self.device)
        save_checkpoint(
            paths["untrained"],
            self.model,
            kind="untrained",
            targets=self.targets,
            epoch=0,
            extra={"config": cfg.to_dict()},
        )
        torch.manual_seed(self.seed)  # dropout stream; the weights came from their own generator
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(self.seed)

    def _resume(self) -> None:
        last = self.paths["last"]
        ck = read_checkpoint(last)
        check_same(last, ck, self.spec, self.task)
        if ck["spec"].get("seed") != self.spec.seed:
            raise DeepDrawError(
                f"Checkpoint {last} was trained with seed {ck['spec'].get('seed')}, not {self.spec.seed}; "
                "use another output folder for another seed."
            )
        self.model.load_state_dict(ck["state_dict"])
        self.model.to(self.device)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        held = ck.get("precision")
        if held is None:  # written before the precision was recorded: the dropout stream tells the path
            fast = "dropout" in ck["rng"]
            held = self.precision if fast == (self.precision != "fp32") else ("bf16" if fast else "fp32")
        if held != self.precision:
            raise DeepDrawError(
                f"Checkpoint {last} was trained with precision '{held}', this run resolves to "
                f"'{self.precision}'; resume it with precision = '{held}' or use another output folder."
            )
        set_rng_state(ck["rng"])
        if self.generator is not None:
            self.generator.set_state(ck["rng"]["dropout"])
        self.targets = TargetSpec.from_state(ck["targets"])
        self.history, self.wall, self.epoch = list(ck["history"]), float(ck["wall_time_s"]), int(ck["epoch"])
        logger.info("resuming %s from epoch %d (%s)", self.spec.name, self.epoch, last)

    def make_streams(self) -> tuple[BatchStream, BatchStream | None]:
        """The training stream (shuffled by ``data_seed``) and the validation stream of this run."""
        cfg = self.cfg
        per_row = int(np.prod(self.model.input_shape)) * 4
        budget = _cache_budget(cfg.cache_gb, self.device)
        cache = budget if self.n_total * per_row <= budget else 0
        common: dict[str, Any] = dict(
            device=self.device, chunk_rows=cfg.chunk_rows, cache_bytes=cache, quiet=True
        )
        rows = (0, self.n_train)
        train = BatchStream(
            cfg.train_path, rows, self.batch_size, self.targets, shuffle=True, seed=self.data_seed,
            drop_last=True, **common,
        )  # fmt: skip
        val = None
        if self.n_val:
            val_rows = (self.n_train, self.n_total)
            val = BatchStream(cfg.train_path, val_rows, cfg.eval_batch_size, self.targets, **common)
        return train, val

    # ---- epochs
    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.max_epochs or self.schedule.stopped

    def begin_epoch(self) -> None:
        self.epoch += 1
        self._t0 = time.perf_counter()
        self.model.train()
        self._meter = _Meter(self.task, self.targets)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step on batch ``(x, y)``."""
        self.optimizer.zero_grad(set_to_none=True)
        o = self.forward(x)
        loss = _loss(self.task, o, y)
        loss.backward()
        self.optimizer.step()
        assert self._meter is not None
        self._meter.update(o, y, loss)

    def end_epoch(self) -> dict:
        """Validation, the schedule's decision, checkpoints and ``metrics.json``; the epoch's row."""
        assert self._meter is not None
        epoch, paths = self.epoch, self.paths
        tr = self._meter.result()
        va = tr
        if self.val_stream is not None:
            va = _evaluate_stream(
                self.model, self.val_stream, self.targets, True, "val", forward=self.forward
            )
        lr_used = self.optimizer.param_groups[0]["lr"]
        action = self.schedule.step(va["loss"], epoch)
        if action == "improved":
            extra: dict[str, Any] = {
                "optimizer": self.optimizer.state_dict(),
                "validation": va,
                "config": self.cfg.to_dict(),
            }
            save_checkpoint(
                paths["best"], self.model, kind="best", targets=self.targets, epoch=epoch, extra=extra
            )
        elif action == "decay":
            self._decay(epoch)
        dt = time.perf_counter() - self._t0
        self.wall += dt
        row = {"epoch": epoch, "lr": lr_used, "action": action, "time_s": dt}
        row.update({f"train_{k}": v for k, v in tr.items() if k != "n"})
        row.update({f"val_{k}": v for k, v in va.items() if k != "n"})
        self.history.append(row)
        rng = rng_state()
        if self.generator is not None:
            rng["dropout"] = self.generator.get_state()
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rng,
            "history": self.history,
            "wall_time_s": self.wall,
            "finished": False,
            "precision": self.precision,
            "config": self.cfg.to_dict(),
        }
        save_checkpoint(
            paths["last"], self.model, kind="last", targets=self.targets, epoch=epoch, extra=extra
        )
        write_json(
            self.metrics_path,
            {
                **self.base,
                "epochs": self.history,
                "epochs_run": epoch,
                "wall_time_s": self.wall,
                "finished": False,
            },
        )
        logger.info(
            "%s epoch %d: train loss %.4g, val loss %.4g, lr %.3g (%s, %.1f s)",
            self.spec.name, epoch, tr["loss"], va["loss"], lr_used, action, dt,
        )  # fmt: skip
        return row

    def _decay(self, epoch: int) -> None:
        if self.paths["best"].exists():
            best = read_checkpoint(self.paths["best"])
            self.model.load_state_dict(best["state_dict"])
            self.optimizer.load_state_dict(best["optimizer"])
            logger.info("plateau at epoch %d: best weights of epoch %d reloaded", epoch, best["epoch"])
        else:  # no finite validation loss yet
            logger.warning("plateau at epoch %d without a best checkpoint; weights kept", epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = self.schedule.lr
        logger.info("plateau at epoch %d: lr -> %.3g", epoch, self.schedule.lr)

    # ---- end
    def finish(self) -> TrainResult:
        """Best weights back in the model, test metrics (reference float32 forward), ``metrics.json``."""
        cfg, paths, model = self.cfg, self.paths, self.model
        best_ck = load_into(model, paths["best"]) if paths["best"].exists() else None
        metrics = {
            **self.base,
            "epochs": self.history,
            "epochs_run": self.epoch,
            "wall_time_s": self.wall,
            "finished": True,
            "stopped_by": "schedule" if self.schedule.stopped else "max_epochs",
            "best_epoch": None if best_ck is None else int(best_ck["epoch"]),
            "best_val_loss": None if best_ck is None else best_ck["validation"]["loss"],
            "final_lr": self.optimizer.param_groups[0]["lr"],
        }
        if best_ck is not None:
            metrics["best_validation"] = best_ck["validation"]
        if cfg.test_path:
            test = evaluate(
                model,
                cfg.test_path,
                batch_size=cfg.eval_batch_size,
                device=self.device,
                targets=self.targets,
                cache_gb=_cache_budget(cfg.cache_gb, self.device) / 2**30 / 2,
                quiet=cfg.quiet,
            )
            metrics["test"] = test
            if self.task == "art":
                metrics["test_accuracy"] = test["accuracy"]
            else:
                metrics["test_error_cm"] = test["error_cm"]
                if self.task == "tdt_pv":
                    metrics["test_rmse_scaled"] = test["rmse_scaled"]
        write_json(self.metrics_path, metrics)
        return TrainResult(
            self.out, paths["untrained"], paths["best"], paths["last"], self.metrics_path, metrics
        )


def train_model(config: TrainConfig) -> TrainResult:
    """Train one network (see module docstring); resumes from ``out_dir/last.pt`` when present."""
    t = Trainer(config)
    quiet = config.quiet
    bar = tqdm(
        total=config.max_epochs, initial=min(t.epoch, config.max_epochs), desc=t.spec.name, disable=quiet
    )
    while not t.done:
        t.begin_epoch()
        batches = t.train_stream.epoch(t.epoch)
        for x, y in tqdm(
            batches, total=len(t.train_stream), desc=f"epoch {t.epoch}", disable=quiet, leave=False
        ):
            t.step(x, y)
        row = t.end_epoch()
        bar.update(1)
        bar.set_postfix(val_loss=f"{row['val_loss']:.4g}")
    bar.close()
    return t.finish()


def _cache_budget(cache_gb: float | None, device: torch.device) -> int:
    """Bytes a data file may take when cached on ``device``."""
    if cache_gb is not None:
        return int(cache_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 2)
    try:
        import psutil

        return int(psutil.virtual_memory().available // 2)
    except ImportError:  # pragma: no cover - psutil comes with dask's distributed
        return 2 * 2**30


def _target_blocks(path, key: str, stop: int, chunk_rows: int):
    with open_pcrt(path) as f:
        for a in range(0, stop, chunk_rows):
            yield f[key][a : min(a + chunk_rows, stop)]
