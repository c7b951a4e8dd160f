"""Linear centred kernel alignment (CKA, Kornblith et al. 2019) between two representations.

For representations X (n, dx) and Y (n, dy) of the same n samples, with columns centred,

    CKA(X, Y) = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)              (feature space, O(n dx dy))
              = ⟨Kc, Lc⟩_F / (‖Kc‖_F ‖Lc‖_F),  Kc = X Xᵀ      (Gram form, O(n² (dx + dy)))

the "biased HSIC" linear CKA of the original (kornblith_et_al_rsa_colab.py). :func:`linear_cka` picks
whichever form is cheaper (feature space when the features are fewer than the samples, as for the deep
layers and the LSTM; the Gram form when features ≫ samples, as for the early conv layers, where
‖YᵀX‖ would be a dx × dy matrix of gigabytes). In the RSA stage the Gram form comes for free: the
Gram matrix of every layer is computed once for its RDM (:class:`deepdraw.rsa.rdm.LayerGram`), and
:func:`normalised_gram` / :func:`cka_normalised` turn two of them into CKA in O(n²).

CKA is invariant to orthogonal transforms and isotropic scaling of either representation and is 1 for
identical inputs.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeepDrawError
from .rdm import LayerGram

__all__ = ["check_same_samples", "cka_normalised", "linear_cka", "normalised_gram"]


def _centred(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    return X - X.mean(axis=0, keepdims=True)


def linear_cka(X: np.ndarray, Y: np.ndarray, method: str = "auto") -> float:
    """Linear CKA of X (n, ...) and Y (n, ...) (flattened to (n, d)), in float64.

    ``method``: "feature" (‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)), "gram" (centred n×n Gram matrices) or
    "auto" (the one with fewer operations). Returns NaN when either representation is constant.
    """
    X = _centred(X)
    Y = _centred(Y)
    if X.shape[0] != Y.shape[0]:
        raise DeepDrawError(
            f"CKA: X holds {X.shape[0]} samples and Y {Y.shape[0]}; expected the same samples"
        )
    n, dx = X.shape
    dy = Y.shape[1]
    if method == "auto":
        method = "feature" if dx * dy + dx * dx + dy * dy <= n * (dx + dy) else "gram"
    if method == "feature":
        num = float(np.linalg.norm(Y.T @ X) ** 2)
        den = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    elif method == "gram":
        K = X @ X.T
        L = Y @ Y.T
        num = float(np.sum(K * L))
        den = np.linalg.norm(K) * np.linalg.norm(L)
    else:
        raise DeepDrawError(f"CKA method is {method!r}; expected 'auto', 'feature' or 'gram'")
    return float(num / den) if den > 0 else float("nan")


def normalised_gram(gram: LayerGram, sub: np.ndarray | None = None) -> np.ndarray | None:
    """Centred Gram matrix of the samples ``sub`` divided by its Frobenius norm, as float32 (k, k).

    None when the representation is constant over ``sub`` (CKA undefined).
    """
    Kc = gram.centred(sub)
    norm = np.linalg.norm(Kc)
    if not np.isfinite(norm) or norm == 0:
        return None
    Kc /= norm
    return Kc.astype(np.float32)


def cka_normalised(A: np.ndarray | None, B: np.ndarray | None, block: int = 512) -> float:
    """CKA from two :func:`normalised_gram` matrices: ⟨A, B⟩_F accumulated in float64 by row blocks."""
    if A is None or B is None:
        return float("nan")
    if A.shape != B.shape:
        raise DeepDrawError(
            f"CKA: Gram matrices of shapes {A.shape} and {B.shape}; expected the same samples"
        )
    tot = 0.0
    for s in range(0, A.shape[0], block):
        a = A[s : s + block].astype(np.float64).ravel()
        b = B[s : s + block].astype(np.float64).ravel()
        tot += float(a @ b)
    return tot


def check_same_samples(index_a: np.ndarray, index_b: np.ndarray, path_a: str, path_b: str) -> None:
    """Raise a DeepDrawError unless two activations files hold the same test samples in the same order."""
    a = np.asarray(index_a)
    b = np.asarray(index_b)
    if a.shape != b.shape or not np.array_equal(a, b):
        where = (
            "sizes differ"
            if a.shape != b.shape
            else f"first difference at row {int(np.flatnonzero(a != b)[0])}"
        )
        raise DeepDrawError(
            f"{path_b}: key 'sample_index' differs from that of {path_a} ({where}); expected the same test "
            "samples in the same order for every model compared (extract activations with the same seed)"
        )
