"""Network checkpoints: writing, reading, checking and loading them; the device default.

Every file is written to a temporary name and renamed (a killed run never leaves a complete-looking
file).

Checkpoint layout (``torch.save`` of a dict, loadable with ``weights_only=True``)::

    format 'deepdraw.nn.checkpoint', version 1, kind 'untrained' | 'best' | 'last',
    model_name, spec (ModelSpec fields), task, n_outputs, input_shape, trained (bool),
    state_dict, epoch, targets (TargetSpec.state(): task, frames, scale_min, scale_max, dt),
    config, versions;
    best/last also: optimizer; last also: schedule, rng, history, wall_time_s, finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import deepdraw
from deepdraw.errors import DeepDrawError
from deepdraw.nn.models.build import build_model
from deepdraw.nn.models.networks import DeepDrawNet
from deepdraw.nn.models.spec import ModelSpec, parse_model_name
from deepdraw.nn.targets import TargetSpec
from deepdraw.store import atomic_path, write_json_atomic

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "resolve_device",
    "save_checkpoint",
    "read_checkpoint",
    "check_same",
    "load_checkpoint",
    "load_into",
    "rng_state",
    "set_rng_state",
    "write_json",
    "versions",
]

CHECKPOINT_FORMAT = "deepdraw.nn.checkpoint"
CHECKPOINT_VERSION = 1


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` or, when None, CUDA if available else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def versions() -> dict:
    return {
        "deepdraw": str(deepdraw.__version__),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
    }


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary name, then rename)."""
    write_json_atomic(path, obj, indent=1, default=str)


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
        "versions": versions(),
    }
    ck.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
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


def check_same(path, ck: dict, spec: ModelSpec, task: str | None) -> None:
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
    ck = read_checkpoint(path)
    spec = ModelSpec.from_dict(ck["spec"])
    if expected is not None or task is not None:
        check_same(path, ck, parse_model_name(expected) if expected is not None else spec, task)
    model = build_model(spec, ck["task"], input_shape=tuple(ck["input_shape"]))
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise DeepDrawError(f"Checkpoint {path} weights do not fit model '{spec.name}' ({exc}).") from None
    return model.to(resolve_device(device)).eval(), ck


def load_into(model: DeepDrawNet, path: str | os.PathLike) -> dict:
    """Load the weights of checkpoint ``path`` into ``model``; another architecture or task raises."""
    ck = read_checkpoint(path)
    check_same(path, ck, model.spec, model.task)
    model.load_state_dict(ck["state_dict"])
    return ck


def rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
