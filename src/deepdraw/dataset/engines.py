"""Access to the muscle-length engines from worker processes (one engine per process, cached)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import osim_model


def _model_path(model: str) -> str:
    return str(Path(model)) if model else str(osim_model())


@lru_cache(maxsize=4)
def _engine(engine: str, model: str, table: str):
    from . import muscles

    if engine == "exact":
        return muscles.ExactEngine(_model_path(model))
    return muscles.FastEngine.load(table or None, model_path=_model_path(model))


def get_engine(cfg: dict[str, Any]):
    """The engine named by a ``[muscles]`` config section (as a dict)."""
    return _engine(cfg["engine"], cfg.get("model", ""), cfg.get("table", ""))


def muscle_lengths(joints: list[np.ndarray], cfg: dict[str, Any]) -> list[np.ndarray]:
    """Joint trajectories [(T_i, 4) deg] -> fiber lengths [(T_i, 25) mm], one engine call for all."""
    if not joints:
        return []
    lengths = np.array([len(q) for q in joints])
    batch = np.full((len(joints), int(lengths.max()), 4), np.nan)
    for i, q in enumerate(joints):
        batch[i, : len(q)] = q
    out = get_engine(cfg).lengths(batch, lengths)  # frames past each length are not computed
    return [out[i, : lengths[i]] for i in range(len(joints))]
