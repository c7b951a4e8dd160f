"""The samples of the PCRT files: re-generated movements placed at a random onset in ``n_frames``
frames, with their muscle lengths and proprioceptive inputs; one chunk of them per task, written
atomically to a chunk file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import store
from ...contracts import KIND_PCRT_CHUNK, LATENT_KEYS, MUSCLES, SEED_STREAM_SAMPLE
from ...errors import DeepDrawError
from .. import proprio
from .regeneration import SwivelRef, regenerate

if TYPE_CHECKING:
    from ..muscles.fast import KnownValues

log = logging.getLogger(__name__)


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
    from ..engines import muscle_lengths

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
    from ...parallel import one_blas_thread

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
