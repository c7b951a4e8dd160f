"""Stage 1 commands: characters, start points, candidate kinematics (and their schemas)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import store
from ..contracts import KIND_CHARACTERS, KIND_STARTPOINTS, LETTERS, STARTPOINTS_SCHEMA
from ..errors import DeepDrawError
from ..parallel import executor
from ..paths import RunPaths, original_startpoints
from ..settings import Config
from . import characters as ch

log = logging.getLogger(__name__)


def run_characters(cfg: Config, overwrite: bool = False) -> Path:
    """UCI set -> ``characters.h5`` (2858 pen paths, lengths, labels 0..19, letters)."""
    c = cfg.characters
    rc = ch.load_canonical(c.source) if c.source else ch.load_shipped()
    if c.source:
        got = ch.raw_digest(rc.raw)
        if got != ch.RAW_SHA256:
            log.warning("%s: values differ from the shipped rebuild (sha256 %s)", c.source, got)
    traj, lengths, labels = ch.preprocess(rc, c.box_cm, c.keep_aspect)
    out = RunPaths.of(cfg).characters
    src = Path(c.source) if c.source else None
    inputs = {src.name: store.file_sha256(src)} if src else {"uci_values": ch.RAW_SHA256}
    store.write_artifact(
        out,
        {"trajectories": traj, "lengths": lengths, "labels": labels},
        kind=KIND_CHARACTERS,
        config=cfg.to_dict(["characters"]),
        inputs=inputs,
        attrs={"letters": LETTERS, "units": "cm", "source": "canonical" if c.source else "shipped"},
        overwrite=overwrite,
    )
    log.info("wrote %s: %d trajectories, %d..%d frames", out, len(labels), lengths.min(), lengths.max())
    return out


def run_startpoints(cfg: Config, overwrite: bool = False) -> Path:
    """Start points -> ``startpoints.h5`` (the original's file, or our workspace search)."""
    s = cfg.startpoints
    out = RunPaths.of(cfg).startpoints
    if s.source == "original":
        src = original_startpoints()
        pts = store.read_arrays(src, ["horizontal", "vertical"], schema=STARTPOINTS_SCHEMA)
        inputs = {src.name: store.file_sha256(src)}
    else:
        from .startpoints import search_startpoints

        pts = search_startpoints(
            grid_step=s.grid_step_cm,
            square=s.square_cm,
            fine=s.fine,
            tol=s.tol_cm,
            progress=not cfg.run.quiet,
        )
        inputs = {}
    for k in ("horizontal", "vertical"):
        store.check_finite(np.asarray(pts[k]), out, k)
    store.write_artifact(
        out,
        {k: np.asarray(pts[k], dtype=np.float64) for k in ("horizontal", "vertical")},
        kind=KIND_STARTPOINTS,
        config=cfg.to_dict(["startpoints"]),
        inputs=inputs,
        attrs={
            "units": "cm",
            "frame": "world {W}: x forward, y left/right, z up/down; origin at the shoulder",
        },
        overwrite=overwrite,
    )
    log.info("wrote %s: %d horizontal, %d vertical", out, len(pts["horizontal"]), len(pts["vertical"]))
    return out


KINEMATICS_SECTIONS = ["characters", "startpoints", "kinematics", "muscles"]


def kinematics_tasks(cfg: Config, with_muscles: bool = True) -> list:
    """One :class:`~deepdraw.dataset.kinematics.ShardTask` per shard of the run."""
    from dataclasses import asdict

    from .kinematics import ShardTask, shard_bounds

    rp = RunPaths.of(cfg)
    for p in (rp.characters, rp.startpoints):
        if not p.exists():
            raise DeepDrawError(f"{p}: file not found; run `deepdraw dataset characters/startpoints` first")
    k = cfg.kinematics
    inputs = {
        rp.characters.name: store.file_sha256(rp.characters),
        rp.startpoints.name: store.file_sha256(rp.startpoints),
    }
    conf = cfg.to_dict(KINEMATICS_SECTIONS)
    conf["run"] = {"seed": cfg.run.seed}
    muscles = asdict(cfg.muscles) if with_muscles else None
    return [
        ShardTask(
            k=i,
            start=a,
            stop=b,
            seed=cfg.run.seed,
            characters=str(rp.characters),
            startpoints=str(rp.startpoints),
            out=str(rp.shard(i)),
            kin=asdict(k),
            muscles=muscles,
            config=conf,
            inputs=inputs,
            save_trajectories=k.save_trajectories,
        )
        for i, a, b in shard_bounds(k.n_candidates, k.shard_size)
    ]


def check_existing_shards(cfg: Config, tasks: list) -> None:
    """Refuse to mix shards of another config into this run (resuming needs the same config)."""
    import json

    for t in tasks:
        p = Path(t.out)
        if p.exists():
            attrs = store.read_attrs(p)
            if attrs.get("config") != json.loads(json.dumps(t.config, sort_keys=True, default=str)):
                raise DeepDrawError(
                    f"{p}: shard written with another config; delete {p.parent} or use another run.out_dir"
                )


def run_kinematics(cfg: Config, with_muscles: bool = True) -> list[str]:
    """Generate every candidate shard (skipping those on disk) over the configured executor."""
    from .kinematics import generate_shard

    tasks = kinematics_tasks(cfg, with_muscles)
    for stale in RunPaths.of(cfg).candidates.glob(".shard_*.tmp-*"):
        stale.unlink()  # left by a killed run; never looks like a finished shard
    check_existing_shards(cfg, tasks)
    todo = [t for t in tasks if not Path(t.out).exists()]
    log.info("%d shards of %d candidates; %d to do", len(tasks), cfg.kinematics.shard_size, len(todo))
    if todo:
        with executor(cfg.parallel, quiet=cfg.run.quiet) as ex:
            ex.map(generate_shard, todo, desc="candidate shards")
    return [t.out for t in tasks]
