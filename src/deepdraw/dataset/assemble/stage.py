"""The assembly stage: candidate shards -> ``pcrt_train.h5`` and ``pcrt_test.h5`` (:func:`run_assemble`),
resumable and chunked over the workers; reads the shards' scores, runs the muscle-jerk screening,
selects, splits, materialises the samples and writes the files.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ... import store
from ...errors import DeepDrawError
from ...parallel import executor
from ...paths import RunPaths
from ...settings import Config
from .jerk_rounds import JerkRounds, known_by_id, known_for
from .pcrt_files import concat_chunks
from .regeneration import SwivelRef, swivel_refs
from .samples import ChunkTask, run_chunk
from .screening import screen_jerks
from .selection import read_scores, select, split

log = logging.getLogger(__name__)


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
        evaluate = JerkRounds(cfg, rp, scores, planes, conf, fresh, ref, ex)
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
            known_by_id(evaluate.kept),
            ref,
        )
    shutil.rmtree(workdir, ignore_errors=True)
    _warn_jumps(rp.pcrt_train, rp.pcrt_test)
    return rp.pcrt_train, rp.pcrt_test


def _read_shard_scores(
    cfg: Config, rp: RunPaths
) -> tuple[list[tuple[int, int, int]], list[Path], dict[str, np.ndarray], list[str]]:
    """The candidate shards (bounds, paths), their scores in candidate order and the planes; refuses a
    missing shard, a shard of another ``shard_size`` and more samples than candidates."""
    from ..kinematics import shard_bounds

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
                    known=known_for(known, cids),
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
    concat_chunks([t.out for t in tasks["train"]], rp.pcrt_train, cfg, inputs, "train")
    concat_chunks([t.out for t in tasks["test"]], rp.pcrt_test, cfg, inputs, "test")
