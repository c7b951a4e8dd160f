"""Tuning models, their registry, and least-squares fits of all units at once (original: single_cell/rowwise_neuron_curves.py, tune).

A *tuning model* is a list of :data:`~deepdraw.tuning.features.COLUMNS` of one feature set; every model
has a bias. The registry :data:`MODELS` holds the original's four variants per feature set:

======  ==========================  ===============================================
variant  columns (coefficients c0..)  meaning
======  ==========================  ===============================================
m0      r, theta, 1  (ee: x, y, 1)  linear in the raw 2 columns
m1      cos theta, sin theta, 1     direction; PD = atan2(c1, c0)
m2      r, 1                        magnitude (speed, acceleration, distance)
m3      r cos theta, r sin theta, 1  direction x magnitude (= a r cos(theta - PD) + b)
======  ==========================  ===============================================

The named tuning types of the paper (its Eqs. 7-13) are aliases, :data:`TUNING_TYPES`.

All units of a layer share one design matrix, so one solve fits them all: either directly
(:func:`fit_all_units`, one ``numpy.linalg.lstsq`` with a matrix right-hand side) or, when the data are
streamed in blocks, through sufficient statistics (:class:`SuffStats`: X^T X, X^T Y, sum y^2 per group)
and the normal equations (:func:`solve_normal`), from which the test metrics follow exactly
(:func:`score_from_stats`) without a second pass over the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from ..contracts import N_CLASSES
from ..errors import DeepDrawError
from .features import COLUMNS, FSETS


@dataclass(frozen=True)
class TuningModel:
    """One linear tuning model: ``activation ~ sum_k c_k * column_k`` (the last column is the bias)."""

    name: str
    fset: str
    variant: str
    columns: tuple[str, ...]
    formula: str

    @property
    def col_index(self) -> list[int]:
        return [COLUMNS.index(c) for c in self.columns]


MODELS: dict[str, TuningModel] = {}
"""Registry: model name (``{fset}_{variant}``) -> :class:`TuningModel`, in result-array order."""


def register_model(model: TuningModel) -> TuningModel:
    """Add a model to :data:`MODELS` (names are unique)."""
    if model.name in MODELS:
        raise DeepDrawError(f"tuning model '{model.name}' is already registered; expected a new name")
    for c in model.columns:
        if c not in COLUMNS:
            raise DeepDrawError(
                f"tuning model '{model.name}': column '{c}' is unknown; expected one of {COLUMNS}"
            )
    MODELS[model.name] = model
    return model


_VARIANTS = {
    "m0": (("r", "theta", "1"), "c0*r + c1*theta + c2"),
    "m1": (("cos", "sin", "1"), "c0*cos(theta) + c1*sin(theta) + c2"),
    "m2": (("r", "1"), "c0*r + c1"),
    "m3": (("rcos", "rsin", "1"), "c0*r*cos(theta) + c1*r*sin(theta) + c2"),
}

for _f in FSETS:
    for _v, (_cols, _formula) in _VARIANTS.items():
        if _f == "ee" and _v == "m0":
            _cols, _formula = ("rcos", "rsin", "1"), "c0*x + c1*y + c2"
        register_model(TuningModel(f"{_f}_{_v}", _f, _v, _cols, _formula))

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

TUNING_TYPES: dict[str, str] = {
    "dir": "vel_m1",  # Eqs. 9-10 direction: a1 cos(theta) + a2 sin(theta) + b
    "speed": "vel_m2",  # Eq. 11 speed: a s + b
    "dirspeed": "vel_m3",  # Eq. 12 velocity: a s cos(theta - PD) + b
    "pos_cart": "ee_m0",  # Eq. 7 Cartesian position: a1 x + a2 y + b
    "pos_polar": "eepolar_m3",  # Eq. 8 polar position: a rho cos(phi - PD) + b (rho, phi from the start)
    "acc": "acc_m2",  # Eq. 13 acceleration magnitude: a |acc| + b
}
"""Paper's tuning types (Eqs. 7-13) -> registry model. ``labels`` (§Methods "Label tuning") is
:func:`label_selectivity`."""

TYPE_NAMES: tuple[str, ...] = (*TUNING_TYPES, "labels")


def get_model(name: str) -> TuningModel:
    """A registry model by name or tuning-type alias."""
    key = TUNING_TYPES.get(name, name)
    if key not in MODELS:
        raise DeepDrawError(
            f"tuning model '{name}' is unknown; expected one of {', '.join(list(TUNING_TYPES) + list(MODELS))}"
        )
    return MODELS[key]


def design_matrix(cols7: np.ndarray, model: TuningModel | str) -> np.ndarray:
    """Design matrix of ``model`` from master columns (N, 7) -> (N, p)."""
    m = get_model(model) if isinstance(model, str) else model
    return np.asarray(cols7, dtype=np.float64)[..., m.col_index]


# ----------------------------------------------------------------------------- direct solve


def fit_all_units(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of every unit in one solve.

    Args:
        x: design matrix (N points, p).
        y: activations (N points, U units).

    Returns:
        coefficients (p, U); identical to ``numpy.linalg.lstsq(x, y[:, u])`` for each unit u.
    """
    coef, *_ = np.linalg.lstsq(np.asarray(x, np.float64), np.asarray(y, np.float64), rcond=None)
    return coef


def score_units(x: np.ndarray, y: np.ndarray, coef: np.ndarray) -> dict[str, np.ndarray]:
    """RMSE, R^2 and Pearson r of the predictions ``x @ coef`` of every unit (U,) each.

    R^2 = 1 - SSE / SST with SST about the mean of ``y``; NaN where the unit is constant (SST = 0).
    """
    y = np.asarray(y, np.float64)
    pred = np.asarray(x, np.float64) @ coef
    res = y - pred
    sse = np.einsum("ij,ij->j", res, res)
    yc = y - y.mean(0)
    pc = pred - pred.mean(0)
    sst = np.einsum("ij,ij->j", yc, yc)
    spp = np.einsum("ij,ij->j", pc, pc)
    syp = np.einsum("ij,ij->j", yc, pc)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)
        pcc = np.where((sst > 0) & (spp > 0), syp / np.sqrt(sst * spp), np.nan)
    rmse = np.sqrt(sse / max(y.shape[0], 1))
    return {"rmse": rmse, "r2": r2, "pcc": pcc}


# ----------------------------------------------------------------------------- sufficient statistics


class SuffStats:
    """Sufficient statistics of linear fits of U units on K columns, for G groups.

    Per group g: ``n[g]`` points, ``xx[g] = X^T X`` (K, K), ``xy[g] = X^T Y`` (K, U) and
    ``yy[g] = sum y^2`` (U,), all float64. Column 0 must be the constant 1 (so ``xy[g, 0]`` is sum y).
    """

    def __init__(self, n_groups: int, n_cols: int, n_units: int) -> None:
        self.n = np.zeros(n_groups, dtype=np.int64)
        self.xx = np.zeros((n_groups, n_cols, n_cols))
        self.xy = np.zeros((n_groups, n_cols, n_units))
        self.yy = np.zeros((n_groups, n_units))

    def add(self, group: np.ndarray, x: np.ndarray, y: np.ndarray, presorted: bool = False) -> None:
        """Accumulate points ``x`` (N, K) with activations ``y`` (N, U) into their groups (N,) int.

        ``presorted=True`` promises that ``group`` is non-decreasing (saves a sort and two copies).
        """
        if x.shape[0] == 0:
            return
        group = np.asarray(group)
        if presorted:
            g = group
            xs = np.asarray(x, np.float64)
            ys = np.asarray(y, np.float64)
        else:
            order = np.argsort(group, kind="stable")
            g = group[order]
            xs = np.asarray(x[order], np.float64)
            ys = np.asarray(y[order], np.float64)
        bounds = np.flatnonzero(np.diff(g)) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [g.shape[0]]])
        for a, b in zip(starts, stops):
            k = int(g[a])
            xa, ya = xs[a:b], ys[a:b]
            self.n[k] += b - a
            self.xx[k] += xa.T @ xa
            self.xy[k] += xa.T @ ya
            self.yy[k] += np.einsum("ij,ij->j", ya, ya)

    def select(self, groups: Sequence[int] | np.ndarray) -> SuffStats:
        """Statistics pooled over ``groups`` (a single group)."""
        idx = np.asarray(groups, dtype=np.int64)
        out = SuffStats(1, self.xx.shape[1], self.xy.shape[2])
        out.n[0] = self.n[idx].sum()
        out.xx[0] = self.xx[idx].sum(0)
        out.xy[0] = self.xy[idx].sum(0)
        out.yy[0] = self.yy[idx].sum(0)
        return out

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray) -> SuffStats:
        """Statistics of one group of points (x includes the constant column first)."""
        s = cls(1, x.shape[1], y.shape[1])
        s.add(np.zeros(x.shape[0], dtype=np.int64), x, y)
        return s


def solve_normal(xx: np.ndarray, xy: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """Least-squares coefficients (p, U) of all units from X^T X (K, K) and X^T Y (K, U).

    Columns are rescaled to unit diagonal before the solve (Jacobi preconditioning); a singular system
    (e.g. a constant column besides the bias) gets the minimum-norm solution.
    """
    cols = list(cols)
    g = xx[np.ix_(cols, cols)]
    b = xy[cols]
    d = np.sqrt(np.diag(g))
    s = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    z, *_ = np.linalg.lstsq(g * s[:, None] * s[None, :], b * s[:, None], rcond=None)
    return z * s[:, None]


def score_from_stats(
    n: int, xx: np.ndarray, xy: np.ndarray, yy: np.ndarray, cols: Sequence[int], coef: np.ndarray
) -> dict[str, np.ndarray]:
    """RMSE, R^2 and Pearson r (U,) of ``coef`` on the points summarised by (n, xx, xy, yy).

    Exact expansions: SSE = sum y^2 - 2 c^T X^T y + c^T X^T X c, SST = sum y^2 - (sum y)^2 / n, and the
    correlation from sum y, sum yhat, sum yhat^2 and sum y yhat. Column 0 of xx / xy must be the bias.
    """
    cols = list(cols)
    if n <= 0:
        nan = np.full(xy.shape[1], np.nan)
        return {"rmse": nan, "r2": nan.copy(), "pcc": nan.copy()}
    g = xx[np.ix_(cols, cols)]
    b = xy[cols]
    sy = xy[0]
    sx = xx[0, cols]
    cty = np.einsum("ku,ku->u", coef, b)  # sum y * yhat
    ctgc = np.einsum("ku,kl,lu->u", coef, g, coef)  # sum yhat^2
    sp = sx @ coef  # sum yhat
    sse = np.maximum(yy - 2.0 * cty + ctgc, 0.0)
    sst = np.maximum(yy - sy * sy / n, 0.0)
    spp = np.maximum(ctgc - sp * sp / n, 0.0)
    syp = cty - sy * sp / n
    tiny = 1e-12 * np.maximum(yy, 1e-300)
    ok = sst > tiny
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ok, 1.0 - sse / np.where(ok, sst, 1.0), np.nan)
        okp = ok & (spp > 1e-12 * np.maximum(ctgc, 1e-300))
        pcc = np.where(okp, syp / np.sqrt(np.where(okp, sst * spp, 1.0)), np.nan)
    return {"rmse": np.sqrt(sse / n), "r2": r2, "pcc": np.clip(pcc, -1.0, 1.0)}


# ----------------------------------------------------------------------------- label selectivity


def ovr_auc(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-rest ROC AUC of every unit's value as a score for every class, by ranks.

    AUC_k = (sum of the ranks of class k - n_k (n_k + 1) / 2) / (n_k (n - n_k)), ties averaged (the
    Mann-Whitney statistic; equals ``sklearn.metrics.roc_auc_score``).

    Args:
        x: one value per trajectory and unit (n, U).
        labels: class per trajectory (n,) in 0..n_classes-1.

    Returns:
        (U, n_classes); NaN for a class absent from ``labels`` or present in every sample.
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    ranks = rankdata(x, axis=0)
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), labels] = 1.0
    npos = onehot.sum(0)
    sum_r = onehot.T @ ranks  # (K, U)
    denom = npos * (n - npos)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (sum_r - (npos * (npos + 1) / 2)[:, None]) / np.where(denom > 0, denom, np.nan)[:, None]
    return auc.T


def label_selectivity(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int = N_CLASSES,
    unit_block: int = 64,
) -> dict[str, np.ndarray]:
    """Label selectivity of single units: one-vs-rest, 1-D linear read-out, index 2 (AUC - 0.5).

    Rows of ``x_*`` are samples (one per trajectory: the mean activation over the movement; or, with
    ``[tuning] label_samples = "frames"``, one per trajectory and time point, as the original). For
    every class, a 1-D linear one-vs-rest classifier is monotonic in the value, so its test AUC is the
    AUC of the value itself with the sign learnt on the training samples (the sign for which the
    training AUC is >= 0.5, what a converged classifier gives). ``macro`` = 2 (mean_k AUC_k - 0.5) (the
    code's ``roc_auc_score``), ``max`` = 2 (max_k AUC_k - 0.5) (the paper's text). Units are ranked in
    blocks of ``unit_block`` (memory: samples x unit_block x 8 bytes a few times).

    Returns:
        ``auc`` (U, K) oriented test AUCs, ``macro`` (U,), ``max`` (U,).
    """
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    U = x_train.shape[1] if x_train.ndim == 2 else 0
    step = max(1, int(unit_block))
    a_tr = np.concatenate(
        [ovr_auc(x_train[:, s : s + step], y_train, n_classes) for s in range(0, U, step)]
        or [np.zeros((0, n_classes))]
    )
    a_te = np.concatenate(
        [ovr_auc(x_test[:, s : s + step], y_test, n_classes) for s in range(0, U, step)]
        or [np.zeros((0, n_classes))]
    )
    flip = a_tr < 0.5
    auc = np.where(flip, 1.0 - a_te, a_te)
    auc = np.where(np.isnan(a_tr), np.nan, auc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = 2.0 * (np.nanmean(auc, axis=1) - 0.5)
        mx = 2.0 * (np.nanmax(auc, axis=1) - 0.5)
    return {"auc": auc, "macro": macro, "max": mx}


# ----------------------------------------------------------------------------- split


def split_by_trajectory(
    sample_index: np.ndarray,
    level: np.ndarray,
    test_fraction: float = 0.2,
    seed: int = 42,
    stream: int = 0,
) -> np.ndarray:
    """Seeded train/test split of whole trajectories, stratified by plane.

    Within each plane (``level``: one plane value per trajectory, cm) the trajectories are ordered by
    ``sample_index`` and permuted by a generator seeded from (``seed``, ``stream``, plane), and the first
    ``round(test_fraction * m)`` (at least 1 and at most m - 1 when a plane has m >= 2 trajectories)
    go to the test set. The split therefore depends only on which samples a file holds, not on their
    order or on the model, so every model of a comparison sees the same split.

    Returns:
        ``is_test`` (n,) bool, one entry per trajectory (every frame of a trajectory is on one side).
    """
    sample_index = np.asarray(sample_index, dtype=np.int64)
    level = np.asarray(level, dtype=np.float64)
    is_test = np.zeros(sample_index.shape[0], dtype=bool)
    for lv in np.unique(level):
        members = np.flatnonzero(level == lv)
        members = members[np.argsort(sample_index[members], kind="stable")]
        m = members.size
        if m < 2:
            continue
        n_test = int(np.clip(round(test_fraction * m), 1, m - 1))
        key = int(round(float(lv) * 100)) + 1_000_000
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), key]))
        is_test[members[rng.permutation(m)[:n_test]]] = True
    return is_test
