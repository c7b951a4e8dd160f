"""The tuning stage's view of one model's activations: an activations HDF5 file (:class:`ActivationsFile`,
validated on open) or arrays in memory (:class:`ArrayActivations`), both behind :class:`Activations`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..activation_files import open_activations
from ..errors import DeepDrawError
from .features import ORIENTATIONS

TUNING_KEYS = ("kinematics/endeffector_coords", "label", "plane", "start_id", "end_id", "sample_index")
"""Keys of :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA` this stage reads (``layers/{name}`` and
``centres/{name}`` are checked per layer named in the root attribute ``layer_names``)."""


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v[()])
    return str(v)


def _as_bool(v: Any) -> bool:
    if isinstance(v, bytes | str):
        return _text(v).strip().lower() in ("1", "true", "yes")
    return bool(v)


class Activations:
    """Activations of one model: identity, kinematics and blocks of layer outputs.

    Subclasses set the attributes below and implement :meth:`shape`, :meth:`centres` and :meth:`read`.
    ``ee`` (n, 3, T) cm; ``label``, ``start_id``, ``end_id``, ``sample_index`` (n,) int; ``plane`` (n,)
    str. Layer outputs are (n, rows, frames, channels); a unit is (row, channel), index row * C + c.
    """

    where: str = "<activations>"
    model_name: str = ""
    task: str = ""
    trained: bool = True
    layer_names: list[str]
    ee: np.ndarray
    label: np.ndarray
    plane: np.ndarray
    start_id: np.ndarray
    end_id: np.ndarray
    sample_index: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ee.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.ee.shape[2])

    def shape(self, layer: str) -> tuple[int, int, int, int]:
        raise NotImplementedError

    def centres(self, layer: str) -> np.ndarray:
        raise NotImplementedError

    def read(self, layer: str, sl: slice) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027
        pass

    def __enter__(self) -> Activations:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check(self) -> None:
        """Validate kinematics and per-sample arrays (one-sentence DeepDrawErrors)."""
        w = self.where
        n, t = self.n, self.n_frames
        if not np.isfinite(self.ee).all():
            at = tuple(int(x) for x in np.argwhere(~np.isfinite(self.ee))[0])
            raise DeepDrawError(
                f"{w}: key 'kinematics/endeffector_coords' holds NaN/inf at {at}; expected finite values"
            )
        bad = np.flatnonzero((self.start_id < 0) | (self.end_id > t) | (self.start_id >= self.end_id))
        if bad.size:
            i = int(bad[0])
            raise DeepDrawError(
                f"{w}: keys 'start_id'/'end_id' of sample {i} are {int(self.start_id[i])}/{int(self.end_id[i])}; "
                f"expected 0 <= start_id < end_id <= {t}"
            )
        if (self.label < 0).any():
            raise DeepDrawError(f"{w}: key 'label' holds negative values; expected labels 0..19")
        unknown = sorted(set(np.unique(self.plane)) - set(ORIENTATIONS))
        if unknown:
            raise DeepDrawError(f"{w}: key 'plane' holds {unknown[0]!r}; expected 'horizontal' or 'vertical'")
        if not self.layer_names:
            raise DeepDrawError(f"{w}: attribute 'layer_names' is empty; expected the ordered layer names")
        for name in self.layer_names:
            shp = self.shape(name)
            if len(shp) != 4 or shp[0] != n:
                raise DeepDrawError(
                    f"{w}: key 'layers/{name}' has shape {tuple(shp)}; expected (n={n}, rows, frames, channels)"
                )
            c = self.centres(name)
            if c.shape != (shp[2],) or (c.size and (c.min() < 0 or c.max() >= t)):
                raise DeepDrawError(
                    f"{w}: key 'centres/{name}' has shape {c.shape} and range "
                    f"[{c.min() if c.size else '-'}, {c.max() if c.size else '-'}]; expected ({shp[2]},) input "
                    f"frames in [0, {t})"
                )


class ActivationsFile(Activations):
    """An activations HDF5 file (written by ``extract_activations``), validated on open."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.f: h5py.File = open_activations(self.path, TUNING_KEYS)
        try:
            self._load()
        except BaseException:
            self.f.close()
            raise

    def _load(self) -> None:
        f, w = self.f, self.where
        a = f.attrs
        if "layer_names" not in a:
            raise DeepDrawError(
                f"{w}: root attribute 'layer_names' is missing; expected it on every activations file"
            )
        self.model_name = _text(a["model_name"])
        self.task = _text(a.get("task", "art")).lower()
        self.trained = _as_bool(a.get("trained", not self.model_name.endswith("r")))
        ln = a["layer_names"]
        if isinstance(ln, bytes | str):
            s = _text(ln)
            names = json.loads(s) if s.strip().startswith("[") else [s]
        else:
            names = [_text(x) for x in np.asarray(ln).ravel()]
        self.layer_names = [str(x) for x in names]
        self.ee = np.asarray(f["kinematics/endeffector_coords"][()], dtype=np.float64)
        self.label = np.asarray(f["label"][()], dtype=np.int64)
        self.plane = np.array([_text(p) for p in f["plane"][()]])
        self.start_id = np.asarray(f["start_id"][()], dtype=np.int64)
        self.end_id = np.asarray(f["end_id"][()], dtype=np.int64)
        self.sample_index = np.asarray(f["sample_index"][()], dtype=np.int64)
        for name in self.layer_names:
            if f"layers/{name}" not in f:
                raise DeepDrawError(
                    f"{w}: key 'layers/{name}' is missing; expected one dataset per name in 'layer_names'"
                )
        self.check()

    def shape(self, layer: str) -> tuple[int, int, int, int]:
        return tuple(self.f[f"layers/{layer}"].shape)

    def centres(self, layer: str) -> np.ndarray:
        key = f"centres/{layer}"
        if key in self.f:
            return np.asarray(self.f[key][()], dtype=np.int64).ravel()
        frames = self.shape(layer)[2]
        if frames == self.n_frames:
            return np.arange(frames)
        raise DeepDrawError(
            f"{self.where}: key '{key}' is missing; expected the receptive-field centre frames of the "
            f"{frames} output frames of layer '{layer}'"
        )

    def read(self, layer: str, sl: slice) -> np.ndarray:
        try:
            return self.f[f"layers/{layer}"][sl]
        except OSError as e:
            raise DeepDrawError(
                f"{self.where}: key 'layers/{layer}' cannot be read at samples {sl.start}:{sl.stop} (corrupt?): {e}"
            ) from None

    def close(self) -> None:
        self.f.close()


class ArrayActivations(Activations):
    """Activations held in memory (tests, benchmarks); ``layers`` maps name -> (n, rows, frames, C)."""

    def __init__(
        self,
        layers: Mapping[str, np.ndarray],
        ee: np.ndarray,
        label: np.ndarray,
        plane: Sequence[str] | np.ndarray,
        start_id: np.ndarray,
        end_id: np.ndarray,
        centres: Mapping[str, np.ndarray] | None = None,
        model_name: str = "model_1",
        task: str = "art",
        trained: bool = True,
        sample_index: np.ndarray | None = None,
    ) -> None:
        self.layers = dict(layers)
        self.layer_names = list(self.layers)
        self._centres = dict(centres or {})
        self.ee = np.asarray(ee, dtype=np.float64)
        self.label = np.asarray(label, dtype=np.int64)
        self.plane = np.array([_text(p) for p in plane])
        self.start_id = np.asarray(start_id, dtype=np.int64)
        self.end_id = np.asarray(end_id, dtype=np.int64)
        self.sample_index = np.arange(self.n) if sample_index is None else np.asarray(sample_index, np.int64)
        self.model_name, self.task, self.trained = model_name, task, trained
        self.where = f"<activations of {model_name}>"
        self.check()

    def shape(self, layer: str) -> tuple[int, int, int, int]:
        return tuple(self.layers[layer].shape)

    def centres(self, layer: str) -> np.ndarray:
        if layer in self._centres:
            return np.asarray(self._centres[layer], dtype=np.int64)
        return np.arange(self.shape(layer)[2])

    def read(self, layer: str, sl: slice) -> np.ndarray:
        return np.asarray(self.layers[layer][sl])
