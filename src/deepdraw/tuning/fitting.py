"""Per-layer fitting: one pass over a layer's activations in blocks accumulates the sufficient statistics
of every feature set per (plane, train/test); one small solve per tuning model then fits all units at once
(:func:`analyse_layer`), with the per-plane direction fits, the binned direction tuning curves and the
label selectivity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DeepDrawError
from ..settings import TuningConfig
from ..store import iter_chunks
from .activations import Activations
from .features import COLUMNS, FSETS, frame_mask, master_columns, movement_frames
from .models import MODELS, TUNING_TYPES, SuffStats, label_selectivity, score_from_stats, solve_normal
from .results import METRICS, LayerFit, OrientationFit


@dataclass
class OrientData:
    """The samples of one plane orientation: which, their plane levels, train/test split and feature vectors."""

    orientation: str
    sel: np.ndarray  # global sample indices
    local: np.ndarray  # (n,) global -> local index or -1
    levels: np.ndarray
    lvl: np.ndarray  # (n_o,) level index
    is_test: np.ndarray  # (n_o,)
    vecs: dict[str, np.ndarray]  # fset -> (n_o, T, 2)


def analyse_layer(
    act: Activations,
    name: str,
    index: int,
    odata: dict[str, OrientData],
    lab_sel: np.ndarray,
    lab_is_test: np.ndarray,
    t: TuningConfig,
    bar: Any,
) -> LayerFit:
    """Fit every tuning model to every unit of layer ``name`` (position ``index``) in every orientation of
    ``odata``, and its label selectivity on the samples ``lab_sel``; ``bar`` advances once per block."""
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
            _add_block(acc[o], od, y, sl, centres, edges, t)
        bar.update(1)

    orient = {o: _fit_orientation(o, odata[o], acc[o], U, t) for o in odata}
    ls, ldead = _label_fit(act, lab_sel, lab_is_test, lab_x, lab_frames, U, t)
    return LayerFit(name, index, rows, chans, centres, orient, ls["auc"], ls["macro"], ls["max"], ldead)


def _add_block(
    A: dict[str, Any],
    od: OrientData,
    y: np.ndarray,
    sl: slice,
    centres: np.ndarray,
    edges: np.ndarray,
    t: TuningConfig,
) -> None:
    """Add one block of a layer's outputs ``y`` (b, frames, units) of samples ``sl`` to the accumulators
    ``A`` of one orientation: sufficient statistics per feature set, activation range, direction curves."""
    n_bins = edges.size - 1
    loc = od.local[sl]
    inb = np.flatnonzero(loc >= 0)
    if inb.size == 0:
        return
    li = loc[inb]
    ti, tt = np.nonzero(A["kept"][li])
    if ti.size == 0:
        return
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


def _label_fit(
    act: Activations,
    lab_sel: np.ndarray,
    lab_is_test: np.ndarray,
    lab_x: np.ndarray,
    lab_frames: _LabelFrames,
    U: int,
    t: TuningConfig,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Label selectivity on the per-trajectory mean activation over the movement (or on every frame),
    NaN for units that do not vary; returns (selectivity arrays, dead units)."""
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
    return ls, ldead


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


def _fit_orientation(o: str, od: OrientData, A: dict[str, Any], U: int, t: TuningConfig) -> OrientationFit:
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
