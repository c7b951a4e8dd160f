"""Stage 5: single-unit tuning of every model's activations (original: single_cell/).

:func:`run_tuning` reads one activations file per model (see :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA`), fits every
tuning model of :mod:`deepdraw.tuning.models` to every unit of every layer, summarises (fractions of
tuned units, quantiles, preferred directions, uniformity, invariance across planes, paired t-tests over
seeds) and writes ``tuning_results.h5`` (per-unit arrays), tidy CSV tables and PNG figures to
``out_dir``. :func:`analyse_model` does the work for one model and is what ``benchmarks/tuning.py``
times. Formats, formulas and the deliberate departures from the original are in ``docs/tuning.md``.

Each layer is read once, in blocks of ``tuning.chunk`` trajectories; from every block the sufficient
statistics (X^T X, X^T Y, sum y^2) of all units are accumulated per (plane, train/test), for the four
feature sets, so that every model, the all-plane fits and the per-plane fits come out of one pass and
one small solve per model (all units at once).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..activation_files import open_activations
from ..contracts import KIND_TUNING
from ..errors import DeepDrawError
from ..settings import Config, TuningConfig
from ..store import (
    ArtifactWriter,
    atomic_replace,
    file_sha256,
    iter_chunks,
    tmp_path_for,
)
from .features import (
    COLUMNS,
    FSETS,
    LEVEL_AXIS,
    ORIENTATIONS,
    frame_mask,
    master_columns,
    movement_frames,
    plane_levels,
    plane_vectors,
    project,
)
from .figures import write_figures
from .models import (
    MODEL_NAMES,
    MODELS,
    TUNING_TYPES,
    TYPE_NAMES,
    SuffStats,
    label_selectivity,
    score_from_stats,
    solve_normal,
    split_by_trajectory,
)
from .summary import (
    direction_summary,
    group_summary,
    layer_scores,
    paired_tests,
    parse_model_name,
    reference_index,
    score_stats,
    tuned_mask,
)

log = logging.getLogger(__name__)

RESULTS_NAME = "tuning_results.h5"
TABLES = ("units", "summary", "directions", "planes", "metrics", "stats", "groups")
"""Tidy CSV tables written as ``tuning_{name}.csv``."""
METRICS = ("rmse", "r2", "pcc")
SPLITS = ("train", "test")

TUNING_KEYS = ("kinematics/endeffector_coords", "label", "plane", "start_id", "end_id", "sample_index")
"""Keys of :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA` this stage reads (``layers/{name}`` and
``centres/{name}`` are checked per layer named in the root attribute ``layer_names``)."""


# ----------------------------------------------------------------------------- inputs


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


# ----------------------------------------------------------------------------- results


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


# ----------------------------------------------------------------------------- analysis


def tuning_config(cfg: Config | TuningConfig) -> TuningConfig:
    """The tuning section of a config (or the section itself), checked."""
    t = cfg.tuning if isinstance(cfg, Config) else cfg
    if not isinstance(t, TuningConfig):
        raise DeepDrawError(f"run_tuning: cfg is a {type(cfg).__name__}; expected a Config or a TuningConfig")
    check_tuning_config(t)
    return t


def check_tuning_config(t: TuningConfig) -> None:
    """Value checks of the tuning section (run by :func:`deepdraw.config.load_config`)."""
    choices = {
        "window": (t.window, ("movement", "all")),
        "trim": (t.trim, ("fixed", "original", "none")),
        "label_index": (t.label_index, ("macro", "max")),
        "label_samples": (t.label_samples, ("trajectory", "frames")),
    }
    for key, (v, opts) in choices.items():
        if v not in opts:
            raise DeepDrawError(f"key 'tuning.{key}' is '{v}'; expected one of {', '.join(opts)}")
    for o in t.orientations:
        if o not in ORIENTATIONS:
            raise DeepDrawError(f"key 'tuning.orientations' holds '{o}'; expected horizontal or vertical")
    if not 0 < t.test_fraction < 1:
        raise DeepDrawError(f"key 'tuning.test_fraction' is {t.test_fraction}; expected 0 < x < 1")
    for key in ("chunk", "pd_bins", "min_plane_units", "label_max_points"):
        if getattr(t, key) < 1:
            raise DeepDrawError(f"key 'tuning.{key}' is {getattr(t, key)}; expected a positive integer")
    if t.plane_tol_cm <= 0:
        raise DeepDrawError(f"key 'tuning.plane_tol_cm' is {t.plane_tol_cm}; expected > 0")


@dataclass
class _OrientData:
    orientation: str
    sel: np.ndarray  # global sample indices
    local: np.ndarray  # (n,) global -> local index or -1
    levels: np.ndarray
    lvl: np.ndarray  # (n_o,) level index
    is_test: np.ndarray  # (n_o,)
    vecs: dict[str, np.ndarray]  # fset -> (n_o, T, 2)


def _prepare(act: Activations, t: TuningConfig) -> dict[str, _OrientData]:
    present = [o for o in ORIENTATIONS if (act.plane == o).any()]
    wanted = list(t.orientations) or present
    if not wanted:
        raise DeepDrawError(
            f"{act.where}: key 'plane' has no samples; expected horizontal or vertical samples"
        )
    out: dict[str, _OrientData] = {}
    for oi, o in enumerate(ORIENTATIONS):
        if o not in wanted:
            continue
        sel = np.flatnonzero(act.plane == o)
        if sel.size == 0:
            raise DeepDrawError(
                f"{act.where}: key 'plane' has no '{o}' sample; expected at least one (tuning.orientations lists it)"
            )
        levels, lvl = plane_levels(act.ee[sel], o, t.plane_tol_cm, act.where)
        want_levels = t.levels_horizontal if o == "horizontal" else t.levels_vertical
        if want_levels:
            keep = []
            for w in want_levels:
                i = reference_index(levels, w, t.plane_tol_cm)
                if i < 0:
                    axis = "xyz"[LEVEL_AXIS[o]]
                    raise DeepDrawError(
                        f"{act.where}: key 'kinematics/endeffector_coords' has no {o} sample in the plane "
                        f"{axis} = {w:g} cm; expected samples in every plane of tuning.levels_{o} "
                        f"(planes found: {', '.join(f'{x:g}' for x in levels)})"
                    )
                keep.append(i)
            keep = sorted(set(keep))
            m = np.isin(lvl, keep)
            sel, lvl = sel[m], np.searchsorted(keep, lvl[m])
            levels = levels[keep]
        is_test = split_by_trajectory(
            act.sample_index[sel], levels[lvl], t.test_fraction, t.split_seed, stream=oi
        )
        if not is_test.any():
            raise DeepDrawError(
                f"{act.where}: the {o} samples ({sel.size}) are too few for a train/test split; expected at "
                f"least 2 trajectories in some plane"
            )
        local = np.full(act.n, -1, dtype=np.int64)
        local[sel] = np.arange(sel.size)
        vecs = plane_vectors(project(act.ee[sel], o), act.start_id[sel])
        out[o] = _OrientData(o, sel, local, levels, lvl, is_test, vecs)
    return out


def analyse_model(act: Activations, t: TuningConfig, quiet: bool = False) -> ModelResult:
    """Fit every tuning model to every unit of every layer of one model.

    Returns a :class:`ModelResult` holding, per layer and orientation, the coefficients and train/test
    metrics of all registry models for all units, the per-plane direction fits and the binned
    direction tuning curves; and per layer the label selectivity.
    """
    check_tuning_config(t)
    odata = _prepare(act, t)
    ident = parse_model_name(act.model_name)
    res = ModelResult(
        act.model_name, act.task, bool(act.trained), str(ident["arch"]), int(ident["seed"]), act.where
    )
    lab_sel = np.sort(np.concatenate([od.sel for od in odata.values()]))
    lab_test = np.zeros(act.n, dtype=bool)
    for od in odata.values():
        lab_test[od.sel] = od.is_test
    n_chunks = math.ceil(act.n / t.chunk)
    bar = tqdm(
        total=len(act.layer_names) * n_chunks,
        desc=f"tuning {act.model_name}",
        disable=quiet,
        leave=False,
        unit="block",
    )
    try:
        for li, name in enumerate(act.layer_names):
            res.layers.append(_analyse_layer(act, name, li, odata, lab_sel, lab_test[lab_sel], t, bar))
    finally:
        bar.close()
    return res


def _analyse_layer(
    act: Activations,
    name: str,
    index: int,
    odata: dict[str, _OrientData],
    lab_sel: np.ndarray,
    lab_is_test: np.ndarray,
    t: TuningConfig,
    bar: Any,
) -> LayerFit:
    n, rows, n_t, chans = act.shape(name)
    U = rows * chans
    centres = act.centres(name)
    T = act.n_frames
    n_bins = t.pd_bins
    edges = np.linspace(-np.pi, np.pi, n_bins + 1)
    acc: dict[str, dict[str, Any]] = {}
    for o, od in odata.items():
        kept = frame_mask(
            centres, T, act.start_id[od.sel], act.end_id[od.sel], t.window, t.edge_frames, t.trim
        )
        acc[o] = {
            "kept": kept,
            "gtraj": od.lvl * 2 + od.is_test.astype(np.int64),
            "stats": {f: SuffStats(2 * len(od.levels), len(COLUMNS), U) for f in FSETS},
            "ymin": np.full(U, np.inf),
            "ymax": np.full(U, -np.inf),
            "curve_sum": np.zeros((n_bins, U)),
            "curve_n": np.zeros(n_bins),
        }
    mv = movement_frames(centres, act.start_id, act.end_id)
    lab_x = np.full((n, U), np.nan)
    lab_frames = _LabelFrames(t, lab_sel, n_t, U)
    for sl in iter_chunks(n, t.chunk):
        a = np.asarray(act.read(name, sl))
        b = a.shape[0]
        if a.shape != (b, rows, n_t, chans):
            raise DeepDrawError(
                f"{act.where}: key 'layers/{name}' block has shape {a.shape}; expected (*, {rows}, {n_t}, {chans})"
            )
        if not np.isfinite(a).all():
            i = tuple(int(x) for x in np.argwhere(~np.isfinite(a))[0])
            raise DeepDrawError(
                f"{act.where}: key 'layers/{name}' holds NaN/inf at sample {sl.start + i[0]} index {i[1:]}; "
                f"expected finite activations"
            )
        y = np.ascontiguousarray(a.transpose(0, 2, 1, 3)).reshape(b, n_t, U)
        m = mv[sl]
        lab_x[sl] = np.einsum("bt,btu->bu", m.astype(y.dtype), y, dtype=np.float64) / m.sum(1)[:, None]
        lab_frames.add(sl, y)
        for o, od in odata.items():
            A = acc[o]
            loc = od.local[sl]
            inb = np.flatnonzero(loc >= 0)
            if inb.size == 0:
                continue
            li = loc[inb]
            ti, tt = np.nonzero(A["kept"][li])
            if ti.size == 0:
                continue
            g = A["gtraj"][li][ti]
            order = np.argsort(g, kind="stable")
            ti, tt, g = ti[order], tt[order], g[order]
            Y = y[inb[ti], tt].astype(np.float64)
            np.minimum(A["ymin"], Y.min(0), out=A["ymin"])
            np.maximum(A["ymax"], Y.max(0), out=A["ymax"])
            traj, frames = li[ti], centres[tt]
            for f in FSETS:
                cols = master_columns(od.vecs[f][traj, frames], t.min_norm)
                ok = np.isfinite(cols).all(1)
                if ok.all():
                    cf, gf, Yf = cols, g, Y
                else:
                    cf, gf, Yf = cols[ok], g[ok], Y[ok]
                A["stats"][f].add(gf, cf, Yf, presorted=True)
                if f == "vel" and cf.shape[0]:
                    bins = np.clip(np.searchsorted(edges, cf[:, 2], side="right") - 1, 0, n_bins - 1)
                    cnt = np.bincount(bins, minlength=n_bins)
                    A["curve_n"] += cnt
                    order_b = np.argsort(bins, kind="stable")
                    nz = np.flatnonzero(cnt)
                    starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])[nz]
                    A["curve_sum"][nz] += np.add.reduceat(Yf[order_b], starts, axis=0)
        bar.update(1)

    orient = {o: _fit_orientation(o, odata[o], acc[o], U, t) for o in odata}
    # label selectivity on the per-trajectory mean activation over the movement (or on every frame)
    yl = act.label[lab_sel]
    n_classes = max(20, int(act.label.max()) + 1)
    if lab_frames.x is not None:
        x, yl, is_test = lab_frames.samples(yl, lab_is_test)
    else:
        x, is_test = lab_x[lab_sel], lab_is_test
    ls = label_selectivity(x[~is_test], yl[~is_test], x[is_test], yl[is_test], n_classes)
    ptp = np.ptp(x, axis=0) if x.shape[0] else np.zeros(U)
    ldead = ptp <= t.dead_tol * np.maximum(1.0, np.abs(x).max(0) if x.shape[0] else 1.0)
    for k in ("macro", "max"):
        ls[k] = np.where(ldead, np.nan, ls[k])
    ls["auc"] = np.where(ldead[:, None], np.nan, ls["auc"])
    return LayerFit(name, index, rows, chans, centres, orient, ls["auc"], ls["macro"], ls["max"], ldead)


class _LabelFrames:
    """The ``label_samples = "frames"`` samples of one layer: every time point (or, beyond
    ``label_max_points`` samples, evenly spaced ones) of the label trajectories, filled block by block."""

    def __init__(self, t: TuningConfig, lab_sel: np.ndarray, n_t: int, U: int) -> None:
        self.x: np.ndarray | None = None
        if t.label_samples != "frames" or lab_sel.size == 0:
            return
        k = max(1, min(n_t, t.label_max_points // lab_sel.size))
        self.times = np.unique(np.linspace(0, n_t - 1, k).round().astype(np.int64))
        self.sel = lab_sel
        self.x = np.empty((lab_sel.size, self.times.size, U), np.float32)

    def add(self, sl: slice, y: np.ndarray) -> None:
        if self.x is None:
            return
        lo, hi = np.searchsorted(self.sel, [sl.start, sl.stop])
        if hi > lo:
            self.x[lo:hi] = y[self.sel[lo:hi] - sl.start][:, self.times]

    def samples(self, labels: np.ndarray, is_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(samples x units, label per sample, test flag per sample): one sample per trajectory and time."""
        if self.x is None:
            raise ValueError("no label frames: label_samples is not 'frames' or no label trajectory")
        k = self.times.size
        return self.x.reshape(-1, self.x.shape[2]), np.repeat(labels, k), np.repeat(is_test, k)


def _fit_orientation(o: str, od: _OrientData, A: dict[str, Any], U: int, t: TuningConfig) -> OrientationFit:
    L = len(od.levels)
    tr_g, te_g = np.arange(L) * 2, np.arange(L) * 2 + 1
    M = len(MODELS)
    coef = np.full((U, M, 3), np.nan)
    metrics = np.full((U, M, 2, 3), np.nan)
    n_points = np.zeros((len(FSETS), 2), dtype=np.int64)
    pooled = {f: (A["stats"][f].select(tr_g), A["stats"][f].select(te_g)) for f in FSETS}
    for fi, f in enumerate(FSETS):
        n_points[fi] = [pooled[f][0].n[0], pooled[f][1].n[0]]
    for mi, model in enumerate(MODELS.values()):
        tr, te = pooled[model.fset]
        if tr.n[0] < len(model.columns):
            continue
        cols = model.col_index
        c = solve_normal(tr.xx[0], tr.xy[0], cols)
        coef[:, mi, : len(cols)] = c.T
        for si, s in enumerate((tr, te)):
            sc = score_from_stats(int(s.n[0]), s.xx[0], s.xy[0], s.yy[0], cols, c)
            metrics[:, mi, si] = np.stack([sc[k] for k in METRICS], axis=1)
    ymin, ymax = A["ymin"], A["ymax"]
    seen = np.isfinite(ymin)
    dead = seen & ((ymax - ymin) <= t.dead_tol * np.maximum(1.0, np.maximum(np.abs(ymin), np.abs(ymax))))
    coef[dead] = np.nan
    metrics[dead] = np.nan
    # per-plane direction fits
    dir_cols = MODELS[TUNING_TYPES["dir"]].col_index
    s = A["stats"]["vel"]
    plane_r2 = np.full((L, U), np.nan)
    plane_pd = np.full((L, U), np.nan)
    plane_n = np.stack([s.n[tr_g], s.n[te_g]], axis=1)
    for lv in range(L):
        a, b = 2 * lv, 2 * lv + 1
        if s.n[a] < len(dir_cols) or s.n[b] < 2:
            continue
        c = solve_normal(s.xx[a], s.xy[a], dir_cols)
        plane_pd[lv] = np.arctan2(c[1], c[0])
        plane_r2[lv] = score_from_stats(int(s.n[b]), s.xx[b], s.xy[b], s.yy[b], dir_cols, c)["r2"]
    plane_r2[:, dead] = np.nan
    plane_pd[:, dead] = np.nan
    n_traj = np.array([(~od.is_test).sum(), od.is_test.sum()])
    return OrientationFit(
        o,
        dead,
        coef,
        metrics,
        n_points,
        n_traj,
        od.levels,
        plane_r2,
        plane_pd,
        plane_n,
        A["curve_sum"],
        A["curve_n"],
    )


# ----------------------------------------------------------------------------- tables


def build_tables(results: Sequence[ModelResult], t: TuningConfig) -> dict[str, pd.DataFrame]:
    """Tidy tables: ``units``, ``summary``, ``directions``, ``planes`` and the long ``metrics``."""
    units, summ, dirs, planes, metrics = [], [], [], [], []
    for r in results:
        ident = r.identity()
        for lf in r.layers:
            U = lf.n_units
            row_of = np.repeat(np.arange(lf.rows), lf.channels)
            ch_of = np.tile(np.arange(lf.channels), lf.rows)
            for o in lf.orient:
                for ttype in TYPE_NAMES:
                    if ttype == "labels" and o != next(iter(lf.orient)):
                        continue
                    oname = "all" if ttype == "labels" else o
                    sc, dead = layer_scores(lf, o, ttype, t)
                    units.append(
                        pd.DataFrame(
                            {
                                **{k: [v] * U for k, v in ident.items()},
                                "layer": lf.name,
                                "layer_index": lf.index,
                                "orientation": oname,
                                "unit": np.arange(U),
                                "row": row_of,
                                "channel": ch_of,
                                "tuning_type": ttype,
                                "score": sc,
                                "dead": dead,
                                "tuned": tuned_mask(sc, dead, t.r2_threshold),
                            }  # fmt: skip
                        )
                    )
                    ss = score_stats(sc, dead, t.r2_threshold, t.exclude_below)
                    base = {
                        **ident,
                        "layer": lf.name,
                        "layer_index": lf.index,
                        "orientation": oname,
                        "tuning_type": ttype,
                    }
                    summ.append({**base, **ss})
                    for mname in ("fraction_tuned", "median", "q90"):
                        metrics.append({**base, "metric": mname, "value": ss[mname]})
                ds = direction_summary(lf, o, t)
                inv = ds["invariance"]
                base = {**ident, "layer": lf.name, "layer_index": lf.index, "orientation": o}
                dirs.append(
                    {
                        **base,
                        "n_dir_tuned": int(ds["tuned"].sum()),
                        "uniformity": ds["uniformity"],
                        "invariance": inv.mad,
                        "n_planes_used": int(np.isfinite(inv.per_plane).sum()),
                        "reference_level": float(inv.levels[inv.reference]) if inv.reference >= 0 else np.nan,
                    }  # fmt: skip
                )
                for mname, v in (("uniformity", ds["uniformity"]), ("invariance", inv.mad)):
                    metrics.append({**base, "tuning_type": "dir", "metric": mname, "value": v})
                of = lf.orient[o]
                for k, lv in enumerate(inv.levels):
                    planes.append(
                        {
                            **base,
                            "level": float(lv),
                            "is_reference": k == inv.reference,
                            "n_train_points": int(of.plane_n[k, 0]),
                            "n_test_points": int(of.plane_n[k, 1]),
                            "n_tuned": int(tuned_mask(of.plane_r2[k], of.dead, t.r2_threshold).sum()),
                            "n_units_compared": int(inv.n_units[k]),
                            "mean_abs_deviation": float(inv.per_plane[k]),
                        }  # fmt: skip
                    )
    return {
        "units": pd.concat(units, ignore_index=True) if units else pd.DataFrame(),
        "summary": pd.DataFrame(summ),
        "directions": pd.DataFrame(dirs),
        "planes": pd.DataFrame(planes),
        "metrics": pd.DataFrame(metrics),
    }


# ----------------------------------------------------------------------------- outputs


def _write_results(
    path: Path,
    results: Sequence[ModelResult],
    cfg: Mapping[str, Any],
    t: TuningConfig,
    inputs: Mapping[str, str],
    overwrite: bool,
) -> None:
    attrs = {
        "model_names": json.dumps([r.name for r in results]),
        "tuning_models": json.dumps(list(MODEL_NAMES)),
        "tuning_types": json.dumps(TUNING_TYPES),
        "metrics": json.dumps(list(METRICS)),
        "splits": json.dumps(list(SPLITS)),
        "fsets": json.dumps(list(FSETS)),
    }
    with ArtifactWriter(
        path,
        KIND_TUNING,
        config=cfg,
        seeds={"split_seed": t.split_seed},
        inputs=inputs,
        attrs=attrs,
        overwrite=overwrite,
    ) as f:
        for r in results:
            g = f.create_group(f"models/{r.name}")
            g.attrs.update(
                {"task": r.task, "trained": r.trained, "arch": r.arch, "seed": r.seed, "source": Path(r.source).name,
                 "layer_names": json.dumps([lf.name for lf in r.layers])}
            )  # fmt: skip
            for lf in r.layers:
                gl = g.create_group(lf.name)
                gl.attrs.update({"rows": lf.rows, "channels": lf.channels, "index": lf.index})
                gl.create_dataset("centres", data=lf.centres)
                gl.create_dataset("label_auc", data=lf.label_auc)
                gl.create_dataset("label_selectivity", data=lf.label_macro)
                gl.create_dataset("label_selectivity_max", data=lf.label_max)
                gl.create_dataset("label_dead", data=lf.label_dead)
                for o, of in lf.orient.items():
                    go = gl.create_group(o)
                    for k in ("dead", "coef", "metrics", "n_points", "n_traj", "levels", "plane_r2", "plane_pd",
                              "plane_n", "curve_sum", "curve_n"):  # fmt: skip
                        arr = getattr(of, k)
                        go.create_dataset(k, data=arr, compression="gzip" if arr.size > 4096 else None)
                    go.create_dataset("pd", data=of.preferred_directions())


def _write_csv(df: pd.DataFrame, path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise DeepDrawError(
            f"{path}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
        )
    tmp = tmp_path_for(path)
    df.to_csv(tmp, index=False)
    atomic_replace(tmp, path)
    return path


def _median_input(results: Sequence[ModelResult], channel: int, ttype: str, t: TuningConfig, o: str) -> float:
    for r in results:
        for lf in r.layers:
            if lf.index == 0 and o in lf.orient:
                sc, dead = layer_scores(lf, o, ttype, t)
                sel = (np.tile(np.arange(lf.channels), lf.rows) == channel) & ~dead & np.isfinite(sc)
                return float(np.median(sc[sel])) if sel.any() else float("nan")
    return float("nan")


def _input_invariance(results: Sequence[ModelResult], o: str, t: TuningConfig) -> float:
    for r in results:
        for lf in r.layers:
            if lf.index == 0 and o in lf.orient:
                return direction_summary(lf, o, t)["invariance"].mad
    return float("nan")


def headline(results: Sequence[ModelResult], t: TuningConfig) -> dict[str, Any]:
    """Spindle-input medians (paper: 0.36, 0.58, 0.83, 0.225, 0.439) and final-layer label selectivity.

    Spindle values come from the input layer (identical for every model of a run) in horizontal planes;
    channel 0 = muscle length, 1 = muscle velocity.
    """
    o = "horizontal"
    out: dict[str, Any] = {
        "spindle_length_position_median": _median_input(results, 0, "pos_cart", t, o),
        "spindle_length_direction_median": _median_input(results, 0, "dir", t, o),
        "spindle_length_dirspeed_median": _median_input(results, 0, "dirspeed", t, o),
        "spindle_velocity_direction_median": _median_input(results, 1, "dir", t, o),
        "spindle_velocity_dirspeed_median": _median_input(results, 1, "dirspeed", t, o),
        "spindle_velocity_position_median": _median_input(results, 1, "pos_cart", t, o),
        "spindle_pd_invariance_horizontal": _input_invariance(results, "horizontal", t),
        "spindle_pd_invariance_vertical": _input_invariance(results, "vertical", t),
    }
    final: dict[str, float] = {}
    final_max: dict[str, float] = {}
    for r in results:
        lf = r.layers[-1]
        v = lf.label_score(t.label_index)
        v = v[np.isfinite(v)]
        final[r.name] = float(np.median(v)) if v.size else float("nan")
        w = lf.label_max[np.isfinite(lf.label_max)]
        final_max[r.name] = float(w.max()) if w.size else float("nan")
    out["label_selectivity_final"] = final
    out["label_selectivity_final_unit_max"] = final_max
    return out


def run_tuning(
    cfg: Config | TuningConfig,
    activation_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Single-unit tuning analyses of one or more models.

    Args:
        cfg: the run config (its ``[tuning]`` section is used) or a :class:`TuningConfig`.
        activation_paths: one activations HDF5 file per model.
        out_dir: folder for ``tuning_results.h5``, ``tuning_*.csv`` and ``figures/*.png``.
        quiet: no progress bars.
        overwrite: replace existing outputs.

    Returns:
        summary numbers (see :func:`headline`) plus ``results`` (path), ``csv`` (name -> path),
        ``figures`` (paths) and ``n_models``.
    """
    t = tuning_config(cfg)
    paths = [Path(p) for p in activation_paths]
    if not paths:
        raise DeepDrawError("run_tuning: activation_paths is empty; expected at least one activations file")
    out = Path(out_dir)
    res_path = out / RESULTS_NAME
    for existing in (res_path, *(out / f"tuning_{k}.csv" for k in TABLES)):
        if existing.exists() and not overwrite:
            raise DeepDrawError(
                f"{existing}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
            )
    results: list[ModelResult] = []
    inputs: dict[str, str] = {}
    for p in tqdm(paths, desc="tuning models", disable=quiet, unit="model"):
        with ActivationsFile(p) as act:
            log.info(
                "tuning %s (%s, %s, %d samples)",
                act.model_name,
                act.task,
                "trained" if act.trained else "untrained",
                act.n,
            )
            r = analyse_model(act, t, quiet)
        if any(x.name == r.name for x in results):
            raise DeepDrawError(
                f"{p}: attribute 'model_name' is '{r.name}', already given by another file; expected one file per model"
            )
        results.append(r)
        inputs[p.name] = file_sha256(p)
    tables = build_tables(results, t)
    tables["stats"] = paired_tests(tables["metrics"])
    tables["groups"] = group_summary(tables["metrics"])
    cfg_dict = (
        cfg.to_dict(["run", "tuning"]) if isinstance(cfg, Config) else {"tuning": dataclasses.asdict(t)}
    )
    out.mkdir(parents=True, exist_ok=True)
    _write_results(res_path, results, cfg_dict, t, inputs, overwrite)
    csv = {k: _write_csv(v, out / f"tuning_{k}.csv", overwrite) for k, v in tables.items()}
    figs: list[Path] = []
    if t.figures:
        figs = write_figures(results, tables, t, out / "figures", quiet)
    summary = headline(results, t)
    summary.update({"results": res_path, "csv": csv, "figures": figs, "n_models": len(results)})
    for k in ("spindle_length_position_median", "spindle_velocity_direction_median", "spindle_velocity_dirspeed_median",
              "spindle_pd_invariance_horizontal", "spindle_pd_invariance_vertical"):  # fmt: skip
        log.info("%s = %.3f", k, summary[k])
    return summary
