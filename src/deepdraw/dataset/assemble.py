"""Selection, materialisation and the train/test files of the PCRT dataset (original: dataset/PCRDatasetArrange.ipynb, deleted in commit b290e9e, and ModifyInputRepresentations.ipynb).

Scales to the paper's 1,000,000 candidates without holding them in memory: the candidate shards
hold every candidate's latents and scores (a few hundred bytes each); selection works on those
columns only; then the selected movements are *re-generated* from their latents (the transforms and
the IK are deterministic) in chunks, as Dask tasks, each written atomically to a chunk file
(resumable); finally the chunk files are copied into ``pcrt_train.h5`` and ``pcrt_test.h5``.

Selection (the paper): accepted candidates only; duplicates (same UCI sample, plane, start point and
latents) dropped; per character ``n_samples / 20`` samples (the remainder spread over the first
characters), taken plane by plane in turn, lowest muscle jerk first. Each movement is placed at a
random onset in 320 frames, holding the first and last posture (same onset for every array). The split
is a seeded permutation: the first ``1 - test_fraction`` go to train (the networks take validation
from the end of the train file, as the original).

Muscle-jerk screening (``kinematics.muscle_jerk = "screen"``, the default): the shards hold, per
accepted candidate, a lower bound of its muscle jerk from the fast engine's tables alone, which *is*
the jerk when the tables covered every frame (``muscle_jerk_known``). The selection only needs the
jerks of the candidates that can make it: per character and plane, with ``K`` the most that plane can
give, any candidate whose bound exceeds the K-th smallest known jerk cannot be selected. The others
are re-generated and their exact jerk (fast engine with its OpenSim fallback) computed, in rounds
(lowest bounds first), until no candidate with an unknown jerk has a bound below the K-th known one.
The selection is then the one the exact jerks of all candidates would give (see :func:`screen_jerks`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import store
from ..contracts import (
    KIND_CANDIDATES,
    KIND_JERK_CHUNK,
    KIND_PCRT,
    KIND_PCRT_CHUNK,
    LATENT_KEYS,
    LETTERS,
    MUSCLES,
    N_CLASSES,
    SEED_STREAM_SAMPLE,
    SEED_STREAM_SPLIT,
)
from ..errors import DeepDrawError
from ..parallel import Executor, executor
from ..paths import RunPaths
from ..settings import Config
from . import arm, proprio
from .augment import Latents, transform
from .kinematics import load_characters, load_startpoints

if TYPE_CHECKING:
    from .muscles.fast import KnownValues

log = logging.getLogger(__name__)

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
    has jerk >= bound > tau, so at least K candidates rank before it and :func:`select` never takes it.
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
    labels, planes = scores["label"], scores["plane"]
    quota = np.full(n_labels, n_samples // n_labels)
    quota[: n_samples % n_labels] += 1
    groups = []
    for lab in range(n_labels):
        rows_l = np.flatnonzero(eligible & (labels == lab))
        pls = np.unique(planes[rows_l])
        k = int(np.ceil(quota[lab] / max(len(pls), 1)))
        if k > 0:  # a character without quota (fewer samples than characters) needs no jerk
            groups.append((lab, k, [rows_l[planes[rows_l] == p] for p in pls]))
    stats = {
        "evaluated": 0, "stopped_early": 0, "rounds": 0, "unknown_at_start": int((eligible & ~known).sum())
    }  # fmt: skip
    k_total = sum(k * len(plane_rows) for _lab, k, plane_rows in groups)
    from .engines import SCREEN_SLACK as slack  # the re-generated IK may differ in the last bits

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
            for rows in plane_rows:
                kn = rows[known[rows] & np.isfinite(jerk[rows])]
                tau = np.partition(jerk[kn], k - 1)[k - 1] if len(kn) >= k else np.inf
                unk = rows[~known[rows] & ~out[rows] & (bound[rows] <= tau * slack)]
                if len(unk):  # a quarter of K per round: little work past the final tau
                    take = max(1, -(-k // 4), -(-int(min_round) * k // max(k_total, 1)))
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


def split(ids: np.ndarray, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation split -> (train ids, test ids), each in permuted order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SEED_STREAM_SPLIT,)))
    perm = rng.permutation(len(ids))
    n_train = len(ids) - int(round(len(ids) * test_fraction))
    return ids[perm[:n_train]], ids[perm[n_train:]]


@dataclass
class SwivelRef:
    """Where the IK swivel angles of a task's rows are: their shard files, and per row the shard (index
    into ``paths``) and the offset of its first frame in the shard's ``swivel`` array."""

    paths: list[str]
    shard: np.ndarray
    offset: np.ndarray


def swivel_refs(sizes: list[int], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per score row (shards of ``sizes`` candidates concatenated in order, ``lengths`` their frames):
    its shard index and its offset in that shard's ``swivel`` array (the frames, candidate after
    candidate)."""
    shard = np.repeat(np.arange(len(sizes)), sizes)
    ends = np.cumsum(lengths)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)  # first row of each shard
    base = np.where(first > 0, ends[np.maximum(first - 1, 0)], 0)  # frames before each shard
    return shard, ends - lengths - base[shard]


def load_swivel(ref: SwivelRef | None, lengths: np.ndarray) -> list[np.ndarray | None]:
    """The swivel angles (T_i,) of each row of ``ref`` (None where a shard has none, e.g. written with
    the reference IK; NaN at an unreachable frame: such rows are solved again)."""
    n = len(lengths)
    out: list[np.ndarray | None] = [None] * n
    if ref is None:
        return out
    for k in np.unique(ref.shard):
        rows = np.flatnonzero(ref.shard == k)
        with store.open_artifact(ref.paths[int(k)], kind=KIND_CANDIDATES) as f:
            if "swivel" not in f:
                continue
            ds = f["swivel"]
            for i in rows:
                o, L = int(ref.offset[i]), int(lengths[i])
                if o < 0 or o + L > ds.shape[0]:
                    raise DeepDrawError(
                        f"{ref.paths[int(k)]}: key 'swivel' has {ds.shape[0]} frames; expected at least "
                        f"{o + L} (the sum of the candidates' 'length')"
                    )
                out[i] = ds[o : o + L]
    return out


@dataclass
class ChunkTask:
    """Materialise candidates ``rows`` (their score columns) into one chunk file."""

    out: str
    rows: dict[str, np.ndarray]
    planes: list[str]
    seed: int
    characters: str
    startpoints: str
    muscles: dict[str, Any]
    assembly: dict[str, Any]
    config: dict[str, Any]
    known: KnownValues | None = None  # OpenSim values kept by the screening (trajectory = row)
    swivel: SwivelRef | None = None  # the kinematics stage's IK swivel angles of the rows


def materialise(
    rows: dict[str, np.ndarray],
    planes: list[str],
    seed: int,
    characters: str,
    startpoints: str,
    muscles: dict[str, Any],
    assembly: dict[str, Any],
    known: KnownValues | None = None,
    swivel: SwivelRef | None = None,
) -> dict[str, np.ndarray]:
    """Re-generate the movements of ``rows`` and build every array of the PCRT files.

    ``known``: OpenSim values the screening computed for these movements, (row, frame, muscle, value)
    arrays: used instead of asking OpenSim again (:meth:`~deepdraw.dataset.muscles.FastEngine.lengths`).
    ``swivel``: where the kinematics stage's IK swivel angles are (:func:`regenerate`).
    """
    from .engines import muscle_lengths

    n = len(rows["candidate_id"])
    F, dt = int(assembly["n_frames"]), float(assembly["dt"])
    hands, lens, joints = regenerate(rows, planes, characters, startpoints, swivel)
    mus = [fill_opensim_gaps(m) for m in muscle_lengths(joints, muscles, known)]
    out: dict[str, np.ndarray] = {
        "endeffector_coords": np.empty((n, 3, F), np.float32),
        "joint_coords": np.empty((n, 4, F), np.float32),
        "muscle_coords": np.empty((n, 25, F), np.float32),
        "spindle_info": np.empty((n, 25, F, 2), np.float32),
        "spindle_firing": np.empty((n, 25, F), np.float32),
        "start_id": np.empty(n, np.int64),
        "end_id": np.empty(n, np.int64),
    }
    for i in range(n):
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(SEED_STREAM_SAMPLE, int(rows["candidate_id"][i])))
        )
        onset = proprio.draw_onset(rng, int(lens[i]), F)
        L = proprio.place(mus[i].T.astype(np.float64), onset, F)
        out["endeffector_coords"][i] = proprio.place(hands[i], onset, F)
        out["joint_coords"][i] = proprio.place(joints[i].T, onset, F)
        out["muscle_coords"][i] = L
        out["spindle_info"][i] = proprio.spindle_info(L, dt)
        out["spindle_firing"][i] = proprio.spindle_firing(L, rng, float(assembly["firing_noise"]), dt)
        out["start_id"][i], out["end_id"][i] = onset, onset + lens[i]
    for k in ("endeffector_coords", "joint_coords", "muscle_coords"):
        store.check_finite(out[k], "materialised samples", k)
    out["label"] = rows["label"].astype(np.int64)
    out["plane"] = np.array([planes[int(p)].encode() for p in rows["plane"]], dtype="S10")
    out["startpt"] = rows["startpt"].astype(np.float64)
    for k in (*LATENT_KEYS, "tracing_error", "joint_jerk", "muscle_jerk"):
        out[k] = rows[k].astype(np.float64)
    out["candidate_id"] = rows["candidate_id"].astype(np.int64)
    out["char_index"] = rows["char_index"].astype(np.int64)
    out["attempts"] = rows["attempts"].astype(np.int64)
    return out


def regenerate(
    rows: dict[str, np.ndarray],
    planes: list[str],
    characters: str,
    startpoints: str,
    swivel: SwivelRef | None = None,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Hand paths [(3, T_i)], lengths (n,) and joint angles [(T_i, 4)] of candidates from their latents.

    The joints come from the IK swivel angles the kinematics stage stored (``swivel``), in closed form
    (:func:`deepdraw.dataset.arm.joints_from_swivel`, bit for bit the IK's result); candidates without
    them are solved again (:func:`deepdraw.dataset.arm.ik_batch`, the same numbers, 4-5x slower).
    """
    traj, lengths, _ = load_characters(characters)
    starts = load_startpoints(startpoints)
    n = len(rows["candidate_id"])
    hands = []
    for i in range(n):
        c = int(rows["char_index"][i])
        plane = planes[int(rows["plane"][i])]
        v = {k: float(rows[k][i]) for k in LATENT_KEYS}
        lat = Latents(
            v["size"],
            v["rot"],
            v["shear_x"],
            v["shear_y"],
            v["speed"],
            v["noise"],
            int(rows["startpt_id"][i]),
        )
        hands.append(transform(traj[c, :, : lengths[c]], lat, plane, starts[plane][lat.start_id]))
    lens = np.array([h.shape[1] for h in hands])
    if not np.array_equal(lens, rows["length"]):
        raise DeepDrawError("candidate shards: re-generated movement lengths differ from the recorded ones")
    targets = np.full((n, int(lens.max()), 3), np.nan)
    phi = np.full(targets.shape[:2], np.nan)  # NaN rows (no stored angles) are solved again
    for i, (h, sv) in enumerate(zip(hands, load_swivel(swivel, lens))):
        targets[i, : lens[i]] = h.T
        if sv is not None:
            phi[i, : lens[i]] = sv
    q = arm.ik_from_swivel(targets, phi, lens)
    joints = [q[i, : lens[i]] for i in range(n)]
    return hands, lens, joints


@dataclass
class JerkTask:
    """Exact muscle jerks of candidates ``rows`` (score columns), written to one small file."""

    out: str
    rows: dict[str, np.ndarray]
    tau: np.ndarray
    planes: list[str]
    characters: str
    startpoints: str
    muscles: dict[str, Any]
    config: dict[str, Any]
    swivel: SwivelRef | None = None


def run_jerk_chunk(task: JerkTask) -> str:
    """Re-generate the candidates, compute their exact muscle jerks and write them (skipped if on disk)."""
    if Path(task.out).exists():
        return task.out
    from ..parallel import one_blas_thread
    from .engines import muscle_jerk_progressive

    with one_blas_thread():
        _, _, joints = regenerate(task.rows, task.planes, task.characters, task.startpoints, task.swivel)
        jerk, bound, done, filled = muscle_jerk_progressive(
            joints, task.muscles, task.tau, return_filled=True
        )
    traj, frame, muscle, value = filled
    arrays = {
        "candidate_id": task.rows["candidate_id"].astype(np.int64),
        "tau": np.asarray(task.tau, dtype=np.float64),
        "muscle_jerk": jerk,
        "muscle_jerk_bound": bound,
        "done": done.astype(np.int8),
        # the OpenSim values of the candidates with an exact jerk (re-used if they are selected)
        "filled_candidate": task.rows["candidate_id"].astype(np.int64)[traj],
        "filled_frame": frame.astype(np.int32),
        "filled_muscle": muscle.astype(np.int8),
        "filled_value": value.astype(np.float64),
    }
    store.write_artifact(task.out, arrays, kind=KIND_JERK_CHUNK, config=task.config)
    return task.out


def fill_opensim_gaps(mus: np.ndarray) -> np.ndarray:
    """(T, 25) fiber lengths -> the same with isolated NaN frames filled by linear interpolation in time.

    OpenSim returns NaN for a few postures where a wrapping surface fails (seen for PECM1). A
    re-generated movement can cross such a posture where its generation did not (the batched IK's
    floating point depends slightly on the batch), so the few NaN frames are interpolated from their
    neighbours and logged; a muscle with no finite frame is an error.
    """
    bad = ~np.isfinite(mus)
    if not bad.any():
        return mus
    out = mus.copy()
    t = np.arange(len(mus))
    for m in np.flatnonzero(bad.any(axis=0)):
        ok = ~bad[:, m]
        if not ok.any():
            raise DeepDrawError(f"muscle lengths: muscle {MUSCLES[m]} is NaN at every frame of a movement")
        out[bad[:, m], m] = np.interp(t[bad[:, m]], t[ok], mus[ok, m])
    log.warning(
        "filled %d NaN muscle-length values (OpenSim wrapping failure) by interpolation", int(bad.sum())
    )
    return out


def run_chunk(task: ChunkTask) -> str:
    """Materialise one chunk and write it atomically (skipped when already on disk)."""
    if Path(task.out).exists():
        return task.out
    from ..parallel import one_blas_thread

    with one_blas_thread():  # same rounding in every mode (see generate_shard)
        arrays = materialise(
            task.rows,
            task.planes,
            task.seed,
            task.characters,
            task.startpoints,
            task.muscles,
            task.assembly,
            task.known,
            task.swivel,
        )
    store.write_artifact(task.out, arrays, kind=KIND_PCRT_CHUNK, config=task.config)
    return task.out


PCRT_ATTRS = {
    "muscle_names": json.dumps(MUSCLES),
    "letters": LETTERS,
    "units": json.dumps(
        {
            "endeffector_coords": "cm (world frame: x forward, y left/right, z up/down; origin shoulder)",
            "joint_coords": "deg (elv_angle, shoulder_elv, shoulder_rot, elbow_flexion)",
            "muscle_coords": "mm (fiber length)",
            "spindle_info": "[..., 0] mm, [..., 1] mm/s",
            "spindle_firing": "a.u.",
            "rot": "rad",
            "shear_x": "rad",
            "shear_y": "rad",
            "startpt": "cm",
            "tracing_error": "cm (sum over frames)",
            "joint_jerk": "deg/frame^3",
            "muscle_jerk": "mm/frame^3",
        }
    ),
}


def _concat(
    chunks: list[str], out: Path, cfg: Config, inputs: dict[str, str], split_name: str, delete: bool = True
) -> None:
    total = 0
    shapes: dict[str, tuple] = {}
    dtypes: dict[str, np.dtype] = {}
    for c in chunks:
        with store.open_artifact(c, kind=KIND_PCRT_CHUNK) as f:
            n = f["label"].shape[0]
            total += n
            for k in f:
                shapes[k] = f[k].shape[1:]
                dtypes[k] = f[k].dtype
    # the file is written uncompressed while the chunks are deleted one by one: check the disk first
    final = sum(total * int(np.prod(shapes[k])) * dtypes[k].itemsize for k in shapes)
    sizes = [Path(c).stat().st_size for c in chunks]
    store.require_space(out.parent, final - (sum(sizes) - max(sizes, default=0) if delete else 0), out.name)
    attrs = {**PCRT_ATTRS, "dt": cfg.assembly.dt, "split": split_name, "n_frames": cfg.assembly.n_frames}
    conf = cfg.to_dict(["characters", "startpoints", "kinematics", "muscles", "assembly"])
    conf["run"] = {"seed": cfg.run.seed}
    with store.ArtifactWriter(
        out, KIND_PCRT, config=conf, seeds={"seed": cfg.run.seed}, inputs=inputs, attrs=attrs, overwrite=True
    ) as f:
        for k in shapes:
            chunk_rows = max(1, min(total, 64))
            f.create_dataset(
                k,
                shape=(total, *shapes[k]),
                dtype=dtypes[k],
                chunks=(chunk_rows, *shapes[k]) if total else None,
            )
        pos = 0
        for c in chunks:
            with store.open_artifact(c, kind=KIND_PCRT_CHUNK) as g:
                n = g["label"].shape[0]
                for k in shapes:
                    f[k][pos : pos + n] = g[k][()]
                    f.flush()  # one dataset's chunks at a time: the layout never depends on timing
                pos += n
            if delete:  # the disk holds the dataset about once, not twice (a rerun re-makes the chunk)
                Path(c).unlink()


def _read_shard_scores(
    cfg: Config, rp: RunPaths
) -> tuple[list[tuple[int, int, int]], list[Path], dict[str, np.ndarray], list[str]]:
    """The candidate shards (bounds, paths), their scores in candidate order and the planes; refuses a
    missing shard, a shard of another ``shard_size`` and more samples than candidates."""
    from .kinematics import shard_bounds

    bounds = shard_bounds(cfg.kinematics.n_candidates, cfg.kinematics.shard_size)
    shards = [rp.shard(k) for k, _, _ in bounds]
    missing = [s for s in shards if not s.exists()]
    if missing:
        raise DeepDrawError(f"{missing[0]}: file not found; run `deepdraw dataset kinematics` first")
    scores = read_scores(shards)
    planes = list(scores.pop("_planes"))
    for (k, a, b), path in zip(bounds, shards):  # rows in candidate order: the swivel offsets rely on it
        if not np.array_equal(scores["candidate_id"][a:b], np.arange(a, b)):
            raise DeepDrawError(
                f"{path}: key 'candidate_id' is not {a}..{b - 1}; expected shard {k} of "
                f"kinematics.shard_size = {cfg.kinematics.shard_size} (rerun `deepdraw dataset kinematics`)"
            )
    if cfg.assembly.n_samples > len(scores["candidate_id"]):
        raise DeepDrawError(
            f"assembly.n_samples: {cfg.assembly.n_samples} requested but only "
            f"{len(scores['candidate_id'])} candidates exist; expected at most that many"
        )
    return bounds, shards, scores, planes


def _fresh_test(want: dict[str, Any]) -> Callable[[str], bool]:
    """A test of a work file: on disk and written by the config ``want`` (another config's file is deleted)."""

    def fresh(path: str) -> bool:
        """On disk and written by this config (files left by another config's run are deleted)."""
        if not Path(path).exists():
            return False
        if store.read_attrs(path).get("config") == want:
            return True
        Path(path).unlink()
        return False

    return fresh


def _same_round(t: JerkTask) -> bool:
    """Whether the work file of ``t`` holds the task's candidates and thresholds."""
    a = store.read_arrays(t.out, ["candidate_id", "tau"], kind=KIND_JERK_CHUNK)
    return np.array_equal(a["candidate_id"], t.rows["candidate_id"]) and np.array_equal(a["tau"], t.tau)


@dataclass
class _JerkRounds:
    """The ``evaluate`` of :func:`screen_jerks`: one resumable round of exact muscle jerks per call, over
    ``ex``; keeps the OpenSim values the rounds computed (``kept``, per jerk file)."""

    cfg: Config
    rp: RunPaths
    scores: dict[str, np.ndarray]
    planes: list[str]
    conf: dict[str, Any]
    fresh: Callable[[str], bool]
    ref: Callable[[np.ndarray], SwivelRef]
    ex: Executor
    rounds: int = 0
    kept: list[dict[str, np.ndarray]] = field(default_factory=list)

    def tasks(self, r: int, idx: np.ndarray, tau: np.ndarray) -> list[JerkTask]:
        """The tasks of round ``r``: rows ``idx`` with thresholds ``tau``, cut into balanced tasks."""
        workdir = self.rp.dataset / "assembly"
        tasks = []
        for c, (s, e) in enumerate(_balanced_tasks(len(idx), self.cfg.assembly.chunk, self.ex.n_workers)):
            sub = idx[s:e]
            tasks.append(
                JerkTask(
                    out=str(workdir / f"jerk_r{r:03d}_{c:05d}.h5"),
                    rows={k: v[sub] for k, v in self.scores.items()},
                    tau=tau[s:e],
                    planes=self.planes,
                    characters=str(self.rp.characters),
                    startpoints=str(self.rp.startpoints),
                    muscles=asdict(self.cfg.muscles),
                    config=self.conf,
                    swivel=self.ref(sub),
                )
            )
        return tasks

    def __call__(self, idx: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact jerks (or early stops above ``tau``) of rows ``idx``: one screening round, resumable."""
        r = self.rounds
        self.rounds += 1
        tasks = self.tasks(r, idx, tau)
        todo = []
        for t in tasks:
            if self.fresh(t.out) and _same_round(t):
                continue
            Path(t.out).unlink(missing_ok=True)  # another round plan's file (e.g. another version)
            todo.append(t)
        if todo:
            self.ex.map(run_jerk_chunk, todo, desc=f"muscle jerks, round {r + 1}")
        res: dict[str, list[np.ndarray]] = {"muscle_jerk": [], "muscle_jerk_bound": [], "done": []}
        for t in tasks:
            a = store.read_arrays(t.out, kind=KIND_JERK_CHUNK)
            if not np.array_equal(a["candidate_id"], t.rows["candidate_id"]):
                raise DeepDrawError(f"{t.out}: key 'candidate_id' differs from the round's candidates")
            for k in res:
                res[k].append(a[k])
            if "filled_candidate" in a:  # (files of older versions lack them: OpenSim is asked again)
                self.kept.append({k: a[k] for k in FILLED_KEYS})
        jerk, bound, done = (np.concatenate(res[k]) for k in ("muscle_jerk", "muscle_jerk_bound", "done"))
        return jerk, bound, done


def run_assemble(cfg: Config) -> tuple[Path, Path]:
    """Candidate shards -> ``pcrt_train.h5`` and ``pcrt_test.h5`` (resumable, chunked over Dask)."""
    rp = RunPaths.of(cfg)
    bounds, shards, scores, planes = _read_shard_scores(cfg, rp)
    sv_shard, sv_offset = swivel_refs([b - a for _, a, b in bounds], scores["length"])
    shard_paths = [str(p) for p in shards]

    def ref(rows: np.ndarray) -> SwivelRef:
        return SwivelRef(shard_paths, sv_shard[rows], sv_offset[rows])

    workdir = rp.dataset / "assembly"
    conf = cfg.to_dict(["characters", "startpoints", "kinematics", "muscles", "assembly"])
    conf["run"] = {"seed": cfg.run.seed}
    fresh = _fresh_test(json.loads(json.dumps(conf, sort_keys=True, default=str)))

    with executor(cfg.parallel, quiet=cfg.run.quiet) as ex:
        evaluate = _JerkRounds(cfg, rp, scores, planes, conf, fresh, ref, ex)
        t0 = time.time()
        st = screen_jerks(scores, cfg.assembly.n_samples, evaluate)
        log.info(
            "muscle-jerk screening: %d of %d accepted candidates had no exact jerk; %d evaluated in %d "
            "rounds (%d stopped early, above their group's threshold) in %.0f s",
            st["unknown_at_start"], int(scores["accepted"].sum()), st["evaluated"], st["rounds"],
            st["stopped_early"], time.time() - t0,
        )  # fmt: skip
        ids = select(scores, cfg.assembly.n_samples)
        train_ids, test_ids = split(ids, cfg.run.seed, cfg.assembly.test_fraction)
        _materialise_all(
            cfg,
            rp,
            scores,
            planes,
            ids,
            train_ids,
            test_ids,
            conf,
            fresh,
            ex,
            _known_by_id(evaluate.kept),
            ref,
        )
    shutil.rmtree(workdir, ignore_errors=True)
    _warn_jumps(rp.pcrt_train, rp.pcrt_test)
    return rp.pcrt_train, rp.pcrt_test


def _warn_jumps(*paths: Path) -> None:
    """Log a warning for every written file holding single-frame muscle-length jumps."""
    from deepdraw.dataset.checks import muscle_jumps

    for p in paths:
        r = muscle_jumps(p)
        if r["samples_with_jumps"]:
            log.warning(
                "%s: %d of %d samples hold single-frame muscle-length jumps >= %g mm (largest %.1f mm; %s): "
                "wrapping discontinuities of the arm model; keep fewer candidates per sample "
                "(kinematics.n_candidates >= 5 x assembly.n_samples, as the paper) or see "
                "'deepdraw dataset check'",
                p, r["samples_with_jumps"], r["n_samples"], r["jump_mm"], r["largest_mm"],
                ", ".join(f"{k} {v}" for k, v in r["by_muscle"].items()),
            )  # fmt: skip


def _balanced_tasks(n: int, chunk: int, n_workers: int) -> list[tuple[int, int]]:
    """Cut ``n`` rows into tasks of at most ``chunk`` rows, as equal as possible, their number a multiple
    of ``n_workers`` (when there are that many rows): a screening round ends with its slowest task, so
    equal tasks keep every worker busy. Which candidates share a task changes no result (each
    candidate's evaluation is independent of the others'), only the work files' names."""
    k = -(-n // max(chunk, 1))
    if n >= n_workers > 1:
        k = -(-k // n_workers) * n_workers
    cuts = [n * i // k for i in range(k + 1)] if k else [0]
    return list(zip(cuts[:-1], cuts[1:]))


FILLED_KEYS = ("filled_candidate", "filled_frame", "filled_muscle", "filled_value")


def _known_by_id(kept: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The screening's OpenSim values, concatenated and sorted by candidate id."""
    if not kept:
        return {k: np.zeros(0) for k in FILLED_KEYS}
    cat = {k: np.concatenate([a[k] for a in kept]) for k in FILLED_KEYS}
    order = np.argsort(cat["filled_candidate"], kind="stable")
    return {k: v[order] for k, v in cat.items()}


def _known_for(known: dict[str, np.ndarray], candidate_ids: np.ndarray) -> KnownValues | None:
    """(row, frame, muscle, value) of the kept OpenSim values of ``candidate_ids`` (row = position)."""
    ids = known["filled_candidate"]
    if len(ids) == 0:
        return None
    lo = np.searchsorted(ids, candidate_ids, side="left")
    hi = np.searchsorted(ids, candidate_ids, side="right")
    if not (hi > lo).any():
        return None
    sel = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
    row = np.repeat(np.arange(len(candidate_ids)), hi - lo)
    return (
        row.astype(np.int64),
        known["filled_frame"][sel].astype(np.int64),
        known["filled_muscle"][sel].astype(np.int64),
        known["filled_value"][sel].astype(np.float64),
    )


def _materialise_all(cfg, rp, scores, planes, ids, train_ids, test_ids, conf, fresh, ex, known, ref) -> None:
    log.info(
        "selected %d of %d candidates (%d accepted): %d train, %d test",
        len(ids),
        len(scores["candidate_id"]),
        int(scores["accepted"].sum()),
        len(train_ids),
        len(test_ids),
    )
    pos = {int(c): i for i, c in enumerate(scores["candidate_id"])}
    workdir = rp.dataset / "assembly"
    tasks: dict[str, list[ChunkTask]] = {"train": [], "test": []}
    for name, sel in (("train", train_ids), ("test", test_ids)):
        for c, s in enumerate(range(0, len(sel), cfg.assembly.chunk)):
            rows_idx = np.array([pos[int(i)] for i in sel[s : s + cfg.assembly.chunk]])
            cids = scores["candidate_id"][rows_idx]
            tasks[name].append(
                ChunkTask(
                    out=str(workdir / f"{name}_{c:05d}.h5"),
                    rows={k: v[rows_idx] for k, v in scores.items()},
                    planes=planes,
                    seed=cfg.run.seed,
                    characters=str(rp.characters),
                    startpoints=str(rp.startpoints),
                    muscles=asdict(cfg.muscles),
                    assembly=asdict(cfg.assembly),
                    config=conf,
                    known=_known_for(known, cids),
                    swivel=ref(rows_idx),
                )
            )
    every = tasks["train"] + tasks["test"]
    todo = [t for t in every if not fresh(t.out)]
    if todo:
        ex.map(run_chunk, todo, desc="assembling samples")
    inputs = {
        rp.characters.name: store.file_sha256(rp.characters),
        rp.startpoints.name: store.file_sha256(rp.startpoints),
    }
    _concat([t.out for t in tasks["train"]], rp.pcrt_train, cfg, inputs, "train")
    _concat([t.out for t in tasks["test"]], rp.pcrt_test, cfg, inputs, "test")
