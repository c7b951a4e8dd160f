"""The SVM stage's subsets: ``"full"`` and the augmentation-suppressed subsets of ``svm.subsets``.

:func:`parse_subsets` reads the entries (``"full"``, ``"all"`` or ``"latent=value[,latent=value]"``),
:func:`select_subset` picks a subset's samples from a PCRT file's latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ..errors import DeepDrawError
from ..settings import PLANES

__all__ = ["ALL_SUBSETS", "LATENTS", "Subset", "SubsetFit", "parse_subsets", "select_subset"]

LATENTS: dict[str, type] = {
    "plane": str,
    "size": float,
    "speed": float,
    "rot": float,
    "shear_x": float,
    "shear_y": float,
}
"""Latent keys of a PCRT file a subset may fix, and their value types."""

SIZES = (0.7, 1.0, 1.3)
SPEEDS = (0.8, 1.0, 1.2, 1.4)

ALL_SUBSETS: tuple[str, ...] = (
    "full",
    *(f"plane={p}" for p in PLANES),
    *(f"size={s}" for s in SIZES),
    *(f"speed={s}" for s in SPEEDS),
    *(f"size={s},plane={p}" for s in SIZES for p in PLANES),
)
"""``svm.subsets = ["all"]``: full variability and the original's 15 augmentation-suppressed subsets
(svm_horizontal/vertical, svm_size1-3, svm_speed1-4, svm_sp1-6), in the original's order."""


@dataclass(frozen=True)
class Subset:
    """Samples whose latents equal the given values (``conds`` empty: every sample)."""

    name: str
    conds: tuple[tuple[str, Any], ...] = ()

    @property
    def suppressed_var(self) -> str:
        return "+".join(k for k, _ in self.conds) if self.conds else "none"

    @property
    def suppressed_val(self) -> str:
        return ",".join(_fmt_value(v) for _, v in self.conds) if self.conds else ""

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.conds]


class SubsetFit(TypedDict):
    """One subset's samples and classes: boolean masks over the train/test rows, its classes and pairs."""

    subset: Subset
    train_mask: np.ndarray
    test_mask: np.ndarray
    classes: np.ndarray
    pairs: list[tuple[int, int]]


def _fmt_value(v: Any) -> str:
    return v if isinstance(v, str) else repr(float(v))


def parse_subsets(specs: Sequence[str], where: str = "svm.subsets") -> list[Subset]:
    """Parse ``svm.subsets`` entries: ``"full"``, ``"all"`` or ``"key=value[,key=value...]"``.

    Names are canonical (``size=1`` becomes ``size=1.0``); duplicates are dropped.
    """
    out: dict[str, Subset] = {}
    for spec in specs:
        spec = str(spec).strip()
        if spec == "all":
            for s in parse_subsets(ALL_SUBSETS, where):
                out.setdefault(s.name, s)
            continue
        if spec == "full":
            out.setdefault("full", Subset("full"))
            continue
        conds: list[tuple[str, Any]] = []
        for part in spec.split(","):
            key, sep, raw = part.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise DeepDrawError(
                    f"{where}: entry '{spec}' is not understood; expected 'full', 'all' or "
                    f"'latent=value[,latent=value]' (e.g. 'size=0.7,plane=vertical')"
                )
            if key not in LATENTS:
                raise DeepDrawError(
                    f"{where}: entry '{spec}' names the unknown latent '{key}'; expected one of "
                    f"{', '.join(LATENTS)}"
                )
            if any(k == key for k, _ in conds):
                raise DeepDrawError(f"{where}: entry '{spec}' fixes '{key}' twice; expected each latent once")
            if LATENTS[key] is str:
                if key == "plane" and raw not in PLANES:
                    raise DeepDrawError(
                        f"{where}: entry '{spec}' has plane '{raw}'; expected one of {', '.join(PLANES)}"
                    )
                conds.append((key, raw))
            else:
                try:
                    val = float(raw)
                except ValueError:
                    raise DeepDrawError(
                        f"{where}: entry '{spec}' has {key}='{raw}'; expected a number"
                    ) from None
                conds.append((key, val))
        name = ",".join(f"{k}={_fmt_value(v)}" for k, v in conds)
        out.setdefault(name, Subset(name, tuple(conds)))
    if not out:
        raise DeepDrawError(f"{where}: no subset given; expected 'full', 'all' or 'latent=value' entries")
    return list(out.values())


def select_subset(latents: dict[str, np.ndarray], subset: Subset) -> np.ndarray:
    """Boolean mask of the samples whose latents equal the subset's values exactly.

    Float latents are compared in the file's own dtype (``0.7`` is cast to float32 first for a
    float32 column), so a value stored as written is matched exactly. ``plane`` may be bytes or str.
    """
    n = len(next(iter(latents.values()))) if latents else 0
    mask = np.ones(n, dtype=bool)
    for key, val in subset.conds:
        arr = latents[key]
        if LATENTS[key] is str:
            if arr.dtype.kind == "S":
                mask &= arr == val.encode()
            else:
                mask &= arr.astype(str) == val
        else:
            mask &= arr == np.asarray(val, dtype=arr.dtype)
    return mask
