"""``deepdraw pipeline CONFIG``: every stage in order, cached and resumable; it never deletes results.

Each stage declares the config sections it reads, the stages it depends on, a ``run(cfg)`` function
and its outputs. Its *digest* is the sha256 of those sections (plus the run seed) and of the digests of
the stages it depends on, so a changed config reruns exactly the stages it affects and the ones
downstream of them.

State lives in ``<out_dir>/.stamps/<stage>.{started,done}.json``:

* ``started``: written before a stage runs, with its digest and config. If a run is killed, the next
  run finds ``started`` with the same digest and resumes (stages keep the shards / checkpoints they
  finished).
* ``done``: written after the stage succeeded, with its digest, config, the size and modification time
  of its input files (the outputs of the stages it depends on), wall time and peak memory. A stage
  whose digest matches, whose outputs all exist and whose inputs are unchanged is skipped.

A stage whose config or inputs changed while its outputs exist (or whose outputs exist without a stamp,
e.g. written by a single-stage command) is *at stake*: before running anything the pipeline lists every
such stage, the changed keys and the outputs that recomputing would delete, and stops
(:class:`~deepdraw.errors.DeepDrawError`). ``force=True`` (``--force``) deletes them and recomputes.

A config file without dataset sections (``[characters]``, ``[startpoints]``, ``[kinematics]``,
``[muscles]``, ``[assembly]``), such as ``configs/paper-svm.toml``, uses the dataset already in its
``run.out_dir`` and never makes one: the dataset stages are *external* (an error when the PCRT files
are missing), and their digests are those recorded by the run that made them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DeepDrawError
from .paths import RunPaths
from .settings import DATASET_SECTION_NAMES, Config
from .stages import DATASET_STAGES, STAGES, Stage
from .stamps import (
    changed_inputs,
    damaged_outputs,
    fingerprint,
    output_record,
    peak_mb,
    read_stamp,
    rel,
    stamp_file,
    stamp_path,
    write_stamp,
)

__all__ = ["STAGES", "Stage", "plan", "run_pipeline", "run_stage", "stage_digest", "status"]

log = logging.getLogger(__name__)


def upstream(cfg: Config, st: Stage) -> list[str]:
    """The stages ``st`` depends on for ``cfg``: ``after`` plus ``needs(cfg)``, the enabled ones."""
    names = [*st.after, *(st.needs(cfg) if st.needs else [])]
    return [a for a in dict.fromkeys(names) if is_enabled(cfg, a)]


def is_enabled(cfg: Config, name: str) -> bool:
    """Whether stage ``name`` is part of ``cfg``'s pipeline."""
    st = STAGES[name]
    return st.enabled is None or bool(st.enabled(cfg))


DATASET_SECTIONS = DATASET_SECTION_NAMES


def external_dataset(cfg: Config) -> bool:
    """Whether ``cfg`` uses a dataset it does not make: from a file without dataset sections (the
    dataset of its out_dir), or with ``run.dataset_dir`` (another run's)."""
    if cfg.run.dataset_dir:
        return True
    return cfg.given is not None and not any(s in cfg.given for s in DATASET_SECTIONS)


def stage_digest(cfg: Config, name: str, memo: dict[str, str] | None = None) -> str:
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    st = STAGES[name]
    if name in DATASET_STAGES and external_dataset(cfg):
        stamps = Path(cfg.run.dataset_dir).parent / ".stamps" if cfg.run.dataset_dir else None
        recorded = read_stamp(
            stamp_file(stamps, name, "done") if stamps is not None else stamp_path(cfg, name, "done")
        ).get("digest")
        memo[name] = recorded or hashlib.sha256(f"external {name}".encode()).hexdigest()
        return memo[name]
    parts = {
        "stage": name,
        "seed": cfg.run.seed,
        "config": _covered(cfg, st),
        "after": {a: stage_digest(cfg, a, memo) for a in upstream(cfg, st)},
    }
    if st.keys is not None:  # absent otherwise: the digests of stages without extra keys are unchanged
        parts["keys"] = st.keys(cfg)
    d = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    memo[name] = d
    return d


def _covered(cfg: Config, st: Stage) -> dict:
    """The stage's config sections, less the keys that only choose which outputs exist
    (:attr:`Stage.selects`)."""
    out = cfg.to_dict(st.sections)
    for dotted in st.selects:
        sec, key = dotted.split(".", 1)
        out.get(sec, {}).pop(key, None)
    return out


def _stage_config(cfg: Config, st: Stage) -> dict:
    """The settings a stage's digest covers, flat (``section.key`` -> value), as JSON data."""
    flat = {"run.seed": cfg.run.seed}
    for sec, values in _covered(cfg, st).items():
        for k, v in values.items():
            flat[f"{sec}.{k}"] = v
    if st.keys is not None:
        flat.update(st.keys(cfg))
    return json.loads(json.dumps(flat, default=str))


def _remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _inputs(cfg: Config, st: Stage) -> list[Path]:
    """A stage's input files: the files (not folders, not figures) among the outputs of its upstream
    stages."""
    out: list[Path] = []
    for a in upstream(cfg, st):
        out += [p for p in STAGES[a].outputs(cfg) if p.suffix != ".png" and p.is_file()]
    return out


def _changed_keys(old: dict | None, new: dict, limit: int = 8) -> str:
    if old is None:
        return "config not recorded (stamp of an older deepdraw)"
    diff = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    more = f" (+{len(diff) - limit} more)" if len(diff) > limit else ""
    return "; ".join(diff[:limit]) + more


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.exists() and not (p.is_dir() and not any(p.iterdir()))]


@dataclass
class _Plan:
    """What the pipeline does with one stage: ``skip``, ``external``, ``run``, ``resume`` or ``redo``
    (outputs at stake: refused without ``force``)."""

    action: str
    digest: str
    reasons: list[str] = field(default_factory=list)
    at_stake: list[Path] = field(default_factory=list)
    damaged: bool = False
    """Outputs of the finished stage were changed or truncated (only those are at stake)."""


def _plan(cfg: Config, name: str, memo: dict[str, str], upstream_runs: set[str]) -> _Plan:
    st = STAGES[name]
    d = stage_digest(cfg, name, memo)
    rp = RunPaths.of(cfg)
    if name in DATASET_STAGES and external_dataset(cfg):
        missing = [p for p in (rp.pcrt_train, rp.pcrt_test) if not p.is_file()]
        if missing and cfg.run.dataset_dir:
            raise DeepDrawError(
                f"{cfg.source}: key 'run.dataset_dir' is '{cfg.run.dataset_dir}', but {missing[0]} is missing; "
                "make that dataset first (deepdraw pipeline THAT.toml) or correct run.dataset_dir"
            )
        if missing:
            raise DeepDrawError(
                f"{cfg.source}: has no dataset sections ({', '.join(f'[{s}]' for s in DATASET_SECTIONS)}), "
                f"so it uses the dataset in run.out_dir, but {missing[0]} is missing; make the dataset "
                "first with the config that defines it (deepdraw pipeline THAT.toml --only "
                f"{','.join(DATASET_STAGES)}), or add the dataset sections to this config"
            )
        return _Plan("external", d)
    outputs = st.outputs(cfg)
    done = read_stamp(stamp_path(cfg, name, "done"))
    started = read_stamp(stamp_path(cfg, name, "started"))
    config = _stage_config(cfg, st)
    if done.get("digest") == d and all(p.exists() for p in outputs):
        damaged = damaged_outputs(cfg, done, outputs)
        if damaged:
            shown = "; ".join(list(damaged.values())[:3]) + (
                f" (+{len(damaged) - 3} more)" if len(damaged) > 3 else ""
            )
            return _Plan(
                "redo", d, ["output(s) damaged since the stage finished: " + shown], list(damaged), True
            )
        reasons = []
        if "inputs" in done:
            changed = changed_inputs(done["inputs"], fingerprint(cfg, _inputs(cfg, st)))
            if changed:
                reasons.append("input files changed since it ran: " + ", ".join(changed[:5]))
        ups = sorted(upstream_runs & set(upstream(cfg, st)))
        if ups:
            reasons.append(f"upstream stage(s) {', '.join(ups)} will be recomputed")
        if not reasons:
            return _Plan("skip", d)
        return _Plan("redo", d, reasons, _existing(outputs))
    if d in (started.get("digest"), done.get("digest")):  # interrupted, or outputs went missing
        return _Plan("resume", d)
    at_stake = _existing(outputs)
    if not at_stake:
        return _Plan("run", d)
    stamp = done or started
    if not stamp and st.adopts:
        return _Plan("resume", d)
    if not stamp:
        reasons = ["its outputs exist but no pipeline run recorded them (a single-stage command?)"]
    else:
        reasons = []
        old_config = stamp.get("config")
        if old_config is not None:  # keys an older deepdraw covered and this stage no longer does
            old_config = {k: v for k, v in old_config.items() if k not in st.selects}
        if old_config != config:
            reasons.append("config changed: " + _changed_keys(old_config, config))
        old_after = stamp.get("after") or {}
        ups = [a for a in upstream(cfg, st) if old_after.get(a) != stage_digest(cfg, a, memo)]
        if ups and "after" in stamp:
            reasons.append(f"upstream stage(s) {', '.join(ups)} changed")
        if not reasons:
            reasons.append(
                "its digest changed (a stamp of an older deepdraw: the same settings, digested otherwise)"
            )
    return _Plan("redo", d, reasons, at_stake)


def _refusal(cfg: Config, plans: dict[str, _Plan], command: str = "pipeline") -> DeepDrawError:
    lines = [
        f"{cfg.out_dir}: this run folder holds results that the pipeline would delete, so it stopped "
        "(nothing was changed):"
    ]
    for name, pl in plans.items():
        shown = ", ".join(rel(cfg, p) for p in pl.at_stake[:4])
        more = f" (+{len(pl.at_stake) - 4} more)" if len(pl.at_stake) > 4 else ""
        lines.append(f"  stage '{name}': {'; '.join(pl.reasons)}; outputs at stake: {shown}{more}")
    src = cfg.source if cfg.given is not None else "CONFIG"
    lines.append(
        f"To recompute them (deleting those outputs): deepdraw {command} {src} --force. To keep them: "
        "set another run.out_dir (or --out DIR)."
    )
    return DeepDrawError("\n".join(lines))


def plan(cfg: Config, only: list[str] | None = None) -> dict[str, _Plan]:
    """What :func:`run_pipeline` would do with each stage (in order), without touching anything."""
    if only:
        unknown = [n for n in only if n not in STAGES]
        if unknown:
            raise DeepDrawError(
                f"--only: unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGES)}"
            )
        off = [n for n in only if not is_enabled(cfg, n)]
        if off:
            raise DeepDrawError(
                f"{cfg.source}: stage(s) {', '.join(off)} are off in this config: "
                + "; ".join(STAGES[n].off_hint or f"stage '{n}' disabled" for n in off)
            )
    memo: dict[str, str] = {}
    plans: dict[str, _Plan] = {}
    will_run: set[str] = set()
    for name in STAGES:
        if (only and name not in only) or not is_enabled(cfg, name):
            continue
        pl = _plan(cfg, name, memo, will_run)
        plans[name] = pl
        if pl.action in ("run", "resume", "redo"):
            will_run.add(name)
    return plans


def status(cfg: Config) -> dict[str, str]:
    """``{stage: state}`` for ``cfg``'s run (see :func:`status_details`)."""
    return {name: state for name, (state, _) in status_details(cfg).items()}


def status_details(cfg: Config) -> dict[str, tuple[str, list[str]]]:
    """``{stage: (state, reasons)}`` for ``cfg``'s run; state is one of

    ``done``; ``todo`` (never ran); ``partial`` (started, or outputs missing: the next run resumes);
    ``stale`` (outputs exist but their config or inputs changed: the pipeline refuses without
    ``--force``); ``damaged`` (an output changed since the stage finished: its size differs from the one
    recorded, or an HDF5 file does not open); ``external`` (the dataset of a config without dataset
    sections; ``missing`` when absent). Stages the config disables (e.g. ``search`` with
    ``[search] n_per_family = 0``) are not listed.
    """
    memo: dict[str, str] = {}
    out: dict[str, tuple[str, list[str]]] = {}
    for name in STAGES:
        if not is_enabled(cfg, name):
            continue
        try:
            pl = _plan(cfg, name, memo, set())
        except DeepDrawError as e:
            out[name] = ("missing", [str(e)])
            continue
        stamped = stamp_path(cfg, name, "done").exists() or stamp_path(cfg, name, "started").exists()
        if pl.action == "external":
            state = "external"
        elif pl.action == "skip":
            state = "done"
        elif pl.action == "resume":
            state = "partial"
        elif pl.damaged:
            state = "damaged"
        elif pl.action == "redo" or stamped:
            state = "stale"
        else:
            state = "todo"
        out[name] = (state, pl.reasons)
    return out


def run_pipeline(
    cfg: Config, only: list[str] | None = None, force: bool = False, command: str = "pipeline"
) -> dict[str, dict]:
    """Run every stage in order (or those in ``only``); returns per-stage records.

    Stages whose outputs would be deleted (config or inputs changed, outputs damaged) stop the run
    before anything runs, unless ``force``; see the module docstring. Holds the run folder's lock
    throughout. ``command`` is the subcommand named in a refusal's way out (``deepdraw COMMAND CONFIG
    --force``).
    """
    from .lock import run_lock

    with run_lock(cfg.out_dir):
        plans = plan(cfg, only)
        at_stake = {n: p for n, p in plans.items() if p.action == "redo"}
        if at_stake and not force:
            raise _refusal(cfg, at_stake, command)
        write_stage_table(cfg)
        return _run(cfg, list(plans), force, command)


def run_stage(cfg: Config, name: str, force: bool = False, command: str | None = None) -> dict:
    """One stage, exactly as the pipeline runs it (same checks, stamps, refusals and lock): what every
    single-stage command (``deepdraw svm``, ``deepdraw train``, ``deepdraw dataset assemble``, ...)
    calls. Returns the stage's record (its ``done`` stamp, plus ``skipped``)."""
    return run_pipeline(cfg, only=[name], force=force, command=command or name)[name]


def write_stage_table(cfg: Config) -> None:
    """Every enabled stage's doc and digest into :attr:`RunPaths.stage_table` (read by the report)."""
    memo: dict[str, str] = {}
    table = {
        name: {"doc": st.doc, "digest": stage_digest(cfg, name, memo)}
        for name, st in STAGES.items()
        if is_enabled(cfg, name)
    }
    write_stamp(RunPaths.of(cfg).stage_table, {"stages": table})


def _check_upstream_complete(cfg: Config, name: str, memo: dict[str, str], ran: set[str]) -> None:
    """Refuse to run ``name`` when a stage it reads, run earlier in this pipeline run, is no longer
    complete: its outputs changed while the pipeline ran (e.g. ``deepdraw zoo add`` of a model that a
    ``[train] source = "zoo"`` run plans, so the train stage now misses that model)."""
    stale = [
        a for a in upstream(cfg, STAGES[name]) if a in ran and _plan(cfg, a, memo, set()).action != "skip"
    ]
    if stale:
        raise DeepDrawError(
            f"{cfg.out_dir}: stage(s) {', '.join(stale)} ran in this pipeline run but are no longer complete "
            f"(their planned outputs changed while it ran, e.g. a model added to the zoo), so stage '{name}' "
            "was not started. Rerun the same command: it completes them first, and keeps what is done."
        )


def _run(cfg: Config, names: list[str], force: bool, command: str = "pipeline") -> dict[str, dict]:
    memo: dict[str, str] = {}
    records: dict[str, dict] = {}
    ran: set[str] = set()
    for name in names:
        st = STAGES[name]
        pl = _plan(cfg, name, memo, ran)  # again: an upstream stage that ran may have changed inputs
        _check_upstream_complete(cfg, name, memo, ran)
        d = pl.digest
        if pl.action in ("skip", "external"):
            log.info(
                "[%s] %s", name, "up to date, skipped" if pl.action == "skip" else "uses the existing dataset"
            )
            records[name] = {
                **read_stamp(stamp_path(cfg, name, "done")),
                "skipped": True,
                "external": pl.action == "external",
            }
            continue
        if pl.action == "redo":
            if not force:
                raise _refusal(cfg, {name: pl}, command)
            log.warning(
                "[%s] --force: deleting %d earlier output(s) (%s)",
                name,
                len(pl.at_stake),
                "; ".join(pl.reasons),
            )
            _remove(pl.at_stake)
        elif pl.action == "resume":
            log.info("[%s] resuming an interrupted run", name)
        done_p, started_p = stamp_path(cfg, name, "done"), stamp_path(cfg, name, "started")
        config = _stage_config(cfg, st)
        after = {a: stage_digest(cfg, a, memo) for a in upstream(cfg, st)}
        write_stamp(started_p, {"digest": d, "config": config, "after": after, "layers": cfg.layers})
        if done_p.exists():
            done_p.unlink()
        log.info("[%s] running", name)
        t0 = time.perf_counter()
        st.run(cfg)
        rec = {
            "digest": d,
            "config": config,
            "after": after,
            "layers": cfg.layers,
            "inputs": fingerprint(cfg, _inputs(cfg, st)),
            **output_record(cfg, st.outputs(cfg)),
            "wall_s": round(time.perf_counter() - t0, 3),
            "peak_rss_mb": round(peak_mb(), 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_stamp(done_p, rec)
        ran.add(name)
        records[name] = {**rec, "skipped": False}
        log.info("[%s] done in %.1f s", name, rec["wall_s"])
    return records
