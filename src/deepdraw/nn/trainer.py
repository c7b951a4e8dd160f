"""One model's training state and epoch protocol (:class:`Trainer`); see :mod:`deepdraw.nn.train`."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepdraw.errors import DeepDrawError
from deepdraw.nn.checkpoints import (
    check_same,
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
from deepdraw.nn.evaluation import Meter, evaluate, evaluate_stream, task_loss
from deepdraw.nn.hostmem import release_free_memory, reuse_freed_memory
from deepdraw.nn.lowered import LoweredForward
from deepdraw.nn.models.build import build_model
from deepdraw.nn.models.families import get_family
from deepdraw.nn.models.networks import conv_weight_count
from deepdraw.nn.precision import FAST_PATHS, resolve_precision, training_forward
from deepdraw.nn.schedule import PlateauSchedule
from deepdraw.nn.targets import TargetSpec
from deepdraw.nn.train_config import TrainConfig, TrainResult, check_train_config, resolve_batch_size

__all__ = ["Trainer", "configure_torch"]

logger = logging.getLogger("deepdraw.nn.train")  # the training logger name, as before the split


class Trainer:
    """One model's training: its weights, optimizer, schedule, data streams, files and history.

    :func:`train_model` drives one; :func:`deepdraw.nn.group.train_group` drives several on shared
    batches. The protocol per epoch: :meth:`begin_epoch`, :meth:`step` per batch of
    ``train_stream.epoch(trainer.epoch)``, :meth:`end_epoch`; then :meth:`finish`. Construction sets up
    the output folder (``untrained.pt``) or resumes from ``last.pt``.
    """

    def __init__(self, cfg: TrainConfig, *, streams: tuple[BatchStream, BatchStream | None] | None = None):
        self.cfg = cfg
        spec, task = check_train_config(cfg)
        self.spec, self.task = spec, task
        self.seed = seed = spec.seed if spec.seed is not None else 0
        self.data_seed = int(cfg.data_seed) if cfg.data_seed is not None else seed
        fam = get_family(spec.family)
        lr = float(cfg.lr if cfg.lr is not None else fam.default_lr)
        self.batch_size = resolve_batch_size(cfg)
        self.device = device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, device, task)
        configure_torch(cfg, device, self.precision)
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
        # the fast paths update all weights in one fused kernel (the same Adam; the reference keeps
        # torch's default per-tensor loop, so fp32 runs stay bit-identical with earlier ones)
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            fused=True if self.precision != "fp32" else None,
        )
        self._use_forward()
        if cfg.resume and self.paths["last"].exists():
            self._resume()
        else:
            self._start()
        self.train_stream, self.val_stream = streams if streams is not None else self.make_streams()
        self.base = self._base_metrics(lr, n_test)
        self._meter: Meter | None = None
        self._t0 = 0.0

    # ---- set-up
    def _use_forward(self) -> None:
        """The training forward of :attr:`precision`; the fast path draws dropout from its own generator."""
        self.forward = training_forward(self.model, self.precision)
        self.generator: torch.Generator | None = None
        if isinstance(self.forward, LoweredForward):
            self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
            self.forward.generator = self.generator

    def _base_metrics(self, lr: float, n_test: int) -> dict:
        """The fields every ``metrics.json`` of this run starts with: what was trained, on what, how."""
        model = self.model
        return {
            "model_name": self.spec.name,
            "task": self.task,
            "family": self.spec.family,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "device": str(self.device),
            "precision": self.precision,
            "lr_initial": lr,
            "batch_size": self.batch_size,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": n_test,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "conv_weights": conv_weight_count(model),
            "target_frames": None if self.targets.frames is None else [int(f) for f in self.targets.frames],
            "config": self.cfg.to_dict(),
            "versions": versions(),
        }

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
        if held != self.precision and self.cfg.precision == "auto" and {held, self.precision} <= FAST_PATHS:
            # "auto" continues a run in the fast path it started with (an earlier version's "auto" chose
            # bf16 for TDT too): a run keeps one precision from start to end
            logger.info("%s: resumed in precision '%s', as it started ('auto' now gives '%s')",
                        self.spec.name, held, self.precision)  # fmt: skip
            self.precision = held
            configure_torch(self.cfg, self.device, held)
            self._use_forward()
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
        need = self.n_total * per_row
        cache = budget if need <= budget else 0
        if not cache:
            logger.info(
                "%s: streaming %s from disk every epoch: caching it needs %.1f GiB, the budget is %.1f GiB "
                "(train.cache_gb; default half the free memory)",
                self.spec.name, cfg.train_path, need / 2**30, budget / 2**30,
            )  # fmt: skip
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
        self._meter = Meter(self.task, self.targets)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step on batch ``(x, y)``."""
        self.optimizer.zero_grad(set_to_none=True)
        o = self.forward(x)
        loss = task_loss(self.task, o, y)
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
            va = evaluate_stream(self.model, self.val_stream, self.targets, True, "val", forward=self.forward)
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
        release_free_memory()
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


def _cache_budget(cache_gb: float | None, device: torch.device) -> int:
    """Bytes a data file may take when cached on ``device``: ``cache_gb``, else half the free memory.

    The memory that earlier runs of this process freed is handed back first: on the CPU glibc keeps a
    freed cache in the heap (:func:`~deepdraw.nn.hostmem.release_free_memory` returns it), on CUDA
    torch's caching allocator keeps it reserved (``empty_cache``); either way it does not count as
    free, and a second run would stream its data from disk (measured on the CPU at paper scale: ~18 %
    slower epochs, with the first run's 9 GB cache held but unused).
    """
    if cache_gb is not None:
        return int(cache_gb * 2**30)
    gc.collect()
    if device.type == "cpu":
        release_free_memory()
    if device.type == "cuda":
        torch.cuda.empty_cache()
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


def configure_torch(cfg: TrainConfig, device: torch.device, precision: str) -> None:
    """Process-wide torch settings of a run: cuDNN and TF32 on a GPU, thread count, host-memory reuse."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic
        # TF32 (10-bit mantissa) for the float32 parts of the bf16 path only: fast32 exists for TDT's
        # precision and fp32 is the reference; set either way, as the flags are process-wide
        tf32 = precision == "bf16"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    if device.type == "cpu":  # every step's buffers reused, not mapped afresh (deepdraw.nn.hostmem)
        reuse_freed_memory()
