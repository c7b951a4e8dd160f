"""Evaluation: the loss and task metrics of a model over a PCRT file (or one pass of a batch stream).

``art``: softmax cross-entropy and accuracy; ``tdt`` / ``tdt_pv``: MSE and the mean 3-D hand-position
error per output frame (cm); ``tdt_pv`` adds the scaled RMSE and the velocity error (cm/s).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from deepdraw.errors import DeepDrawError
from deepdraw.nn.checkpoints import load_checkpoint, resolve_device
from deepdraw.nn.data import BatchStream, check_pcrt
from deepdraw.nn.models.networks import DeepDrawNet
from deepdraw.nn.targets import TargetSpec

__all__ = ["Meter", "evaluate", "evaluate_stream", "task_loss"]


class Meter:
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


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y) if task == "art" else F.mse_loss(out, y)


@torch.no_grad()
def evaluate_stream(
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
    meter = Meter(model.task, targets)
    for x, y in tqdm(stream.epoch(0), total=len(stream), desc=desc, disable=quiet, leave=False):
        out = forward(x)
        meter.update(out, y, task_loss(model.task, out, y))
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
    return evaluate_stream(model, stream, targets, quiet, f"eval {Path(path).name}")
