"""UCI Character Trajectories: loading and preprocessing into pen paths (original: dataset/uci_trajectorydata.py).

Sources, in order of preference:

* the canonical UCI file ``mixoutALL_shifted.mat`` (``mixout`` cell of 3 x T arrays: x velocity,
  y velocity, pen force; labels in ``consts.charlabels``), when a user has it;
* the copy shipped in ``data/character_trajectories/``: the UCI values split over two MAT files,
  put back into UCI order with ``uci_index_map.csv``; the rebuild is checked against the sha256
  digests recorded in ``data/character_trajectories/README.md``.

Preprocessing as the original: keep the two velocity rows, drop frames whose velocity is exactly zero,
integrate (cumulative sum), and rescale each axis on its own to a ``box_cm`` box centred on 0
(``keep_aspect=True`` scales both axes by the larger range instead).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts import LETTERS
from ..errors import DeepDrawError
from ..paths import data_dir

N_CHARACTERS = 2858
RAW_SHA256 = "3bd9cf45251903e333c2f7084d20cf57ec493b7d847d2916a51835b57cdcda91"
LABELS_SHA256 = "d03ef28ecc6d1600d4e969c1993250ab471eeace544146aa00010e3f423ab5f3"


@dataclass
class RawCharacters:
    """UCI trajectories in UCI order: ``raw[i]`` (3, T_i) velocities/force, ``labels`` (2858,) 1..20."""

    raw: list[np.ndarray]
    labels: np.ndarray
    source: str


def _loadmat(path: Path):
    from scipy.io import loadmat

    if not path.exists():
        raise DeepDrawError(f"{path}: file not found")
    try:
        return loadmat(str(path))
    except Exception as e:  # scipy raises many types on a bad file
        raise DeepDrawError(f"{path}: not a readable MATLAB file: {e}") from None


def raw_digest(raw: list[np.ndarray]) -> str:
    """sha256 of all arrays concatenated, each (3, T) flattened row-wise as little-endian float64."""
    h = hashlib.sha256()
    for a in raw:
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def load_canonical(path: str | Path) -> RawCharacters:
    """Read the UCI ``mixoutALL_shifted.mat`` (fields ``mixout`` and ``consts.charlabels``)."""
    p = Path(path)
    d = _loadmat(p)
    if "mixout" not in d or "consts" not in d:
        raise DeepDrawError(f"{p}: expected variables 'mixout' and 'consts' (UCI mixoutALL_shifted.mat)")
    mixout = d["mixout"][0]
    try:
        labels = np.asarray(d["consts"][0][0]["charlabels"]).ravel().astype(np.int64)
    except (ValueError, KeyError, IndexError):
        raise DeepDrawError(f"{p}: field 'consts.charlabels' not found") from None
    raw = [np.asarray(m, dtype=np.float64) for m in mixout]
    return RawCharacters(raw, labels, str(p))


def load_shipped(folder: str | Path | None = None, verify: bool = True) -> RawCharacters:
    """Rebuild the UCI order from the split copy in ``data/character_trajectories``."""
    folder = Path(folder) if folder is not None else data_dir() / "character_trajectories"
    index = folder / "uci_index_map.csv"
    if not index.exists():
        raise DeepDrawError(f"{index}: file not found (the shipped character data is incomplete)")
    train = _loadmat(folder / "trajectories_train.mat")
    test = _loadmat(folder / "trajectories_xtest.mat")
    cells = {"train": train["xtrain"][0], "xtest": test["xtest"][0]}
    rows = list(csv.DictReader(index.open()))
    if len(rows) != N_CHARACTERS:
        raise DeepDrawError(f"{index}: {len(rows)} rows; expected {N_CHARACTERS}")
    rows.sort(key=lambda r: int(r["uci_index"]))
    raw = [np.asarray(cells[r["zhao_file"]][int(r["zhao_row"])], dtype=np.float64) for r in rows]
    labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    if verify:
        got = raw_digest(raw)
        if got != RAW_SHA256:
            raise DeepDrawError(f"{folder}: rebuilt UCI values have sha256 {got}; expected {RAW_SHA256}")
        got = hashlib.sha256(labels.astype(np.int8).tobytes()).hexdigest()
        if got != LABELS_SHA256:
            raise DeepDrawError(f"{index}: rebuilt labels have sha256 {got}; expected {LABELS_SHA256}")
    return RawCharacters(raw, labels, str(folder))


def preprocess_one(raw: np.ndarray, box_cm: float = 10.0, keep_aspect: bool = False) -> np.ndarray:
    """One UCI sample (3, T) -> pen path (2, T') in cm, centred, fitting a ``box_cm`` box.

    Drops frames with zero xy velocity, integrates, rescales each axis to [-box/2, box/2]
    (or both by the larger range with ``keep_aspect``, centred).
    """
    v = np.asarray(raw, dtype=np.float64)[:2]
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(f"expected a (3, T) array with T >= 2, got {np.shape(raw)}")
    if not np.isfinite(v).all():
        raise ValueError("trajectory holds NaN/inf")
    v = v[:, np.linalg.norm(v, axis=0) != 0]
    if v.shape[1] < 2:
        raise ValueError("fewer than 2 frames with non-zero velocity")
    p = np.cumsum(v, axis=1)
    lo, hi = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
    rng = hi - lo
    if keep_aspect:
        scale = rng.max()
        return ((p - (lo + hi) / 2) / scale) * box_cm
    rng[rng == 0] = 1.0
    return ((p - lo) / rng - 0.5) * box_cm


def preprocess(
    rc: RawCharacters, box_cm: float = 10.0, keep_aspect: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All samples -> (trajectories (n, 2, T_max) NaN-padded cm, lengths (n,), labels (n,) 0..19)."""
    if len(rc.raw) == 0:
        raise DeepDrawError(f"{rc.source}: the character set is empty; expected at least one trajectory")
    paths = []
    for i, r in enumerate(rc.raw):
        try:
            paths.append(preprocess_one(r, box_cm, keep_aspect))
        except ValueError as e:
            raise DeepDrawError(f"{rc.source}: trajectory {i}: {e}") from None
    lengths = np.array([p.shape[1] for p in paths], dtype=np.int64)
    out = np.full((len(paths), 2, int(lengths.max())), np.nan)
    for i, p in enumerate(paths):
        out[i, :, : p.shape[1]] = p
    labels = rc.labels.astype(np.int64) - 1
    if labels.min() < 0 or labels.max() >= len(LETTERS):
        raise DeepDrawError(f"{rc.source}: labels outside 1..{len(LETTERS)}")
    return out, lengths, labels
