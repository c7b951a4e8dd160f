"""Whether a run's dataset holds the samples a shipped model was trained and tested on.

The same dataset config does not always give the same samples on another machine (measured: the
paper dataset regenerated on an AVX2-only EPYC screened 730,369 candidates without an exact muscle jerk
where the AVX-512 machines screened 730,351; the cause was not pinned down). When a few candidates near
the muscle-jerk cut change, the seeded train/test split, a permutation of the sorted selection, moves
most rows (:func:`deepdraw.dataset.assemble.selection.split`). Such a test file holds many
of a shipped model's *training* rows: ST-7272 ART 1 scored 99.35 % on it against 98.62 % on its own
(docs/zoo.md, "A regenerated dataset").

- :func:`samples_digest`: sha256 of the candidate ids of the train and test files, in file order (cards
  made since 2026-12-07 carry it as ``dataset.samples_sha256``).
- :func:`compare_with_card`: how a run's test file relates to a card's dataset: ``"another dataset"``
  (other config or inputs: the card's metrics do not apply), ``"same samples"`` / ``"different
  samples"`` (by the digest), or, for the older cards without one, ``"metrics match"`` / ``"metrics
  differ"`` (the install's test loss against the card's, within :data:`LOSS_TOLERANCE`); ``"not
  checked"`` where the card records no test loss.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

from deepdraw.errors import DeepDrawError

__all__ = ["LOSS_TOLERANCE", "NOT_HELD_OUT", "compare_with_card", "samples_digest"]

NOT_HELD_OUT = ("different samples", "metrics differ")
"""The statuses under which the run's test file may hold the shipped model's training rows."""

LOSS_TOLERANCE = 0.01
"""Relative test-loss difference above which the same-config test file holds other samples (rounding
across CPUs moves the loss by ~1e-6; the regenerated paper dataset halved ST-7272 ART 1's loss)."""

ID_KEY = "candidate_id"


def samples_digest(train_path: str | os.PathLike, test_path: str | os.PathLike) -> str | None:
    """sha256 over the candidate ids (int64, little-endian) of the train file, then the test file; None
    where a file has no ``candidate_id`` (a PCRT file made without them, e.g. converted from the
    original's)."""
    import h5py
    import numpy as np

    h = hashlib.sha256()
    for split, p in (("train", Path(train_path)), ("test", Path(test_path))):
        if not p.is_file():
            raise DeepDrawError(f"{p}: the {split} file of the dataset is missing")
        with h5py.File(p, "r") as f:
            if ID_KEY not in f:
                return None
            h.update(split.encode())
            h.update(np.asarray(f[ID_KEY][()], dtype="<i8").tobytes())
    return h.hexdigest()


def _generator(test_path: Path) -> tuple[Any, Any]:
    """The dataset config and input digests recorded in a PCRT file (``read_attrs`` decodes the JSON)."""
    from deepdraw.store import read_attrs

    attrs = read_attrs(test_path)
    return attrs.get("config"), attrs.get("inputs")


def compare_with_card(
    card: dict, test_path: str | os.PathLike, test: dict, train_path: str | os.PathLike | None = None
) -> tuple[str, str]:
    """``(status, explanation)`` of the run's test file against the dataset of ``card``; ``test``: the
    shipped model's metrics on that test file. See the module docstring for the statuses."""
    ds = card.get("dataset") or {}
    config, inputs = _generator(Path(test_path))
    if config != ds.get("config") or inputs != ds.get("inputs"):
        return (
            "another dataset",
            "the test file comes from another dataset config: the card's metrics do not apply",
        )
    digest = ds.get("samples_sha256")
    here = samples_digest(train_path, test_path) if digest and train_path is not None else None
    if here is not None:
        if here == digest:
            return "same samples", "the candidate ids of train and test equal the card's"
        return "different samples", "the candidate ids differ from the card's (samples_sha256)"
    shipped = (card.get("metrics") or {}).get("test") or {}
    losses = [d.get("loss") for d in (shipped, test)]
    if not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in losses):
        return "not checked", "no finite test loss on the card or here to compare"
    rel = abs(float(test["loss"]) / float(shipped["loss"]) - 1.0)
    if rel <= LOSS_TOLERANCE:
        return "metrics match", f"test loss {test['loss']:.6g} as the card's {shipped['loss']:.6g}"
    return (
        "metrics differ",
        f"test loss {test['loss']:.6g} against the card's {shipped['loss']:.6g} on a dataset of the same "
        "config",
    )
