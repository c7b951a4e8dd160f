"""Which candidates become samples: the score columns of the candidate shards, the selection and the
train/test split (no trajectories are read; see :mod:`deepdraw.dataset.assemble` for the rules).

Selection (the paper): accepted candidates only; duplicates (same UCI sample, plane, start point and
latents) dropped; per character ``n_samples / 20`` samples (the remainder spread over the first
characters), taken plane by plane in turn, lowest muscle jerk first. The split is a seeded
permutation: the first ``1 - test_fraction`` go to train.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ... import store
from ...contracts import KIND_CANDIDATES, LATENT_KEYS, LETTERS, N_CLASSES, SEED_STREAM_SPLIT
from ...errors import DeepDrawError

SCORE_KEYS = (
    "candidate_id", "char_index", "label", "plane", "startpt_id", "startpt", "length", "attempts",
    "accepted", "tracing_error", "joint_jerk", "muscle_jerk", *LATENT_KEYS,
)  # fmt: skip
SCREEN_KEYS = ("muscle_jerk_bound", "muscle_jerk_known")
"""Score columns of the muscle-jerk screening (absent from shards written without it: all jerks known)."""


def read_scores(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Concatenate the score columns of all candidate shards (no trajectories are read)."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in SCORE_KEYS}
    planes = None
    for p in paths:
        with store.open_artifact(p, kind=KIND_CANDIDATES) as f:
            pl = json.loads(f.attrs["planes"])
            if planes is None:
                planes = pl
            elif pl != planes:
                raise DeepDrawError(f"{p}: planes {pl} differ from the other shards' {planes}")
            for k in SCORE_KEYS:
                if k not in f:
                    raise DeepDrawError(f"{p}: key '{k}' is missing; expected a candidate shard")
                cols[k].append(f[k][()])
            if all(k in f for k in SCREEN_KEYS):
                cols.setdefault("muscle_jerk_bound", []).append(f["muscle_jerk_bound"][()])
                cols.setdefault("muscle_jerk_known", []).append(f["muscle_jerk_known"][()].astype(np.int8))
            else:  # every jerk computed
                cols.setdefault("muscle_jerk_bound", []).append(f["muscle_jerk"][()])
                cols.setdefault("muscle_jerk_known", []).append(np.ones(f["muscle_jerk"].shape, np.int8))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["_planes"] = np.array(planes or [], dtype=object)
    return out


def select(scores: dict[str, np.ndarray], n_samples: int, n_labels: int = N_CLASSES) -> np.ndarray:
    """Candidate ids of the selection (sorted); see the module docstring."""
    ok = (scores["accepted"] == 1) & np.isfinite(scores["muscle_jerk"])
    idx = np.flatnonzero(ok)
    # drop duplicates: same UCI sample, plane, start point and latents
    key = np.stack(
        [scores["char_index"][idx], scores["plane"][idx], scores["startpt_id"][idx]]
        + [np.round(scores[k][idx], 9) for k in LATENT_KEYS],
        axis=1,
    )
    _, first = np.unique(key, axis=0, return_index=True)
    idx = idx[np.sort(first)]
    quota = np.full(n_labels, n_samples // n_labels)
    quota[: n_samples % n_labels] += 1
    chosen = []
    for lab in range(n_labels):
        rows = idx[scores["label"][idx] == lab]
        if len(rows) < quota[lab]:
            raise DeepDrawError(
                f"kinematics.n_candidates: character '{LETTERS[lab]}' has {len(rows)} accepted candidates; "
                f"assembly.n_samples needs {quota[lab]} (raise kinematics.n_candidates or lower assembly.n_samples)"
            )
        planes = scores["plane"][rows]
        jerk = scores["muscle_jerk"][rows]
        cid = scores["candidate_id"][rows]
        # rank within plane by (jerk, candidate id), then interleave planes rank by rank
        order = np.lexsort((cid, jerk, planes))
        ranked = rows[order]
        pl_sorted = planes[order]
        rank = np.empty(len(rows), dtype=np.int64)
        for p in np.unique(pl_sorted):
            m = pl_sorted == p
            rank[m] = np.arange(m.sum())
        take = ranked[np.lexsort((pl_sorted, rank))][: quota[lab]]
        chosen.append(take)
    return np.sort(scores["candidate_id"][np.concatenate(chosen)])


def split(ids: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation split -> (train ids, test ids), each in permuted order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_STREAM_SPLIT,)))
    perm = rng.permutation(len(ids))
    n_train = len(ids) - int(round(len(ids) * test_fraction))
    return ids[perm[:n_train]], ids[perm[n_train:]]
