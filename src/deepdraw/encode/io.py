"""Readers of movement files for ``deepdraw encode``: every format becomes :class:`Recording` objects.

Formats (``docs/formats.md``, "Own movements"):

* CSV with a header row: optional ``movement`` (consecutive rows with one value are one movement) and
  ``time`` (s) columns, and either ``x, y, z`` (hand position), the four joint angles
  ``elv_angle, shoulder_elv, shoulder_rot, elbow_flexion`` (deg; the IK is skipped) or the 25 muscle
  names of the PCRT files (fiber lengths, mm; the IK and the muscle model are skipped).
* DeepLabCut 3-D pose CSV (header rows ``scorer``, ``bodyparts``, ``coords``; ``individuals`` too for
  multi-animal projects): the body part ``encode.dlc_bodypart`` is the hand; points whose
  ``likelihood`` is below ``encode.dlc_min_likelihood``, and NaN points, become gaps.
* NPY: ``(T, d)`` one movement, or ``(n, T, d)`` movements padded with NaN rows at the end; ``d`` = 3,
  4 or 25 as above. No sampling rate is stored: ``encode.rate_hz`` is needed.
* HDF5: every dataset of shape ``(T, d)`` in the group ``movements/`` (or at the root) is one movement
  named after it; attributes ``rate_hz`` and ``units`` on the dataset or on the file.
* NWB: a ``SpatialSeries`` (``encode.nwb_series``; its ``unit``, ``conversion``, ``rate`` or
  ``timestamps``), cut into one movement per row of the trials table (``encode.nwb_trials``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contracts import JOINTS, MUSCLES
from ..errors import DeepDrawError


def pynwb_reader(p):
    """pynwb's reader, or an error saying how to install it."""
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise DeepDrawError(f"{p}: reading NWB needs pynwb: pip install 'deepdraw[nwb]'") from None
    return NWBHDF5IO


KINDS = {"hand": ("x", "y", "z"), "joints": JOINTS, "muscles": tuple(MUSCLES)}
"""What a movement holds -> its columns. ``hand``: position (file units); ``joints``: deg; ``muscles``: mm."""
UNITS_CM = {"cm": 1.0, "centimeter": 1.0, "centimeters": 1.0, "mm": 0.1, "millimeter": 0.1,
            "millimeters": 0.1, "m": 100.0, "meter": 100.0, "meters": 100.0, "metre": 100.0,
            "metres": 100.0}  # fmt: skip


@dataclass
class Recording:
    """One movement as read from a file, before any processing.

    ``data`` (T, d): hand positions in ``units`` (d = 3), joint angles in deg (4) or muscle lengths in
    mm (25), NaN at gaps; ``time`` (T,) s, or None (then ``rate_hz`` gives the sampling).
    """

    name: str
    source: str
    kind: str
    data: np.ndarray
    time: np.ndarray | None = None
    rate_hz: float = 0.0
    units: str = ""
    attrs: dict = field(default_factory=dict)


def kind_of(width: int, where: str) -> str:
    """The kind of a movement with ``width`` columns."""
    for k, cols in KINDS.items():
        if len(cols) == width:
            return k
    raise DeepDrawError(
        f"{where}: {width} columns per frame; expected 3 (hand x, y, z), 4 (joint angles) or 25 (muscles)"
    )


def read_movements(path: str | os.PathLike, cfg) -> list[Recording]:
    """Every movement of ``path`` (format from its extension / header); ``cfg``: the ``[encode]`` section."""
    p = Path(path)
    if not p.is_file():
        raise DeepDrawError(f"{p}: movement file not found")
    ext = p.suffix.lower()
    if ext == ".csv":
        with open(p, newline="") as f:
            first = f.readline()
        if first.lower().startswith("scorer"):
            return read_dlc_csv(p, cfg.dlc_bodypart, cfg.dlc_min_likelihood)
        return read_csv(p)
    if ext == ".npy":
        return read_npy(p)
    if ext in (".h5", ".hdf5"):
        return read_hdf5(p)
    if ext == ".nwb":
        return read_nwb(p, cfg.nwb_series, cfg.nwb_trials)
    raise DeepDrawError(f"{p}: unknown movement format '{ext}'; expected .csv, .npy, .h5/.hdf5 or .nwb")


def _float(value: str, where: str) -> float:
    if value.strip() == "" or value.strip().lower() in ("nan", "na"):
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise DeepDrawError(f"{where}: '{value}' is not a number") from None


def read_csv(p: Path) -> list[Recording]:
    """A plain CSV with a header row (module docstring)."""
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise DeepDrawError(f"{p}: no data rows; expected a header row and one row per frame")
    head = [h.strip() for h in rows[0]]
    low = [h.lower() for h in head]
    kind = next((k for k, cols in KINDS.items() if all(c.lower() in low for c in cols)), None)
    if kind is None:
        raise DeepDrawError(
            f"{p}: columns {head[:8]}...; expected x, y, z (hand), {', '.join(JOINTS)} (joints) or the 25 "
            "muscle names (docs/formats.md, 'Own movements')"
        )
    cols = [low.index(c.lower()) for c in KINDS[kind]]
    t_col = next((low.index(c) for c in ("time", "t", "time_s") if c in low), None)
    m_col = low.index("movement") if "movement" in low else None
    blocks: dict[str, list[int]] = {}
    for r, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        key = row[m_col].strip() if m_col is not None else p.stem
        if key in blocks and blocks[key][-1] != r - 1 and m_col is not None:
            raise DeepDrawError(
                f"{p}: line {r}: movement '{key}' continues after other rows; expected one block"
            )
        blocks.setdefault(key, []).append(r)
    out = []
    for key, lines in blocks.items():
        data = np.array([[_float(rows[i - 1][c], f"{p}: line {i}") for c in cols] for i in lines])
        t = None
        if t_col is not None:
            t = np.array([_float(rows[i - 1][t_col], f"{p}: line {i}, column 'time'") for i in lines])
        out.append(Recording(key, str(p), kind, data, time=t, attrs={"first_line": lines[0]}))
    return out


def _dlc_header(p: Path) -> list[list[str]]:
    with open(p, newline="") as f:
        reader = csv.reader(f)
        head = []
        for row in reader:
            head.append(row)
            if row and row[0].strip().lower() == "coords":
                return head
            if len(head) > 4:
                break
    raise DeepDrawError(f"{p}: no 'coords' header row; expected a DeepLabCut CSV (scorer, bodyparts, coords)")


def read_dlc_csv(p: Path, bodypart: str, min_likelihood: float) -> list[Recording]:
    """The DeepLabCut 3-D pose CSV: one movement (the whole file), the hand = ``bodypart``."""
    head = _dlc_header(p)
    parts = next((r for r in head if r and r[0].strip().lower() == "bodyparts"), None)
    coords = head[-1]
    if parts is None:
        raise DeepDrawError(f"{p}: no 'bodyparts' header row; expected a DeepLabCut CSV")
    idx = {c.strip().lower(): j for j, c in enumerate(coords) if j and parts[j].strip() == bodypart}
    if not all(k in idx for k in "xyz"):
        found = sorted({parts[j].strip() for j in range(1, len(parts))})
        raise DeepDrawError(
            f"{p}: body part '{bodypart}' has no x, y, z columns (encode.dlc_bodypart); body parts: {found}"
        )
    data, lik = [], []
    with open(p, newline="") as f:
        rows = list(csv.reader(f))[len(head) :]
    for i, row in enumerate(rows, start=len(head) + 1):
        if not any(c.strip() for c in row):
            continue
        data.append([_float(row[idx[k]], f"{p}: line {i}") for k in "xyz"])
        if "likelihood" in idx:
            lik.append(_float(row[idx["likelihood"]], f"{p}: line {i}"))
    x = np.array(data, dtype=np.float64).reshape(-1, 3)
    if lik:
        low = ~(np.array(lik) >= min_likelihood)
        x[low] = np.nan
    return [Recording(p.stem, str(p), "hand", x, attrs={"bodypart": bodypart})]


def read_npy(p: Path) -> list[Recording]:
    """``(T, d)`` or ``(n, T, d)`` (NaN rows at the end are padding)."""
    try:
        a = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DeepDrawError(f"{p}: not a readable .npy array ({exc})") from None
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DeepDrawError(f"{p}: array of shape {a.shape}; expected (T, d) or (n, T, d)")
    kind = kind_of(a.shape[2], str(p))
    out = []
    for i in range(a.shape[0]):
        x = a[i].astype(np.float64)
        rows = np.flatnonzero(~np.all(np.isnan(x), axis=1))
        x = x[: rows[-1] + 1] if len(rows) else x[:0]
        out.append(Recording(f"{p.stem}_{i:04d}" if a.shape[0] > 1 else p.stem, str(p), kind, x))
    return out


def read_hdf5(p: Path) -> list[Recording]:
    """Datasets (T, d) in ``movements/`` (or at the root), with ``rate_hz`` / ``units`` attributes."""
    import h5py

    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DeepDrawError(f"{p}: not a readable HDF5 file ({exc})") from None
    with f:
        grp = f["movements"] if "movements" in f else f
        out = []
        for name, ds in grp.items():
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                continue
            kind = kind_of(ds.shape[1], f"{p}: dataset '{ds.name}'")
            rate = float(ds.attrs.get("rate_hz", f.attrs.get("rate_hz", 0.0)))
            units = ds.attrs.get("units", f.attrs.get("units", ""))
            units = units.decode() if isinstance(units, bytes) else str(units)
            out.append(Recording(name, str(p), kind, ds[()].astype(np.float64), rate_hz=rate, units=units))
    if not out:
        raise DeepDrawError(f"{p}: no (T, 3|4|25) dataset in 'movements/' or at the root")
    return out


def _nwb_series(nwb, p: Path, name: str):
    from pynwb.behavior import SpatialSeries

    series = {o.name: o for o in nwb.objects.values() if isinstance(o, SpatialSeries)}
    if name:
        if name not in series:
            raise DeepDrawError(f"{p}: no SpatialSeries '{name}' (encode.nwb_series); found {sorted(series)}")
        return series[name]
    three = [s for s in series.values() if s.data.ndim == 2 and s.data.shape[1] == 3]
    if len(three) != 1:
        raise DeepDrawError(
            f"{p}: {len(three)} SpatialSeries with 3 columns ({sorted(s.name for s in three)}); expected one, "
            "or name it with encode.nwb_series"
        )
    return three[0]


def read_nwb(p: Path, name: str = "", by_trials: bool = True) -> list[Recording]:
    """A ``SpatialSeries`` of an NWB file, one movement per trial (or the whole series)."""
    NWBHDF5IO = pynwb_reader(p)

    with NWBHDF5IO(str(p), "r") as io:
        nwb = io.read()
        s = _nwb_series(nwb, p, name)
        x = np.asarray(s.data[()], dtype=np.float64) * float(s.conversion)
        if x.ndim != 2 or x.shape[1] != 3:
            raise DeepDrawError(f"{p}: SpatialSeries '{s.name}' has shape {x.shape}; expected (T, 3)")
        if s.timestamps is not None:
            t = np.asarray(s.timestamps[()], dtype=np.float64)
        else:
            t = float(s.starting_time or 0.0) + np.arange(len(x)) / float(s.rate)
        units = str(s.unit)
        trials = nwb.trials
        if not by_trials or trials is None or len(trials) == 0:
            return [Recording(s.name, str(p), "hand", x, time=t, units=units)]
        start = np.asarray(trials["start_time"][:], dtype=np.float64)
        stop = np.asarray(trials["stop_time"][:], dtype=np.float64)
    out = []
    for i, (a, b) in enumerate(zip(start, stop)):
        m = (t >= a) & (t <= b)
        name_i = f"trial_{i:04d}"
        out.append(Recording(name_i, str(p), "hand", x[m], time=t[m], units=units, attrs={"trial": i}))
    return out
