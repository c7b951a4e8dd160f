"""Recorded neurons for ``deepdraw predict``, aligned to the frames of the encoded movements.

Every format gives one matrix ``(sum over movements of their frames, neurons)``: spike counts or rates
of each neuron at every 15 ms frame of every encoded movement, movements in the order of
``encoded.h5``'s ``movement_names`` (docs/formats.md, "Recorded neurons"):

* NPY: ``(frames, neurons)`` (the movements' frames one after the other) or ``(movements, T, neurons)``
  (NaN rows past each movement's end);
* HDF5: ``neurons/<movement>`` datasets ``(T_m, neurons)`` named as the movements (the part after
  ``file:`` in ``movement_names``), or one dataset ``counts`` ``(frames, neurons)``, or ``repeats``
  ``(R, frames, neurons)``: R repeated trials of the same movements (the mean is predicted, and
  :func:`split_half_ceiling` gives each neuron's noise ceiling); optional attribute ``neuron_names``
  (JSON list);
* NWB: the ``Units`` table's spike times, counted in 15 ms bins centred on each frame of each trial's
  movement (frame ``k`` of a movement whose first sample is at ``t0`` counts the spikes in
  ``[t0 + (k - 1/2) dt, t0 + (k + 1/2) dt)``); the movements must come from the same file's trials
  (``deepdraw encode`` on the NWB file, ``encode.nwb_trials = true``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DeepDrawError
from .io import pynwb_reader


def bin_spikes(spikes: list[np.ndarray], t0: np.ndarray, frames: np.ndarray, dt: float) -> np.ndarray:
    """Counts (sum frames, units): spikes of each unit in bins of ``dt`` centred on every movement frame."""
    out = []
    for a, T in zip(t0, frames):
        edges = a + (np.arange(int(T) + 1) - 0.5) * dt
        out.append(np.stack([np.histogram(s, edges)[0] for s in spikes], axis=1))
    return np.concatenate(out).astype(np.float64)


def read_nwb_units(p: Path, t0: np.ndarray, frames: np.ndarray, dt: float) -> tuple[np.ndarray, list[str]]:
    """Spike counts of the ``Units`` table of NWB file ``p`` on the movements' frames."""
    NWBHDF5IO = pynwb_reader(p)

    with NWBHDF5IO(str(p), "r") as io:
        nwb = io.read()
        if nwb.units is None or len(nwb.units) == 0:
            raise DeepDrawError(f"{p}: no Units table; expected spike times of the recorded neurons")
        spikes = [
            np.asarray(nwb.units.get_unit_spike_times(i), dtype=np.float64) for i in range(len(nwb.units))
        ]
        ids = [str(i) for i in nwb.units.id[:]]
    return bin_spikes(spikes, t0, frames, dt), ids


def _short(names: list[str]) -> list[str]:
    return [n.split(":", 1)[-1] for n in names]


def read_neurons(path: str | os.PathLike, names: list[str], frames: np.ndarray, t0: np.ndarray, dt: float):
    """``(Y (sum frames, neurons) float64, neuron names)`` aligned to the movements ``names`` of ``frames``."""
    p = Path(path)
    if not p.is_file():
        raise DeepDrawError(f"{p}: neural data file not found")
    total = int(np.sum(frames))
    ext = p.suffix.lower()
    ids: list[str] | None = None
    if ext == ".nwb":
        y, ids = read_nwb_units(p, t0, frames, dt)
    elif ext == ".npy":
        a = np.load(p, allow_pickle=False).astype(np.float64)
        if a.ndim == 3:
            if a.shape[0] != len(names) or a.shape[1] < frames.max():
                raise DeepDrawError(
                    f"{p}: shape {a.shape}; expected ({len(names)} movements, >= {frames.max()} frames, neurons)"
                )
            a = np.concatenate([a[i, : frames[i]] for i in range(len(names))])
        y = a
    elif ext in (".h5", ".hdf5"):
        y, ids = _read_h5(p, names, frames)
    else:
        raise DeepDrawError(f"{p}: unknown neural data format '{ext}'; expected .npy, .h5/.hdf5 or .nwb")
    if y.ndim != 2 or y.shape[0] != total:
        raise DeepDrawError(
            f"{p}: neural data of shape {y.shape}; expected ({total} frames = the encoded movements' frames, "
            "neurons)"
        )
    bad = np.argwhere(~np.isfinite(y))
    if len(bad):
        m = int(np.searchsorted(np.cumsum(frames), bad[0][0], side="right"))
        f = int(bad[0][0] - (np.cumsum(frames)[m - 1] if m else 0))
        raise DeepDrawError(f"{p}: neuron {bad[0][1]} is NaN at frame {f} of movement '{names[m]}'")
    return y, ids or [str(i) for i in range(y.shape[1])]


def _read_h5(p: Path, names: list[str], frames: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    import h5py

    with h5py.File(p, "r") as f:
        ids = json.loads(f.attrs["neuron_names"]) if "neuron_names" in f.attrs else None
        if "counts" in f:
            return f["counts"][()].astype(np.float64), ids
        if "repeats" in f:
            return f["repeats"][()].astype(np.float64).mean(axis=0), ids
        if "neurons" not in f:
            raise DeepDrawError(f"{p}: no 'counts' dataset and no 'neurons/' group (docs/formats.md)")
        parts = []
        for n, T in zip(_short(names), frames):
            if n not in f["neurons"]:
                raise DeepDrawError(f"{p}: no dataset 'neurons/{n}'; expected one per encoded movement")
            d = f["neurons"][n][()].astype(np.float64)
            if d.ndim != 2 or d.shape[0] != T:
                raise DeepDrawError(f"{p}: 'neurons/{n}' has shape {d.shape}; expected ({T} frames, neurons)")
            parts.append(d)
        return np.concatenate(parts), ids


def read_repeats(path: str | os.PathLike) -> np.ndarray | None:
    """The ``repeats`` (R, frames, neurons) of an HDF5 neural file, or None (other formats, or absent)."""
    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5"):
        return None
    import h5py

    with h5py.File(p, "r") as f:
        if "repeats" not in f or "counts" in f or "neurons" in f:
            return None
        r = f["repeats"][()].astype(np.float64)
    if r.ndim != 3 or r.shape[0] < 2:
        raise DeepDrawError(f"{p}: 'repeats' has shape {r.shape}; expected (R >= 2 trials, frames, neurons)")
    return r


def split_half_ceiling(repeats: np.ndarray) -> np.ndarray:
    """Noise ceiling per neuron of the trial-averaged response, from (R, frames, neurons) repeats.

    The correlation ``r`` over frames between the means of the odd and of the even trials, stepped up to
    all R trials by Spearman-Brown, ``2r / (1 + r)``: the share of the trial average's variance that is
    repeatable, the most explained variance a model of the average can reach (NaN for a silent neuron).
    """
    a, b = repeats[0::2].mean(0), repeats[1::2].mean(0)
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
        return 2 * r / (1 + r)
