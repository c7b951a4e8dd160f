"""Small run-folder helpers of the training stages (:mod:`deepdraw.nn.train_stage`,
:mod:`deepdraw.nn.search_stage`).

JSON and CSV files written to a temporary name and renamed (a killed job never leaves a half-written
one), the ``[train] device`` check and the check that the PCRT files exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from deepdraw.errors import DeepDrawError
from deepdraw.paths import RunPaths
from deepdraw.store import atomic_path, write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_json", "write_json", "write_csv", "check_device_name", "train_device", "require_data"]


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; an empty dict when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary name, then rename)."""
    write_json_atomic(path, obj, indent=1, default=str)


def write_csv(path: Path, table: pd.DataFrame) -> None:
    """Write ``table`` as CSV (no index) to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def check_device_name(key: str, name: str) -> None:
    """A device name torch can parse: "auto", "cpu", "cuda" or "cuda:N" (no torch needed)."""
    if name in ("", "auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise DeepDrawError(f"key '{key}' is '{name}'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def train_device(name: str) -> str | None:
    """``[train] device`` checked: None for "auto", else a torch device string that exists here."""
    import torch

    check_device_name("train.device", name)
    if name in ("", "auto"):
        return None
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise DeepDrawError(f"train.device is '{name}' but CUDA is not available here; use 'auto' or 'cpu'")
    return name


def require_data(rp: RunPaths, test: bool = True) -> None:
    """Refuse a run folder without its PCRT train file (and test file, with ``test``)."""
    for p in (rp.pcrt_train, rp.pcrt_test) if test else (rp.pcrt_train,):
        if not p.is_file():
            raise DeepDrawError(f"{p}: PCRT file not found; run 'deepdraw dataset assemble' first")
