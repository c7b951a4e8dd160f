"""Several models trained together on shared batches (e.g. the seeds of one architecture and task).

:func:`train_group` drives one :class:`~deepdraw.nn.train.Trainer` per config over one shared
training stream: the data are read (or cached) once and every batch is used by every model, one
model's step after the other (on the fast paths ``threads=N`` steps N models side by side with one
torch thread each; on 2 cores that measured slower than one at a time at batch 256, so it is not the
default). Each model keeps everything else of its own: initial weights, dropout stream, optimizer, learning-rate schedule, plateau detection, best
checkpoint, early stop, files and resume. A model trained in a group ends with the same weights as
the same model trained alone with ``data_seed`` set to the group's (bit for bit when the steps run
one after the other; within float rounding across thread counts).

What sharing the batch order means. Alone, a model's batch order comes from its own seed; in a
group all models see the batches in one order (``data_seed``, default the smallest seed of the
group). Seeds then still differ in initial weights and dropout, which is what the paper's seed
statistics vary, but not in the order of the data: the spread over seeds of a group can be slightly
smaller than over independent runs. The order of batches is itself random (a fresh permutation per
epoch), so no model sees a systematic ordering; for fully independent seeds keep ``[train] group =
"none"`` (the default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from tqdm.auto import tqdm

from deepdraw.errors import DeepDrawError
from deepdraw.nn.checkpoints import rng_state, set_rng_state
from deepdraw.nn.train import TrainConfig, Trainer, TrainResult, resolve_batch_size

__all__ = ["train_group", "group_data_seed", "step_together", "Member"]

logger = logging.getLogger(__name__)

_SHARED = ("train_path", "val_fraction", "chunk_rows", "cache_gb", "eval_batch_size", "device")
"""Settings every member of a group must share (with the batch size, task targets and input shape)."""


def group_data_seed(configs: Sequence[TrainConfig]) -> int:
    """The batch-order seed of a group: the members' ``data_seed`` (all equal), else the smallest seed."""
    given = {c.data_seed for c in configs if c.data_seed is not None}
    if len(given) > 1:
        raise DeepDrawError(f"Models trained together need one data_seed; got {sorted(given)}.")
    if given:
        return int(given.pop())
    seeds = [c.seed for c in configs if c.seed is not None]
    return int(min(seeds)) if seeds else 0


def _check_configs(configs: Sequence[TrainConfig]) -> None:
    """The settings members must share, checked before anything is written."""
    first = configs[0]
    for c in configs[1:]:
        for key in (*_SHARED, "task"):
            a, b = getattr(first, key), getattr(c, key)
            if str(a) != str(b):
                raise DeepDrawError(
                    f"Models trained together must share {key}; got {a!r} ({first.out_dir}) and "
                    f"{b!r} ({c.out_dir})."
                )
        if resolve_batch_size(c) != resolve_batch_size(first):
            raise DeepDrawError(
                f"Models trained together need one batch size; got {resolve_batch_size(first)} "
                f"({first.out_dir}) and {resolve_batch_size(c)} ({c.out_dir})."
            )


def _check_members(trainers: list[Trainer]) -> None:
    first = trainers[0]
    for t in trainers[1:]:
        if t.model.input_shape != first.model.input_shape:
            raise DeepDrawError(
                f"Models trained together need one input shape: {first.spec.name} takes "
                f"{first.model.input_shape}, {t.spec.name} takes {t.model.input_shape}."
            )
        if t.targets.state() != first.targets.state():
            raise DeepDrawError(
                f"Models trained together need the same targets: {first.spec.name} ({first.task}) and "
                f"{t.spec.name} ({t.task}) differ (task, output frames or TDT-PV scaler)."
            )


class Member:
    """A trainer and, on the reference path, its own copy of the global RNG state (dropout)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.rng = rng_state()  # right after set-up or resume: this model's stream

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        if self.trainer.generator is not None:  # the fast path draws from its own generator
            yield
            return
        set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = rng_state()


def _threads(members: list[Member], threads: int | None) -> int:
    if any(m.trainer.generator is None for m in members):
        return 1  # the reference path draws dropout from the global RNG: one step at a time
    if any(m.trainer.device.type != "cpu" for m in members):
        return 1
    n = 1 if threads is None else int(threads)  # measured: side by side is slower on 2 cores
    return max(1, min(n, len(members)))


def train_group(
    configs: Sequence[TrainConfig], *, threads: int | None = None, quiet: bool | None = None
) -> list[TrainResult]:
    """Train the models of ``configs`` together on shared batches; one result per config, in order.

    Args:
        configs: one :class:`TrainConfig` per model; they must share the data settings, batch size,
            task targets and input shape (a clear error otherwise). ``data_seed`` is set to
            :func:`group_data_seed` for every member.
        threads: models stepped side by side on the CPU, each with one torch thread (None: 1, one
            model at a time with all torch threads, which measured faster on 2 cores; the reference
            path and CUDA always use 1).
        quiet: no progress bars (None: the first config's ``quiet``).
    """
    if not configs:
        raise DeepDrawError("train_group got no models to train.")
    seed = group_data_seed(configs)
    _check_configs(configs)
    configs = [dataclasses.replace(c, data_seed=seed) for c in configs]
    quiet = configs[0].quiet if quiet is None else quiet
    first = Trainer(configs[0])
    members = [Member(first)]
    streams = (first.train_stream, first.val_stream)
    members += [Member(Trainer(c, streams=streams)) for c in configs[1:]]
    _check_members([m.trainer for m in members])
    n_threads = _threads(members, threads)
    prev_threads = torch.get_num_threads()
    bar = tqdm(total=configs[0].max_epochs, desc=f"group of {len(members)}", disable=quiet)
    try:
        if n_threads > 1:
            torch.set_num_threads(max(1, prev_threads // n_threads))
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            while True:
                active = [m for m in members if not m.trainer.done]
                if not active:
                    break
                epoch = min(m.trainer.epoch for m in active) + 1
                _epoch([m for m in active if m.trainer.epoch == epoch - 1], epoch, pool, n_threads, quiet)
                bar.n = epoch
                bar.refresh()
    finally:
        torch.set_num_threads(prev_threads)
        bar.close()
    results = []
    for m in members:
        with m.own_rng():
            results.append(m.trainer.finish())
    return results


def step_together(
    members: list[Member], x: torch.Tensor, y: torch.Tensor, pool: ThreadPoolExecutor | None
) -> None:
    """One step of every member on batch ``(x, y)``: side by side in ``pool``, else one after another."""
    if pool is not None:
        for f in [pool.submit(m.trainer.step, x, y) for m in members]:
            f.result()
        return
    for m in members:
        with m.own_rng():
            m.trainer.step(x, y)


def _epoch(members: list[Member], epoch: int, pool: ThreadPoolExecutor, n_threads: int, quiet: bool) -> None:
    """One epoch of ``members`` (all at ``epoch - 1``) on the shared stream."""
    for m in members:
        with m.own_rng():
            m.trainer.begin_epoch()
    stream = members[0].trainer.train_stream
    for x, y in tqdm(
        stream.epoch(epoch), total=len(stream), desc=f"epoch {epoch}", disable=quiet, leave=False
    ):
        step_together(members, x, y, pool if n_threads > 1 else None)
    for m in members:
        with m.own_rng():
            m.trainer.end_epoch()
