"""One-vs-one voting over pairwise classifiers, with scikit-learn's ``OneVsOneClassifier`` semantics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ovo_decision_function", "ovo_pairs", "ovo_predict"]


def ovo_pairs(n_classes: int) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, in scikit-learn's order."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def ovo_decision_function(
    decisions: np.ndarray, n_classes: int, pairs: Sequence[tuple[int, int]] | None = None
) -> np.ndarray:
    """Votes plus transformed summed confidences, as ``sklearn.multiclass._ovr_decision_function``.

    ``decisions`` is ``(n_samples, n_pairs)``: for pair ``(i, j)`` a positive value is a vote for
    ``j`` (the binary classifier was trained with ``j`` as its positive class), zero or negative a vote
    for ``i``. Each class gets ``votes + s / (3 (|s| + 1))`` where ``s`` is the sum of the confidences
    for it; the added term is below 1/3 in size, so it only breaks ties between equal vote counts.
    """
    decisions = np.asarray(decisions, dtype=np.float64)
    if pairs is None:
        pairs = ovo_pairs(n_classes)
    if decisions.ndim != 2 or decisions.shape[1] != len(pairs):
        raise ValueError(f"decisions must be (n_samples, {len(pairs)}), got {decisions.shape}")
    n = decisions.shape[0]
    votes = np.zeros((n, n_classes))
    conf = np.zeros((n, n_classes))
    for k, (i, j) in enumerate(pairs):
        dk = decisions[:, k]
        conf[:, i] -= dk
        conf[:, j] += dk
        pos = dk > 0
        votes[:, j] += pos
        votes[:, i] += ~pos
    return votes + conf / (3.0 * (np.abs(conf) + 1.0))


def ovo_predict(
    decisions: np.ndarray, n_classes: int, pairs: Sequence[tuple[int, int]] | None = None
) -> np.ndarray:
    """Class index (0..n_classes-1) with the largest :func:`ovo_decision_function` value."""
    return np.argmax(ovo_decision_function(decisions, n_classes, pairs), axis=1)
