"""``deepdraw pipeline CONFIG``: every stage in order, cached and resumable.

Each stage declares the config sections it reads, the stages it depends on, a ``run(cfg)`` function
and its outputs. Its *digest* is the sha256 of those sections (plus the run seed) and of the digests of
the stages it depends on, so a changed config reruns exactly the stages it affects and the ones
downstream of them.

State lives in ``<out_dir>/.stamps/<stage>.json``:

* ``started``: written before a stage runs, with its digest. If a run is killed, the next run finds
  ``started`` with the same digest and resumes (stages keep the shards / checkpoints they finished);
  with another digest the stale outputs are deleted first.
* ``done``: written after the stage succeeded, with its digest, wall time and peak memory. A stage
  whose ``done`` digest matches and whose outputs all exist is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .paths import RunPaths

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """One step of the pipeline."""

    name: str
    sections: list[str]
    run: Callable[[Config], object]
    outputs: Callable[[Config], list[Path]]
    after: list[str] = field(default_factory=list)
    doc: str = ""


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add a stage to the pipeline (in registration order)."""
    STAGES[stage.name] = stage
    return stage


def _load_stages() -> None:
    """Import the modules that register stages (kept lazy: torch is slow to import)."""
    from . import stages  # noqa: F401


def stage_digest(cfg: Config, name: str, memo: dict[str, str] | None = None) -> str:
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    st = STAGES[name]
    parts = {
        "stage": name,
        "seed": cfg.run.seed,
        "config": cfg.to_dict(st.sections),
        "after": {a: stage_digest(cfg, a, memo) for a in st.after},
    }
    d = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    memo[name] = d
    return d


def _stamp(cfg: Config, name: str, which: str) -> Path:
    return RunPaths(cfg.out_dir).stamps / f"{name}.{which}.json"


def _read(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _write(p: Path, data: dict) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(p)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _peak_mb() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(me, kids) / 1024.0


def status(cfg: Config) -> dict[str, str]:
    """``{stage: "done" | "stale" | "partial" | "todo"}`` for the run of ``cfg``."""
    _load_stages()
    memo: dict[str, str] = {}
    out = {}
    for name, st in STAGES.items():
        d = stage_digest(cfg, name, memo)
        done = _read(_stamp(cfg, name, "done"))
        started = _read(_stamp(cfg, name, "started"))
        if done.get("digest") == d and all(p.exists() for p in st.outputs(cfg)):
            out[name] = "done"
        elif started.get("digest") == d:
            out[name] = "partial"
        elif done or started:
            out[name] = "stale"
        else:
            out[name] = "todo"
    return out


def run_pipeline(cfg: Config, only: list[str] | None = None) -> dict[str, dict]:
    """Run every registered stage in order (or those in ``only``); returns per-stage records."""
    _load_stages()
    memo: dict[str, str] = {}
    records: dict[str, dict] = {}
    for name, st in STAGES.items():
        if only and name not in only:
            continue
        d = stage_digest(cfg, name, memo)
        done_p, started_p = _stamp(cfg, name, "done"), _stamp(cfg, name, "started")
        done = _read(done_p)
        if done.get("digest") == d and all(p.exists() for p in st.outputs(cfg)):
            log.info("[%s] up to date, skipped", name)
            records[name] = {**done, "skipped": True}
            continue
        started = _read(started_p)
        if started.get("digest") != d:
            _remove(st.outputs(cfg))  # stale outputs of another config
        elif started:
            log.info("[%s] resuming an interrupted run", name)
        _write(started_p, {"digest": d})
        if done_p.exists():
            done_p.unlink()
        log.info("[%s] running", name)
        t0 = time.perf_counter()
        st.run(cfg)
        rec = {
            "digest": d,
            "wall_s": round(time.perf_counter() - t0, 3),
            "peak_rss_mb": round(_peak_mb(), 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        _write(done_p, rec)
        records[name] = {**rec, "skipped": False}
        log.info("[%s] done in %.1f s", name, rec["wall_s"])
    return records
