"""The screening's rounds run over the workers: each round's candidates cut into balanced tasks, each
task's exact muscle jerks written to a work file (resumable), and the OpenSim values the rounds
computed kept for the samples that re-use them (see :func:`.screening.screen_jerks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import store
from ...contracts import KIND_JERK_CHUNK
from ...errors import DeepDrawError
from ...parallel import Executor
from ...paths import RunPaths
from ...settings import Config
from .regeneration import SwivelRef, regenerate

if TYPE_CHECKING:
    from ..muscles.fast import KnownValues


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
    from ...parallel import one_blas_thread
    from ..engines import muscle_jerk_progressive

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


def _same_round(t: JerkTask) -> bool:
    """Whether the work file of ``t`` holds the task's candidates and thresholds."""
    a = store.read_arrays(t.out, ["candidate_id", "tau"], kind=KIND_JERK_CHUNK)
    return np.array_equal(a["candidate_id"], t.rows["candidate_id"]) and np.array_equal(a["tau"], t.tau)


@dataclass
class JerkRounds:
    """The ``evaluate`` of :func:`.screening.screen_jerks`: one resumable round of exact muscle jerks
    per call, over ``ex``; keeps the OpenSim values the rounds computed (``kept``, per jerk file)."""

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
        for c, (s, e) in enumerate(balanced_tasks(len(idx), self.cfg.assembly.chunk, self.ex.n_workers)):
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


def balanced_tasks(n: int, chunk: int, n_workers: int) -> list[tuple[int, int]]:
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


def known_by_id(kept: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The screening's OpenSim values, concatenated and sorted by candidate id."""
    if not kept:
        return {k: np.zeros(0) for k in FILLED_KEYS}
    cat = {k: np.concatenate([a[k] for a in kept]) for k in FILLED_KEYS}
    order = np.argsort(cat["filled_candidate"], kind="stable")
    return {k: v[order] for k, v in cat.items()}


def known_for(known: dict[str, np.ndarray], candidate_ids: np.ndarray) -> KnownValues | None:
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
