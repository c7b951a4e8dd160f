"""Candidate movements: augmented hand paths, inverse kinematics and acceptance (original: dataset/generate_data.py).

Candidates ``0 .. n_candidates-1`` are cut into fixed shards of ``shard_size``. Candidate ``i`` writes
character ``(i // n_planes) % 20`` in plane ``planes[i % n_planes]``; its k-th visit to that character
(``k = i // (20 * n_planes)``) takes UCI sample ``perm_c[k % n_c]`` of a seeded permutation of the
``n_c`` samples of the character. So characters and planes are balanced at any scale, and every UCI
sample is used before any is used twice. Shard ``k`` draws every latent from its own generator,
``np.random.default_rng(SeedSequence(seed, spawn_key=(1, k)))``, so the output does not depend on the
number of workers or on which shards a resumed run still had to do.

Acceptance (the paper; the original's ``and`` was a bug, see docs/deviations.md): the latents of a
candidate are redrawn until its summed IK tracing error is at most ``max_tracing_error_cm`` **and**
its joint jerk at most ``max_joint_jerk``, at most ``max_attempts`` times; the number of attempts is
recorded and a candidate that never passes is kept with ``accepted = 0``. ``acceptance = "original"``
reproduces the original's loop, which stops as soon as either criterion passes.

Each shard is one HDF5 file written atomically (see docs/formats.md, "candidate shard"); a run that
is killed and restarted skips the shards already on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import store
from ..contracts import (
    CHARACTERS_SCHEMA,
    KIND_CANDIDATES,
    KIND_CHARACTERS,
    KIND_STARTPOINTS,
    LATENT_KEYS,
    SEED_STREAM_CANDIDATES,
    SEED_STREAM_CHARPERM,
    STARTPOINTS_SCHEMA,
)
from ..errors import DeepDrawError
from . import arm
from .augment import draw_latents, max_length, transform

log = logging.getLogger(__name__)


@dataclass
class ShardTask:
    """Everything one worker needs to generate shard ``k`` (picklable)."""

    k: int
    start: int
    stop: int
    seed: int
    characters: str
    startpoints: str
    out: str
    kin: dict[str, Any]
    muscles: dict[str, Any] | None
    config: dict[str, Any]
    inputs: dict[str, str]
    save_trajectories: bool = True


def shard_bounds(n_candidates: int, shard_size: int) -> list[tuple[int, int, int]]:
    """``[(k, start, stop), ...]`` covering ``range(n_candidates)``."""
    return [
        (k, s, min(n_candidates, s + shard_size)) for k, s in enumerate(range(0, n_candidates, shard_size))
    ]


def character_permutation(seed: int, labels: np.ndarray) -> list[np.ndarray]:
    """Per character (label 0..19), its UCI sample indices in a seeded order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_STREAM_CHARPERM,)))
    n_labels = int(labels.max()) + 1
    return [rng.permutation(np.flatnonzero(labels == lab)) for lab in range(n_labels)]


def assign(ids: np.ndarray, perms: list[np.ndarray], planes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids -> (UCI sample index, plane index into ``planes``)."""
    n_pl, n_lab = len(planes), len(perms)
    lab = (ids // n_pl) % n_lab
    visit = ids // (n_pl * n_lab)
    char = np.array(
        [perms[a][b % len(perms[a])] if len(perms[a]) else -1 for a, b in zip(lab, visit)], dtype=np.int64
    )
    if (char < 0).any():
        raise DeepDrawError(
            f"characters.h5: no trajectory of label {int(lab[char < 0][0])}; expected all 20 characters"
        )
    return char, ids % n_pl


def load_characters(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """characters.h5 -> (trajectories (n,2,T) cm NaN-padded, lengths (n,), labels (n,) 0..19)."""

    a = store.read_arrays(
        path, ["trajectories", "lengths", "labels"], kind=KIND_CHARACTERS, schema=CHARACTERS_SCHEMA
    )
    traj, lengths = a["trajectories"], a["lengths"]
    if len(lengths) == 0:
        raise DeepDrawError(f"{path}: the character set is empty; expected at least one trajectory")
    if lengths.min() < 2 or lengths.max() > traj.shape[2]:
        raise DeepDrawError(f"{path}: key 'lengths' outside 2..{traj.shape[2]}")
    inside = np.arange(traj.shape[2])[None, :] < lengths[:, None]
    bad = np.flatnonzero((~np.isfinite(traj).all(axis=1) & inside).any(axis=1))
    if len(bad):
        raise DeepDrawError(
            f"{path}: trajectory {bad[0]} holds NaN/inf within its length; expected finite values"
        )
    return traj, lengths, a["labels"]


def load_startpoints(path: str | Path) -> dict[str, np.ndarray]:
    """startpoints.h5 -> {"horizontal": (n,3), "vertical": (m,3)} cm, {W}."""

    return store.read_arrays(
        path, ["horizontal", "vertical"], kind=KIND_STARTPOINTS, schema=STARTPOINTS_SCHEMA
    )


def _solve_ik(
    paths: list[np.ndarray], engine: str
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """Hand paths [(3, T_i)] -> joints [(T_i, 4)] deg, tracing error (n,) cm, joint jerk (n,) and the
    batched engine's swivel angles [(T_i,)] rad (None with the reference engine)."""
    n = len(paths)
    lengths = np.array([p.shape[1] for p in paths], dtype=np.int64)
    T = int(lengths.max())
    if engine == "reference":
        joints = []
        err = np.empty(n)
        for i, p in enumerate(paths):
            q, e = arm.ik_reference(p.T)
            joints.append(q)
            err[i] = e.sum()
        jerk = np.array([arm.joint_jerk(q) for q in joints])
        swivel = None
    else:
        targets = np.full((n, T, 3), np.nan)
        for i, p in enumerate(paths):
            targets[i, : p.shape[1]] = p.T
        q, e, sv = arm.ik_batch(targets, lengths, return_swivel=True)
        joints = [q[i, : lengths[i]] for i in range(n)]
        err = np.array([e[i, : lengths[i]].sum() for i in range(n)])
        jerk = np.asarray(
            arm.joint_jerk(q)
        )  # batched (NaN padding -> lengths): bit for bit the per-trajectory sums
        swivel = [sv[i, : lengths[i]] for i in range(n)]
    return joints, err, jerk, swivel


def generate_shard(task: ShardTask) -> str:
    """Generate, check and write one shard; returns its path. Skips a shard already on disk.

    Runs with one BLAS thread in every mode: a Dask worker has one, and a multi-threaded BLAS may round
    a product differently, which would change which candidates pass (bytes must not depend on the mode).
    """
    out = Path(task.out)
    if out.exists():
        return str(out)
    from ..parallel import one_blas_thread

    with one_blas_thread():
        return _generate_shard(task, out)


@dataclass
class _Drawn:
    """The candidates of one shard after the acceptance loop (n each; the last attempt's draw)."""

    lat: dict[str, np.ndarray]
    start_id: np.ndarray
    attempts: np.ndarray
    accepted: np.ndarray
    tracing: np.ndarray
    jerk: np.ndarray
    hands: list[np.ndarray]  # (3, T_i) cm
    joints: list[np.ndarray]  # (T_i, 4) deg
    swivels: list[np.ndarray] | None  # (T_i,) rad; None with the reference IK


def _draw_until_accepted(
    kin: dict[str, Any],
    traj: np.ndarray,
    lengths: np.ndarray,
    starts: dict[str, np.ndarray],
    planes: list[str],
    char_idx: np.ndarray,
    plane_idx: np.ndarray,
    rng: np.random.Generator,
) -> _Drawn:
    """Draw latents, transform and solve the IK of each candidate until it passes the acceptance test,
    at most ``kin["max_attempts"]`` times (rejected candidates keep their last draw)."""
    n = len(char_idx)
    lat = {k: np.zeros(n) for k in LATENT_KEYS}
    start_id = np.zeros(n, dtype=np.int64)
    attempts = np.zeros(n, dtype=np.int64)
    accepted = np.zeros(n, dtype=np.int8)
    tracing = np.full(n, np.inf)
    jerk = np.full(n, np.inf)
    hands: list[np.ndarray | None] = [None] * n
    joints: list[np.ndarray | None] = [None] * n
    swivels: list[np.ndarray | None] = [None] * n
    pending = np.arange(n)
    for _attempt in range(int(kin["max_attempts"])):
        if len(pending) == 0:
            break
        paths = []
        for j in pending:
            plane = planes[plane_idx[j]]
            sp = starts[plane]
            L = draw_latents(rng, len(sp), kin["sizes"], kin["angles"], kin["speeds"], kin["noises"])
            for key in LATENT_KEYS:
                lat[key][j] = getattr(L, key)
            start_id[j] = L.start_id
            pen = traj[char_idx[j], :, : lengths[char_idx[j]]]
            paths.append(transform(pen, L, plane, sp[L.start_id]))
        q, err, jk, sv = _solve_ik(paths, kin["ik"])
        ok_err = err <= kin["max_tracing_error_cm"]
        ok_jerk = jk <= kin["max_joint_jerk"]
        ok = (ok_err & ok_jerk) if kin["acceptance"] == "and" else (ok_err | ok_jerk)
        for m, j in enumerate(pending):
            attempts[j] += 1
            tracing[j], jerk[j] = err[m], jk[m]
            hands[j], joints[j] = paths[m], q[m]
            swivels[j] = None if sv is None else sv[m]
            accepted[j] = ok[m]
        pending = pending[~ok]
    hands_set = [h for h in hands if h is not None]
    joints_set = [q for q in joints if q is not None]
    if len(hands_set) < n or len(joints_set) < n:  # max_attempts >= 1 (checked at load)
        raise DeepDrawError(f"kinematics.max_attempts is {kin['max_attempts']}; expected at least 1")
    swivels_set = [sv for sv in swivels if sv is not None]
    return _Drawn(
        lat, start_id, attempts, accepted, tracing, jerk, hands_set, joints_set,
        swivels_set if len(swivels_set) == n else None,
    )  # fmt: skip


def _generate_shard(task: ShardTask, out: Path) -> str:
    kin = task.kin
    traj, lengths, labels = load_characters(task.characters)
    starts = load_startpoints(task.startpoints)
    planes: list[str] = list(kin["planes"])
    for p in planes:
        if p not in starts or len(starts[p]) == 0:
            raise DeepDrawError(f"{task.startpoints}: no start points for plane '{p}'")
    perm = character_permutation(task.seed, labels)
    ids = np.arange(task.start, task.stop)
    char_idx, plane_idx = assign(ids, perm, planes)
    n = len(ids)
    rng = np.random.default_rng(np.random.SeedSequence(task.seed, spawn_key=(SEED_STREAM_CANDIDATES, task.k)))
    d = _draw_until_accepted(kin, traj, lengths, starts, planes, char_idx, plane_idx, rng)
    hands, joints, accepted, start_id = d.hands, d.joints, d.accepted, d.start_id

    muscle_jerk = np.full(n, np.nan)
    jerk_bound = np.full(n, np.nan)
    jerk_known = np.zeros(n, dtype=np.int8)
    if task.muscles is not None:
        from .engines import muscle_jerk_scores

        idx = np.flatnonzero(accepted)
        screen = kin.get("muscle_jerk", "screen") == "screen"
        jk_, lb_, kn_ = muscle_jerk_scores([joints[j] for j in idx], task.muscles, screen)
        muscle_jerk[idx], jerk_bound[idx], jerk_known[idx] = jk_, lb_, kn_

    arrays: dict[str, np.ndarray] = {
        "candidate_id": ids.astype(np.int64),
        "char_index": char_idx.astype(np.int64),
        "label": labels[char_idx].astype(np.int64),
        "plane": plane_idx.astype(np.int8),
        "startpt_id": start_id,
        "startpt": np.stack([starts[planes[plane_idx[i]]][start_id[i]] for i in range(n)]),
        "length": np.array([h.shape[1] for h in hands], dtype=np.int64),
        "attempts": d.attempts,
        "accepted": accepted,
        "tracing_error": d.tracing,
        "joint_jerk": d.jerk,
        "muscle_jerk": muscle_jerk,
        "muscle_jerk_bound": jerk_bound,
        "muscle_jerk_known": jerk_known,
        **d.lat,
    }
    if d.swivels is not None:
        # the IK's swivel angles: the assembly rebuilds the exact joints from them without the search
        arrays["swivel"] = np.concatenate(d.swivels) if n else np.zeros(0)
    if task.save_trajectories:
        T = max_length(traj.shape[2], kin["sizes"], kin["speeds"])
        hand_arr = np.full((n, 3, T), np.nan, dtype=np.float32)
        joint_arr = np.full((n, 4, T), np.nan, dtype=np.float32)
        for i in range(n):
            hand_arr[i, :, : hands[i].shape[1]] = hands[i]
            joint_arr[i, :, : joints[i].shape[0]] = joints[i].T
        arrays["endeffector_coords"] = hand_arr
        arrays["joint_coords"] = joint_arr
    store.write_artifact(
        out,
        arrays,
        kind=KIND_CANDIDATES,
        config=task.config,
        seeds={"seed": task.seed, "shard": task.k, "spawn_key": [SEED_STREAM_CANDIDATES, task.k]},
        inputs=task.inputs,
        attrs={"planes": json_list(planes), "start": task.start, "stop": task.stop},
        compression="gzip",
        uncompressed=("swivel",),  # read a few candidates at a time by the assembly
    )
    return str(out)


def json_list(xs: list[str]) -> str:
    import json

    return json.dumps(list(xs))
