"""Result types of the tuning stage: the fits of one layer in one orientation (:class:`OrientationFit`),
of one layer (:class:`LayerFit`) and of one model (:class:`ModelResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models import MODEL_NAMES, TUNING_TYPES

METRICS = ("rmse", "r2", "pcc")
SPLITS = ("train", "test")


@dataclass
class OrientationFit:
    """Fits of one layer in one plane orientation (all planes pooled, and per plane)."""

    orientation: str
    dead: np.ndarray  # (U,) bool
    coef: np.ndarray  # (U, M, 3) coefficients of every registry model (NaN-padded)
    metrics: np.ndarray  # (U, M, 2 splits, 3 metrics: rmse, r2, pcc)
    n_points: np.ndarray  # (F feature sets, 2 splits)
    n_traj: np.ndarray  # (2 splits,)
    levels: np.ndarray  # (L,) plane levels, cm
    plane_r2: np.ndarray  # (L, U) test R^2 of the direction model fitted in each plane
    plane_pd: np.ndarray  # (L, U) its preferred direction, radians
    plane_n: np.ndarray  # (L, 2) points (train, test)
    curve_sum: np.ndarray  # (B, U) activation summed per velocity-direction bin
    curve_n: np.ndarray  # (B,) points per bin

    def r2(self, model: str, split: str = "test") -> np.ndarray:
        mi = MODEL_NAMES.index(TUNING_TYPES.get(model, model))
        return self.metrics[:, mi, SPLITS.index(split), 1]

    def preferred_directions(self) -> np.ndarray:
        mi = MODEL_NAMES.index(TUNING_TYPES["dir"])
        return np.arctan2(self.coef[:, mi, 1], self.coef[:, mi, 0])


@dataclass
class LayerFit:
    name: str
    index: int
    rows: int
    channels: int
    centres: np.ndarray
    orient: dict[str, OrientationFit]
    label_auc: np.ndarray  # (U, K)
    label_macro: np.ndarray  # (U,)
    label_max: np.ndarray  # (U,)
    label_dead: np.ndarray  # (U,)

    @property
    def n_units(self) -> int:
        return self.rows * self.channels

    def label_score(self, index: str = "macro") -> np.ndarray:
        return self.label_max if index == "max" else self.label_macro


@dataclass
class ModelResult:
    name: str
    task: str
    trained: bool
    arch: str
    seed: int
    source: str
    layers: list[LayerFit] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        return {
            "model": self.name, "arch": self.arch, "task": self.task, "trained": self.trained, "seed": self.seed,
        }  # fmt: skip
