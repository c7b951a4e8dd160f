"""Training, checkpoints, evaluation and activation extraction.

Training (:func:`train_model`, configured by :class:`TrainConfig`):

- Adam (β 0.9/0.999, eps 1e-8); ``art``: softmax cross-entropy, ``tdt``/``tdt_pv``: MSE. Defaults as the
  original: lr 5e-4 and batch 256 for conv families; lr 1e-3 and batch 128 for the LSTM (the original's
  recurrent search, ``train_networks.py``; the paper says "same settings").
- Validation = the last ``val_fraction`` (10 %) of the training file, in file order, as the original.
  Validated once per epoch (the original every 100 steps).
- Schedule (paper, :class:`PlateauSchedule`): when the validation loss has not improved for ``patience``
  epochs, divide the lr by ``lr_divisor`` (4) and reload the best weights (and their optimizer state);
  stop at the second plateau or at ``max_epochs``. The original computed the plateau threshold in steps
  but counted validations, so with 144k samples it never fired: its effective schedule was a constant lr
  for ``num_epochs`` keeping the best-validation snapshot. ``schedule='constant'`` reproduces that.
- Regression (TDT, TDT-PV) models get the original's ``_r_`` name marker
  (``spatial_temporal_r_4_..._7293_1``).
- Files in ``out_dir``: ``untrained.pt`` (exact initial weights, written before the first step: the
  untrained control, name suffix ``r``), ``best.pt`` (best validation loss), ``last.pt`` (end of every
  epoch, with optimizer, schedule, RNG state and history: a killed run resumes from it and ends with the
  same weights as an uninterrupted one on CPU), ``metrics.json``. Every file is written to a temporary
  name and renamed.

Checkpoint layout (``torch.save`` of a dict, loadable with ``weights_only=True``)::

    format 'deepdraw.nn.checkpoint', version 1, kind 'untrained' | 'best' | 'last',
    model_name, spec (ModelSpec fields), task, n_outputs, input_shape, trained (bool),
    state_dict, epoch, targets (TargetSpec.state(): task, frames, scale_min, scale_max, dt),
    config, versions;
    best/last also: optimizer; last also: schedule, rng, history, wall_time_s, finished.

Activations (:func:`extract_activations`), one HDF5 per model::

    layers/{input, <layer>...}  (n, rows, frames, channels) float32 (recurrent_out: (n, 1, 320, units))
    centres/{input, <layer>...} (frames,) int64: input frame at the receptive-field centre of each frame
    outputs                     (n, 20) logits, or (n, frames', 3|6) regression outputs (TDT-PV scaled)
    kinematics/endeffector_coords, kinematics/joint_coords    copied rows (when present in the source)
    label, plane, start_id, end_id, size, rot, shear_x, shear_y, speed   copied rows (when present)
    sample_index                (n,) int64 rows of the source file, in the order given
    attrs: model_name, task, trained, layer_names (input first), source, deepdraw_version, torch_version
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import deepdraw
from deepdraw.errors import DeepDrawError
from deepdraw.nn.data import INPUT_KEY, BatchStream, check_pcrt, open_pcrt
from deepdraw.nn.models import (
    DeepDrawNet,
    ModelSpec,
    build_model,
    conv_weight_count,
    get_family,
    get_task,
    parse_model_name,
)
from deepdraw.nn.targets import TargetSpec, layer_centres
from deepdraw.store import file_sha256

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PlateauSchedule",
    "train_model",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "load_into",
    "extract_activations",
    "resolve_device",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "deepdraw.nn.checkpoint"
CHECKPOINT_VERSION = 1


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` or, when None, CUDA if available else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
            (None: half the free GPU memory on CUDA, 2 GiB on CPU); otherwise stream it from HDF5.
        eval_batch_size: batch size for validation/test.
        target_alignment: TDT target frames: ``centre`` (receptive-field centres) or ``original``.
        resume: continue from ``out_dir/last.pt`` when present; with False an existing run is an error.
        deterministic: on CUDA, ask cuDNN for deterministic kernels (slower); CPU is deterministic.
        num_threads: set torch's intra-op CPU threads (None: leave as is). On a shared machine, fewer
            threads than cores avoids the large slow-down of oversubscribed OpenMP threads.
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


# -------------------------------------------------------------------------------------- checkpoints
def _versions() -> dict:
    return {
        "deepdraw": str(deepdraw.__version__),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
    }


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: dict) -> None:
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1, default=str)

    _atomic(path, write)


def save_checkpoint(
    path: str | os.PathLike,
    model: DeepDrawNet,
    *,
    kind: str,
    targets: TargetSpec | None = None,
    epoch: int = 0,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (its spec, task and weights, on CPU) atomically to ``path``; see module docs."""
    path = Path(path)
    trained = kind != "untrained"
    spec = model.spec.replace(untrained=not trained)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ck = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "model_name": spec.name,
        "spec": spec.to_dict(),
        "task": model.task,
        "n_outputs": model.n_outputs,
        "input_shape": list(model.input_shape),
        "trained": trained,
        "state_dict": state,
        "epoch": int(epoch),
        "targets": (targets or TargetSpec.for_model(model)).state(),
        "versions": _versions(),
    }
    ck.update(extra or {})
    _atomic(path, lambda tmp: torch.save(ck, tmp))
    return path


def _read_checkpoint(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise DeepDrawError(f"Checkpoint {p} does not exist.")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DeepDrawError(f"Checkpoint {p} could not be read as a deepdraw checkpoint ({exc}).") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise DeepDrawError(
            f"Checkpoint {p} is not a deepdraw network checkpoint (format '{CHECKPOINT_FORMAT}')."
        )
    return ck


def _check_same(path, ck: dict, spec: ModelSpec, task: str | None) -> None:
    held = ModelSpec.from_dict(ck["spec"])
    if held.architecture != spec.architecture:
        raise DeepDrawError(
            f"Checkpoint {path} holds model '{held.name}', but the expected architecture is '{spec.architecture.name}'."
        )
    if task is not None and ck["task"] != task:
        raise DeepDrawError(
            f"Checkpoint {path} holds a '{ck['task']}' model, but task '{task}' was expected."
        )


def load_checkpoint(
    path: str | os.PathLike,
    expected: ModelSpec | str | None = None,
    *,
    task: str | None = None,
    device: str | torch.device | None = "cpu",
) -> tuple[DeepDrawNet, dict]:
    """Rebuild the network stored in ``path``; returns ``(model in eval mode, checkpoint dict)``.

    With ``expected`` (a spec or name) or ``task``, a checkpoint of another architecture or task raises
    :class:`DeepDrawError` (seed and untrained suffix are ignored in that comparison).
    """
    ck = _read_checkpoint(path)
    spec = ModelSpec.from_dict(ck["spec"])
    if expected is not None or task is not None:
        _check_same(path, ck, parse_model_name(expected) if expected is not None else spec, task)
    model = build_model(spec, ck["task"], input_shape=tuple(ck["input_shape"]))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise DeepDrawError(f"Checkpoint {path} weights do not fit model '{spec.name}' ({exc}).") from None
    return model.to(resolve_device(device)).eval(), ck


def load_into(model: DeepDrawNet, path: str | os.PathLike) -> dict:
    """Load the weights of checkpoint ``path`` into ``model``; another architecture or task raises."""
    ck = _read_checkpoint(path)
    _check_same(path, ck, model.spec, model.task)
    model.load_state_dict(ck["state_dict"])
    return ck


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    model: DeepDrawNet, stream: BatchStream, targets: TargetSpec, quiet: bool, desc: str
) -> dict:
    model.eval()
    meter = _Meter(model.task, targets)
    for x, y in tqdm(stream.epoch(0), total=len(stream), desc=desc, disable=quiet, leave=False):
        out = model(x)
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
def train_model(config: TrainConfig) -> TrainResult:
    """Train one network (see module docstring); resumes from ``out_dir/last.pt`` when present."""
    cfg = config
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
    if cfg.seed is not None:
        spec = spec.replace(seed=int(cfg.seed))
    regression = get_task(task).regression
    if spec.regression and not regression:
        raise DeepDrawError(
            f"Model name '{spec.name}' marks a regression model ('_r_'), but the training task is '{task}'."
        )
    # as the original, regression (TDT) models carry '_r_' after the family in their name
    spec = spec.replace(untrained=False, regression=regression)
    seed = spec.seed if spec.seed is not None else 0
    fam = get_family(spec.family)
    lr = float(cfg.lr if cfg.lr is not None else fam.default_lr)
    batch_size = int(cfg.batch_size if cfg.batch_size is not None else fam.default_batch_size)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic

    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.out_dir)
    paths = {k: out / f"{k}.pt" for k in ("untrained", "best", "last")}
    metrics_path = out / "metrics.json"

    # ---- data
    model = build_model(spec, task, seed=seed)
    n_total = check_pcrt(cfg.train_path, task, model.input_shape)
    n_val = int(round(n_total * cfg.val_fraction))
    n_train = n_total - n_val
    if n_train < 1 or (cfg.val_fraction > 0 and n_val < 1):
        raise DeepDrawError(
            f"PCRT file {cfg.train_path} has {n_total} rows; too few for a train/validation split at val_fraction={cfg.val_fraction}."
        )
    n_test = check_pcrt(cfg.test_path, task, model.input_shape) if cfg.test_path else 0
    targets = TargetSpec.for_model(model, cfg.target_alignment)
    out.mkdir(parents=True, exist_ok=True)

    # ---- state: fresh or resumed
    history: list[dict] = []
    wall = 0.0
    start_epoch = 0
    schedule = PlateauSchedule(
        lr, cfg.patience, cfg.lr_divisor, cfg.max_plateaus, cfg.min_epochs, cfg.schedule == "paper"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    resumed = cfg.resume and paths["last"].exists()
    if resumed:
        ck = _read_checkpoint(paths["last"])
        _check_same(paths["last"], ck, spec, task)
        if ck["spec"].get("seed") != spec.seed:
            raise DeepDrawError(
                f"Checkpoint {paths['last']} was trained with seed {ck['spec'].get('seed')}, not {spec.seed}; "
                "use another output folder for another seed."
            )
        model.load_state_dict(ck["state_dict"])
        model.to(device)
        optimizer.load_state_dict(ck["optimizer"])
        schedule.load_state_dict(ck["schedule"])
        _set_rng_state(ck["rng"])
        targets = TargetSpec.from_state(ck["targets"])
        history, wall, start_epoch = list(ck["history"]), float(ck["wall_time_s"]), int(ck["epoch"])
        logger.info("resuming %s from epoch %d (%s)", spec.name, start_epoch, paths["last"])
    else:
        if not cfg.resume and (paths["last"].exists() or paths["best"].exists()):
            raise DeepDrawError(
                f"Output folder {out} already holds a training run; pass resume=True or use another folder."
            )
        if task == "tdt_pv":
            targets.fit_scaler(_target_blocks(cfg.train_path, targets.key, n_train, cfg.chunk_rows))
        model.to(device)
        save_checkpoint(
            paths["untrained"],
            model,
            kind="untrained",
            targets=targets,
            epoch=0,
            extra={"config": cfg.to_dict()},
        )
        torch.manual_seed(seed)  # dropout stream; the weights came from their own generator
        if device.type == "cuda":
            torch.cuda.manual_seed_all(seed)

    per_row = int(np.prod(model.input_shape)) * 4
    budget = _cache_budget(cfg.cache_gb, device)
    cache = budget if n_total * per_row <= budget else 0
    common = dict(device=device, chunk_rows=cfg.chunk_rows, cache_bytes=cache, quiet=True)
    train_stream = BatchStream(
        cfg.train_path, (0, n_train), batch_size, targets, shuffle=True, seed=seed, drop_last=True, **common
    )
    val_stream = (
        BatchStream(cfg.train_path, (n_train, n_total), cfg.eval_batch_size, targets, **common)
        if n_val
        else None
    )

    base = {
        "model_name": spec.name,
        "task": task,
        "family": spec.family,
        "seed": seed,
        "device": str(device),
        "lr_initial": lr,
        "batch_size": batch_size,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "conv_weights": conv_weight_count(model),
        "target_frames": None if targets.frames is None else [int(f) for f in targets.frames],
        "config": cfg.to_dict(),
        "versions": _versions(),
    }

    # ---- epochs
    bar = tqdm(
        total=cfg.max_epochs, initial=min(start_epoch, cfg.max_epochs), desc=spec.name, disable=cfg.quiet
    )
    epoch = start_epoch
    while epoch < cfg.max_epochs and not schedule.stopped:
        epoch += 1
        t0 = time.perf_counter()
        model.train()
        meter = _Meter(task, targets)
        for x, y in tqdm(
            train_stream.epoch(epoch),
            total=len(train_stream),
            desc=f"epoch {epoch}",
            disable=cfg.quiet,
            leave=False,
        ):
            optimizer.zero_grad(set_to_none=True)
            o = model(x)
            loss = _loss(task, o, y)
            loss.backward()
            optimizer.step()
            meter.update(o, y, loss)
        tr = meter.result()
        va = _evaluate_stream(model, val_stream, targets, True, "val") if val_stream is not None else tr
        lr_used = optimizer.param_groups[0]["lr"]
        action = schedule.step(va["loss"], epoch)
        if action == "improved":
            save_checkpoint(
                paths["best"],
                model,
                kind="best",
                targets=targets,
                epoch=epoch,
                extra={"optimizer": optimizer.state_dict(), "validation": va, "config": cfg.to_dict()},
            )
        elif action == "decay":
            if paths["best"].exists():
                best = _read_checkpoint(paths["best"])
                model.load_state_dict(best["state_dict"])
                optimizer.load_state_dict(best["optimizer"])
                logger.info("plateau at epoch %d: best weights of epoch %d reloaded", epoch, best["epoch"])
            else:  # no finite validation loss yet
                logger.warning("plateau at epoch %d without a best checkpoint; weights kept", epoch)
            for g in optimizer.param_groups:
                g["lr"] = schedule.lr
            logger.info("plateau at epoch %d: lr -> %.3g", epoch, schedule.lr)
        dt = time.perf_counter() - t0
        wall += dt
        row = {"epoch": epoch, "lr": lr_used, "action": action, "time_s": dt}
        row.update({f"train_{k}": v for k, v in tr.items() if k != "n"})
        row.update({f"val_{k}": v for k, v in va.items() if k != "n"})
        history.append(row)
        save_checkpoint(
            paths["last"],
            model,
            kind="last",
            targets=targets,
            epoch=epoch,
            extra={
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": _rng_state(),
                "history": history,
                "wall_time_s": wall,
                "finished": False,
                "config": cfg.to_dict(),
            },
        )
        _write_json(
            metrics_path,
            {**base, "epochs": history, "epochs_run": epoch, "wall_time_s": wall, "finished": False},
        )
        logger.info(
            "epoch %d: train loss %.4g, val loss %.4g, lr %.3g (%s, %.1f s)",
            epoch,
            tr["loss"],
            va["loss"],
            lr_used,
            action,
            dt,
        )
        bar.update(1)
        bar.set_postfix(val_loss=f"{va['loss']:.4g}")
    bar.close()

    # ---- final: best weights, test
    best_ck = load_into(model, paths["best"]) if paths["best"].exists() else None
    metrics = {
        **base,
        "epochs": history,
        "epochs_run": epoch,
        "wall_time_s": wall,
        "finished": True,
        "stopped_by": "schedule" if schedule.stopped else "max_epochs",
        "best_epoch": None if best_ck is None else int(best_ck["epoch"]),
        "best_val_loss": None if best_ck is None else best_ck["validation"]["loss"],
        "final_lr": optimizer.param_groups[0]["lr"],
    }
    if best_ck is not None:
        metrics["best_validation"] = best_ck["validation"]
    if cfg.test_path:
        test = evaluate(
            model,
            cfg.test_path,
            batch_size=cfg.eval_batch_size,
            device=device,
            targets=targets,
            cache_gb=_cache_budget(cfg.cache_gb, device) / 2**30,
            quiet=cfg.quiet,
        )
        metrics["test"] = test
        if task == "art":
            metrics["test_accuracy"] = test["accuracy"]
        else:
            metrics["test_error_cm"] = test["error_cm"]
            if task == "tdt_pv":
                metrics["test_rmse_scaled"] = test["rmse_scaled"]
    _write_json(metrics_path, metrics)
    return TrainResult(out, paths["untrained"], paths["best"], paths["last"], metrics_path, metrics)


def _cache_budget(cache_gb: float | None, device: torch.device) -> int:
    """Bytes a data file may take when cached on ``device``."""
    if cache_gb is not None:
        return int(cache_gb * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 2)
    return 2 * 2**30


def _target_blocks(path, key: str, stop: int, chunk_rows: int):
    with open_pcrt(path) as f:
        for a in range(0, stop, chunk_rows):
            yield f[key][a : min(a + chunk_rows, stop)]


# -------------------------------------------------------------------------------------- activations
_KINEMATICS = {
    "endeffector_coords": "kinematics/endeffector_coords",
    "joint_coords": "kinematics/joint_coords",
}
_COPY = ("label", "plane", "start_id", "end_id", "size", "rot", "shear_x", "shear_y", "speed")


def extract_activations(
    checkpoint_or_model: DeepDrawNet | str | os.PathLike,
    test_path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    out_path: str | os.PathLike,
    batch: int = 100,
    *,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Path:
    """Run rows ``indices`` of ``test_path`` through a model and write every layer to one HDF5 file.

    Layout in the module docstring. The file is written to ``out_path + '.tmp'`` and renamed, so a killed
    run never leaves a complete-looking file. An existing ``out_path`` is an error unless ``overwrite``.
    """
    dev = resolve_device(device)
    if isinstance(checkpoint_or_model, DeepDrawNet):
        model = checkpoint_or_model.to(dev).eval()
        name, trained = model.spec.name, not model.spec.untrained
    else:
        model, ck = load_checkpoint(checkpoint_or_model, device=dev)
        name, trained = ck["model_name"], bool(ck["trained"])
    ck_sha = "" if isinstance(checkpoint_or_model, DeepDrawNet) else file_sha256(checkpoint_or_model)
    n_rows = check_pcrt(test_path, None, model.input_shape)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise DeepDrawError("extract_activations got no sample indices; expected at least one row index.")
    if idx.min() < 0 or idx.max() >= n_rows:
        raise DeepDrawError(
            f"Sample indices for {test_path} span {int(idx.min())}..{int(idx.max())}; expected 0..{n_rows - 1}."
        )
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise DeepDrawError(f"Activation file {out_path} already exists; pass overwrite=True to replace it.")
    tmp = out_path.with_name(out_path.name + ".tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n, batch = len(idx), max(int(batch), 1)
    centres = layer_centres(model)
    ok = False
    try:
        with open_pcrt(test_path) as src, h5py.File(tmp, "w") as dst:
            copies = {k: v for k, v in _KINEMATICS.items() if k in src}
            copies.update({k: k for k in _COPY if k in src})
            for k, dname in copies.items():
                d = src[k]
                if d.shape[:1] != (n_rows,):
                    continue
                dst.create_dataset(dname, shape=(n,) + d.shape[1:], dtype=d.dtype)
            dst.create_dataset("sample_index", data=idx)
            dst.create_dataset("centres/input", data=np.arange(model.input_shape[1], dtype=np.int64))
            for lname, c in centres.items():
                dst.create_dataset(f"centres/{lname}", data=c)
            created = False
            with torch.no_grad():
                for a in tqdm(range(0, n, batch), desc=f"activations {name}", disable=quiet):
                    bidx = idx[a : a + batch]
                    uniq, inv = np.unique(bidx, return_inverse=True)
                    x = np.asarray(src[INPUT_KEY][uniq], dtype=np.float32)[inv]
                    out, layers = model(torch.from_numpy(x).to(dev), return_layers=True)
                    arrays = {"input": x}
                    for lname, t in layers.items():
                        t = t.float().cpu().numpy()
                        arrays[lname] = t[:, None] if t.ndim == 3 else t
                    if not created:
                        for lname, arr in arrays.items():
                            dst.create_dataset(
                                f"layers/{lname}",
                                shape=(n,) + arr.shape[1:],
                                dtype=np.float32,
                                chunks=(min(batch, n),) + arr.shape[1:],
                                compression="lzf",  # ReLU maps compress ~4x at no read cost
                            )
                        dst.create_dataset("outputs", shape=(n,) + tuple(out.shape[1:]), dtype=np.float32)
                        created = True
                    s = slice(a, a + len(bidx))
                    for lname, arr in arrays.items():
                        dst[f"layers/{lname}"][s] = arr
                    dst["outputs"][s] = out.float().cpu().numpy()
                    for k, dname in copies.items():
                        if dname in dst:
                            dst[dname][s] = src[k][uniq][inv]
            dst.attrs["model_name"] = name
            dst.attrs["task"] = model.task
            dst.attrs["trained"] = bool(trained)
            dst.attrs["layer_names"] = ["input", *model.layer_names]
            dst.attrs["source"] = str(test_path)
            dst.attrs["checkpoint_sha256"] = ck_sha  # "" for an in-memory model
            dst.attrs["deepdraw_version"] = deepdraw.__version__
            dst.attrs["torch_version"] = str(torch.__version__)
        os.replace(tmp, out_path)
        ok = True
    finally:
        if not ok and tmp.exists():
            tmp.unlink()
    return out_path
