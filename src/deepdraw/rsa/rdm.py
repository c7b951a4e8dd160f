"""Representational dissimilarity matrices (RDMs) and their similarity to the category oracle.

An RDM here is the correlation distance ``1 - Pearson r`` between the flattened representations of
every pair of samples (``scipy.spatial.distance.pdist(X, "correlation")``), stored *condensed* (the
upper triangle, row by row, as pdist returns it). Big RDMs are computed from one Gram matrix of the
row-centred data (:class:`LayerGram`), which is also what linear CKA needs (:mod:`deepdraw.rsa.cka`),
so each layer costs one matrix product.

The category oracle RDM is 0 for two samples of the same character and 1 otherwise. The similarity of
an RDM to it is the Pearson r of the two condensed vectors (``1 - scipy.spatial.distance.correlation``)
and Kendall's tau (tau-b, as ``scipy.stats.kendalltau`` by default; tau-a as rsatoolbox's
``compare(method="tau-a")``). Because the oracle is binary, tau reduces to the Mann-Whitney U statistic
of the RDM values between vs. within classes, computed in O(m log m) for m pairs
(:func:`kendall_tau_binary`); scipy's general O(m log m) merge sort would take minutes on the 8 million
pairs of 4,000 samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import DeepDrawError

log = logging.getLogger(__name__)

SERIAL_BELOW = 1500  # Gram matrices of fewer samples are computed on one BLAS thread

__all__ = [
    "LayerGram",
    "balanced_subset",
    "condensed",
    "correlation_rdm",
    "kendall_tau_binary",
    "layer_gram",
    "oracle_rdm",
    "oracle_similarity",
    "pearson_binary",
    "percentile_image",
    "to_rsatoolbox",
]


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of a class-balanced subset drawn **without replacement**, ordered by class.

    Parameters
    ----------
    labels : (n,) int
        Class of every sample (0..19).
    per_class : int
        Samples wanted per class. When a class holds fewer, every class gets as many as the smallest
        class present holds (the subset stays balanced) and a warning is logged.
    rng : numpy Generator

    Returns
    -------
    (k * n_classes,) int64 positions into ``labels``; class by class (ascending label), ascending
    position within a class.

    The original (ComputeRDMs.ipynb) drew ``np.random.choice(idx, 200)``, i.e. *with* replacement, so
    its RDMs held duplicated samples (zero-distance pairs); this is fixed on purpose.
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise DeepDrawError(f"rsa.per_class is {per_class}; expected a positive integer")
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size == 0:
        raise DeepDrawError("labels: no samples; expected at least one sample per class")
    k = int(min(per_class, counts.min()))
    if k < per_class:
        log.warning(
            "balanced subset: smallest class (%d) holds %d samples < %d requested; using %d per class",
            int(classes[counts.argmin()]),
            int(counts.min()),
            per_class,
            k,
        )
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(np.sort(rng.choice(idx, size=k, replace=False)))
    return np.concatenate(out).astype(np.int64)


def condensed(square: np.ndarray) -> np.ndarray:
    """Upper triangle (k=1) of a square matrix, row by row (the layout of ``pdist``), as float64."""
    n = square.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    pos = 0
    for i in range(n - 1):
        row = square[i, i + 1 :]
        out[pos : pos + row.size] = row
        pos += row.size
    return out


def _flat(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    return X.reshape(X.shape[0], -1)


def _matmul_t(A: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``A @ A.T`` (numpy calls BLAS syrk for this pattern), optionally on a CUDA device via torch."""
    if device != "cpu":
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device != "cpu":
            t = torch.from_numpy(np.ascontiguousarray(A)).to(device)
            return (t @ t.T).cpu().numpy()
    if A.shape[0] < SERIAL_BELOW:  # small products: BLAS threads cost more than they bring
        with threadpool_limits(limits=1, user_api="blas"):
            return A @ A.T
    return A @ A.T


@dataclass
class LayerGram:
    """Gram matrix of the row-centred representations of a set of samples.

    ``K = Xr Xrᵀ`` with ``Xr = X - m 1ᵀ`` (each sample minus its own mean over features), plus the row
    means ``m`` and the feature count ``d``. From it:

    * the correlation RDM of any subset (:meth:`rdm`), since ``r_ij = K_ij / sqrt(K_ii K_jj)``;
    * the column-centred Gram of any subset (:meth:`centred`) for linear CKA, since
      ``H X Xᵀ H = H K H + d (H m)(H m)ᵀ`` (H the centring matrix of the subset).

    Shapes: K (n, n) in the compute dtype, row_mean (n,) float64.
    """

    K: np.ndarray
    row_mean: np.ndarray
    n_features: int

    @property
    def n(self) -> int:
        return self.K.shape[0]

    def correlation(self, sub: np.ndarray | None = None) -> np.ndarray:
        """(k, k) float64 Pearson correlations of the samples ``sub`` (positions; None = all)."""
        K = self.K if sub is None else self.K[np.ix_(sub, sub)]
        K = K.astype(np.float64)
        norm = np.sqrt(np.clip(np.diag(K), 0.0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            C = K / norm[:, None] / norm[None, :]
        np.clip(C, -1.0, 1.0, out=C)
        return C

    def rdm(self, sub: np.ndarray | None = None) -> np.ndarray:
        """Condensed correlation-distance RDM of ``sub``; NaN where a sample is constant.

        In the dtype of the Gram matrix (float32 by default: half the memory and faster sorting for
        the oracle statistics); built row by row (no k x k temporaries).
        """
        K = self.K if sub is None else self.K[np.ix_(sub, sub)]
        k = K.shape[0]
        norm = np.sqrt(np.clip(np.diag(K).astype(np.float64), 0.0, None)).astype(K.dtype)
        out = np.empty(k * (k - 1) // 2, dtype=K.dtype)
        pos = 0
        with np.errstate(invalid="ignore", divide="ignore"):
            for i in range(k - 1):
                seg = out[pos : pos + k - 1 - i]
                np.multiply(norm[i + 1 :], norm[i], out=seg)
                np.divide(K[i, i + 1 :], seg, out=seg)
                pos += k - 1 - i
        np.clip(out, -1.0, 1.0, out=out)
        np.subtract(1.0, out, out=out)
        return out

    def centred(self, sub: np.ndarray | None = None) -> np.ndarray:
        """(k, k) float64 Gram of the column-centred representations of ``sub`` (``H X Xᵀ H``)."""
        K = self.K if sub is None else self.K[np.ix_(sub, sub)]
        m = self.row_mean if sub is None else self.row_mean[sub]
        K = K.astype(np.float64)
        mu_r = K.mean(axis=1)
        K -= mu_r[:, None]
        K -= mu_r[None, :]
        K += mu_r.mean()
        hm = m - m.mean()
        K += self.n_features * np.outer(hm, hm)
        return K


def layer_gram(X: np.ndarray, dtype: str | np.dtype = "float32", device: str = "cpu") -> LayerGram:
    """:class:`LayerGram` of representations ``X`` (n, ...) flattened to (n, d).

    The row centring and the product run in ``dtype`` (float32: half the memory and twice the speed;
    entries then carry a relative error of about 1e-6, enough for RDMs and CKA; float64 for reference
    checks). ``device``: "cpu", "cuda" or "auto" (torch on a GPU when there is one).
    """
    X = _flat(X)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise DeepDrawError(f"rsa.gram_dtype is {dt}; expected float32 or float64")
    m = X.mean(axis=1, dtype=np.float64)
    Xr = X.astype(dt, copy=True)
    Xr -= m.astype(dt)[:, None]
    K = _matmul_t(Xr, device)
    return LayerGram(K=K, row_mean=m, n_features=X.shape[1])


def correlation_rdm(X: np.ndarray, dtype: str | np.dtype = "float64") -> np.ndarray:
    """Condensed correlation-distance RDM of ``X`` (n, ...) flattened to (n, d).

    Equals ``scipy.spatial.distance.pdist(X.reshape(n, -1), "correlation")`` (to ~1e-12 in float64,
    ~1e-5 in float32), computed as one matrix product of the row-centred data.
    """
    return layer_gram(X, dtype).rdm()


def oracle_rdm(labels: np.ndarray) -> np.ndarray:
    """Condensed category-oracle RDM: 0 for pairs of the same class, 1 otherwise (float64)."""
    labels = np.asarray(labels)
    n = labels.size
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    pos = 0
    for i in range(n - 1):
        row = labels[i + 1 :] != labels[i]
        out[pos : pos + row.size] = row
        pos += row.size
    return out


def _as_float(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values)
    return v if v.dtype in (np.float32, np.float64) else v.astype(np.float64)


def pearson_binary(values: np.ndarray, binary: np.ndarray) -> float:
    """Pearson r between ``values`` and a 0/1 variable (point-biserial r), O(m)."""
    v = _as_float(values)
    b = np.asarray(binary).astype(bool)
    return _pearson_split(v[~b], v[b])


def _ties(sorted_values: np.ndarray) -> float:
    """Number of pairs of equal values, sum over runs of C(t, 2), of a sorted vector."""
    if sorted_values.size < 2:
        return 0.0
    eq = np.flatnonzero(sorted_values[1:] == sorted_values[:-1])  # usually empty
    if eq.size == 0:
        return 0.0
    # runs of consecutive positions in eq: a run of L equalities is a tie group of L + 1 values
    brk = np.flatnonzero(np.diff(eq) != 1)
    L = np.diff(np.r_[-1, brk, eq.size - 1]).astype(np.float64)
    return float(np.sum((L + 1) * L / 2.0))


def _tau_parts(values: np.ndarray, binary: np.ndarray) -> tuple[float, float, float, float] | None:
    """(S, P, T_b, T_v) of Kendall's tau between ``values`` and a 0/1 variable; None if undefined."""
    v = _as_float(values)
    b = np.asarray(binary).astype(bool)
    return _tau_split(v[~b], v[b])


def _tau_split(v0: np.ndarray, v1: np.ndarray) -> tuple[float, float, float, float] | None:
    """:func:`_tau_parts` from the values of the 0 group and of the 1 group (sorted in place)."""
    n0, n1 = v0.size, v1.size
    m = n0 + n1
    if m < 2 or n0 == 0 or n1 == 0:
        return None
    v0.sort()
    v1.sort()
    below = np.searchsorted(v0, v1, side="left")  # number of v0 < each v1
    hit = v0[np.minimum(below, n0 - 1)] == v1  # v1 values that also occur among v0
    equal = 0.0
    if hit.any():
        upto = np.searchsorted(v0, v1[hit], side="right")
        equal = float(np.sum(upto - below[hit]))  # cross pairs with equal values
    greater = float(np.sum(below, dtype=np.float64))  # concordant pairs: v1 > v0
    less = float(n0) * float(n1) - greater - equal  # discordant pairs
    S = greater - less
    P = m * (m - 1) / 2.0
    T_b = n0 * (n0 - 1) / 2.0 + n1 * (n1 - 1) / 2.0
    T_v = _ties(v0) + _ties(v1) + equal
    return S, P, T_b, T_v


def _pearson_split(v0: np.ndarray, v1: np.ndarray) -> float:
    """Point-biserial r from the values of the 0 group and of the 1 group."""
    n0, n1 = v0.size, v1.size
    m = n0 + n1
    if n0 == 0 or n1 == 0:
        return float("nan")
    m0, m1 = float(v0.mean(dtype=np.float64)), float(v1.mean(dtype=np.float64))
    mu = (n0 * m0 + n1 * m1) / m
    var = (
        float(np.sum((v0 - mu) ** 2, dtype=np.float64)) + float(np.sum((v1 - mu) ** 2, dtype=np.float64))
    ) / m
    if var <= 0:
        return float("nan")
    return float((m1 - m0) / np.sqrt(var) * np.sqrt(n0 * n1) / m)


def _tau_from_parts(parts: tuple[float, float, float, float] | None, variant: str) -> float:
    if parts is None:
        return float("nan")
    S, P, T_b, T_v = parts
    if variant == "a":
        return float(S / P)
    den = np.sqrt((P - T_b) * (P - T_v))
    return float(S / den) if den > 0 else float("nan")


def kendall_tau_binary(values: np.ndarray, binary: np.ndarray, variant: str = "b") -> float:
    """Kendall's tau between ``values`` and a 0/1 variable in O(m log m).

    Only pairs whose binary values differ can be concordant or discordant, so
    ``S = #concordant - #discordant = #(v1 > v0) - #(v1 < v0)`` over all pairs of a ``binary == 1``
    value v1 and a ``binary == 0`` value v0: the Mann-Whitney U statistic (``S = 2 U - n0 n1``). Both
    groups are sorted and counted against each other with ``searchsorted``. Then
    tau-a = S / P (``variant="a"``, rsatoolbox's ``tau-a``) and
    tau-b = S / sqrt((P - T_b)(P - T_v)) (``variant="b"``, ``scipy.stats.kendalltau``), with
    P = m (m-1) / 2, T_b = C(n0, 2) + C(n1, 2) and T_v = the number of pairs of tied values.
    """
    if variant not in ("a", "b"):
        raise DeepDrawError(f"Kendall tau variant is {variant!r}; expected 'a' or 'b'")
    return _tau_from_parts(_tau_parts(values, binary), variant)


def oracle_similarity(
    rdm: np.ndarray, labels: np.ndarray, oracle: np.ndarray | None = None
) -> dict[str, float]:
    """Similarity of a condensed RDM to the category oracle of ``labels``.

    Returns ``{"oracle_r", "oracle_tau_b", "oracle_tau_a", "n_pairs"}``; ``oracle_r`` is the Pearson r
    of the condensed vectors (= 1 - correlation distance, the paper's score). Pairs where the RDM is
    NaN (a constant sample) are left out, with a warning. ``oracle``: the precomputed
    :func:`oracle_rdm` of ``labels`` (saves its construction when many RDMs share the samples).
    """
    rdm = _as_float(rdm)
    oracle = (oracle_rdm(labels) if oracle is None else np.asarray(oracle)).astype(bool)
    if oracle.size != rdm.size:
        raise DeepDrawError(
            f"RDM holds {rdm.size} pairs; expected {oracle.size} for {np.asarray(labels).size} labels"
        )
    ok = np.isfinite(rdm)
    if not ok.all():
        log.warning("RDM: %d of %d pairs are NaN (constant samples); left out", int((~ok).sum()), ok.size)
        rdm, oracle = rdm[ok], oracle[ok]
    within, between = rdm[~oracle], rdm[oracle]
    r = _pearson_split(within, between)
    parts = _tau_split(within, between)
    return {
        "oracle_r": r,
        "oracle_tau_b": _tau_from_parts(parts, "b"),
        "oracle_tau_a": _tau_from_parts(parts, "a"),
        "n_pairs": int(rdm.size),
    }


def percentile_image(rdm: np.ndarray, n: int, size: int = 400, resolution: int = 1000) -> np.ndarray:
    """Square RDM in percentiles of its condensed values, block-averaged to at most ``size`` pixels.

    Percentiles come from the empirical distribution of a strided sample of at most 2**20 values,
    tabulated on a fine grid and rounded to 100 / ``resolution`` percent (:func:`_percentiles`): plenty
    for a figure, and O(m) instead of a full rank transform. The diagonal is left out of the block means. Returns (s, s) float32 with
    s = min(n, size); NaN pairs are left out of the means.
    """
    rdm = np.asarray(rdm)
    ok = np.isfinite(rdm)
    all_ok = bool(ok.all())
    vals = rdm if all_ok else rdm[ok]
    pct = np.full(rdm.size, np.nan, dtype=np.float32)
    if vals.size:
        pct[ok if not all_ok else slice(None)] = _percentiles(vals, resolution)
    sq = np.zeros((n, n), dtype=np.float32)  # upper triangle only
    pos = 0
    for i in range(n - 1):
        sq[i, i + 1 :] = pct[pos : pos + n - 1 - i]
        pos += n - 1 - i
    s = min(n, size)
    starts = np.linspace(0, n, s + 1).astype(int)[:-1]
    sizes = np.diff(np.r_[starts, n]).astype(np.float64)
    if all_ok:
        tot = _block_sum(sq, starts, s)
        cnt = np.outer(sizes, sizes) - np.diag(sizes)  # the diagonal is not a pair
    else:
        good = np.isfinite(sq)
        good[np.tril_indices(n)] = False
        tot = _block_sum(np.where(good, sq, 0), starts, s)
        cnt = _block_sum(good.astype(np.float32), starts, s)
        cnt = cnt + cnt.T
    tot = tot + tot.T  # symmetric block sums from the strict upper triangle
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tot / cnt).astype(np.float32)


def _block_sum(a: np.ndarray, starts: np.ndarray, s: int) -> np.ndarray:
    n = a.shape[0]
    if n % s == 0:
        b = n // s
        return a.reshape(s, b, s, b).sum(axis=(1, 3), dtype=np.float64)
    return np.add.reduceat(np.add.reduceat(a, starts, axis=0, dtype=np.float64), starts, axis=1)


def _percentiles(vals: np.ndarray, resolution: int) -> np.ndarray:
    """Approximate percentile (0..100) of every value, float32, in O(m).

    A sorted strided sample (at most 2**20 values) gives the empirical distribution; it is tabulated on
    a uniform grid of 2**16 cells over the value range, and each value looks up its cell.
    """
    step = max(1, vals.size >> 20)
    sample = np.sort(vals[::step])
    lo, hi = float(sample[0]), float(sample[-1])
    lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
    if hi <= lo:
        return np.full(vals.size, 50.0, dtype=np.float32)
    cells = 1 << 16
    edges = np.linspace(lo, hi, cells + 1)
    centre = 0.5 * (edges[:-1] + edges[1:])
    table = (np.searchsorted(sample, centre) / sample.size * 100.0).astype(np.float32)
    table = np.round(table * resolution / 100.0) * np.float32(100.0 / resolution)
    idx = ((vals - lo) * (cells / (hi - lo))).astype(np.int64)
    np.clip(idx, 0, cells - 1, out=idx)
    return table[idx]


def to_rsatoolbox(rdms: dict[str, np.ndarray], labels: np.ndarray, measure: str = "correlation"):
    """rsatoolbox ``RDMs`` object holding condensed ``rdms`` (name -> vector) of samples ``labels``.

    The names go to ``rdm_descriptors["name"]``, the labels to ``pattern_descriptors["label"]``, so
    rsatoolbox's ``compare``, ``show_rdm`` and ``save`` can be used on our results.
    """
    from rsatoolbox.rdm import RDMs

    names = list(rdms)
    vecs = np.stack([np.asarray(rdms[k], dtype=np.float64) for k in names])
    return RDMs(
        vecs,
        dissimilarity_measure=measure,
        rdm_descriptors={"name": names},
        pattern_descriptors={"label": list(np.asarray(labels).tolist())},
    )
