"""Re-generation of candidate movements from their latents: hand paths from the augmentation, joint
angles from the IK swivel angles the kinematics stage stored (or from the IK solved again).

The transforms and the IK are deterministic, so a movement re-generated here is the one the kinematics
stage scored; :class:`SwivelRef` says where a row's stored swivel angles are in the candidate shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import store
from ...contracts import KIND_CANDIDATES, LATENT_KEYS
from ...errors import DeepDrawError
from .. import arm
from ..augment import Latents, transform
from ..kinematics import load_characters, load_startpoints


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
