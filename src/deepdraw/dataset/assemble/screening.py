"""The muscle-jerk screening: which candidates need an exact muscle jerk for the selection to be the
exact one, evaluated round by round through a caller's ``evaluate`` (the algorithm alone: no files, no
workers; :mod:`.jerk_rounds` runs its rounds over the workers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import DeepDrawError


def screen_jerks(
    scores: dict[str, np.ndarray],
    n_samples: int,
    evaluate: Any,
    n_labels: int = 20,
    max_rounds: int = 100,
    min_round: int = 0,
) -> dict[str, int]:
    """Compute the exact muscle jerks the selection needs; ``scores["muscle_jerk"]`` is filled in place.

    ``evaluate(idx, tau) -> (jerk, bound, done)`` handles the candidates at row indices ``idx`` (one
    call per round): ``done`` -> ``jerk`` is exact (NaN: OpenSim failed); not ``done`` -> it stopped
    early with a certified ``bound > tau`` (the candidate cannot be selected: its jerk stays NaN).
    Per character, ``K = ceil(quota / planes)`` is the most one plane can give when every
    plane has enough candidates. In a (character, plane) group, let tau be the K-th smallest known
    finite jerk (infinite while fewer are known); a candidate with an unknown jerk and a bound > tau
    has jerk >= bound > tau, so at least K candidates rank before it and
    :func:`~deepdraw.dataset.assemble.selection.select` never takes it.
    Each round evaluates, per group, the K/4 unknown candidates with the lowest bounds <= tau; tau only
    decreases, so the evaluated set is the lowest-bound prefix, at most K/4 past the last needed one. A character with a plane short of K valid candidates gets all its jerks computed.
    ``min_round``: each group takes at least its share (by K) of ``min_round`` candidates per round,
    for an ``evaluate`` with a large cost per call (fewer, larger rounds; large runs, where K/4 is above
    the share, are unchanged). The assembly's rounds are cheap to start (their joints come from the
    stored IK swivel angles, without a search), and smaller rounds stop more candidates early: it
    uses 0. A round may take up to that share per group past the last needed candidate; the
    selection does not change.
    Returns counts (evaluated, rounds).
    """
    jerk = scores["muscle_jerk"]
    bound = scores["muscle_jerk_bound"]
    known = scores["muscle_jerk_known"].astype(bool).copy()
    out = np.zeros(len(jerk), dtype=bool)  # certified above the tau of their group
    eligible = (scores["accepted"] == 1) & np.isfinite(bound)
    groups = _groups(eligible, scores["label"], scores["plane"], n_samples, n_labels)
    stats = {
        "evaluated": 0, "stopped_early": 0, "rounds": 0, "unknown_at_start": int((eligible & ~known).sum())
    }  # fmt: skip
    k_total = sum(k * len(plane_rows) for _lab, k, plane_rows in groups)
    from ..engines import SCREEN_SLACK as slack  # the re-generated IK may differ in the last bits

    def run(idx: np.ndarray, tau: np.ndarray) -> None:
        order = np.argsort(idx, kind="stable")
        idx, tau = idx[order], tau[order]
        if len(idx):
            j, b, d = evaluate(idx, tau)
            d = np.asarray(d, dtype=bool)
            jerk[idx] = np.where(d, j, np.nan)
            bound[idx] = np.maximum(bound[idx], b)
            known[idx] = d
            out[idx] = ~d
            stats["evaluated"] += len(idx)
            stats["stopped_early"] += int((~d).sum())
            stats["rounds"] += 1

    for _ in range(max_rounds):
        todo, taus = [], []
        for _lab, k, plane_rows in groups:
            # a quarter of K per round (little work past the final tau), or the group's min_round share
            take = max(1, -(-k // 4), -(-int(min_round) * k // max(k_total, 1)))
            for rows in plane_rows:
                kn = rows[known[rows] & np.isfinite(jerk[rows])]
                tau = np.partition(jerk[kn], k - 1)[k - 1] if len(kn) >= k else np.inf
                unk = rows[~known[rows] & ~out[rows] & (bound[rows] <= tau * slack)]
                if len(unk):
                    todo.append(unk[np.argsort(bound[unk], kind="stable")[:take]])
                    taus.append(np.full(len(todo[-1]), tau))
        if not todo:
            break
        run(np.concatenate(todo), np.concatenate(taus))
    else:
        raise DeepDrawError(f"muscle-jerk screening did not settle in {max_rounds} rounds")
    short = []
    for _lab, k, plane_rows in groups:
        if len(plane_rows) and any((known[r] & np.isfinite(jerk[r])).sum() < k for r in plane_rows):
            rows = np.concatenate(plane_rows)
            short.append(rows[~known[rows]])  # every jerk of this character, with no early stop
    if short:
        idx = np.concatenate(short)
        run(idx, np.full(len(idx), np.inf))
    scores["muscle_jerk_known"] = known.astype(np.int8)
    return stats


def _groups(
    eligible: np.ndarray, labels: np.ndarray, planes: np.ndarray, n_samples: int, n_labels: int
) -> list[tuple[int, int, list[np.ndarray]]]:
    """``(character, K, rows of each plane)`` for every character with a quota: K = ceil(quota / planes)."""
    quota = np.full(n_labels, n_samples // n_labels)
    quota[: n_samples % n_labels] += 1
    groups = []
    for lab in range(n_labels):
        rows_l = np.flatnonzero(eligible & (labels == lab))
        pls = np.unique(planes[rows_l])
        k = int(np.ceil(quota[lab] / max(len(pls), 1)))
        if k > 0:  # a character without quota (fewer samples than characters) needs no jerk
            groups.append((lab, k, [rows_l[planes[rows_l] == p] for p in pls]))
    return groups
