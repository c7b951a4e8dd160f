"""Section 4 and the stage table: stage status from the stamps, and the provenance recorded in the
artifacts (git commits, library versions, config differences).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..settings import Config
from ..stamps import stamp_file, stamped_stages
from .common import RunView, h5_attrs, read_json

log = logging.getLogger(__name__)


def read_stage_rows(run: RunView) -> list[dict[str, Any]]:
    """One row per pipeline stage (and per stamp of an unknown stage): status, wall time, peak memory.

    The stages, their docs and this config's digests come from :attr:`RunPaths.stage_table` (written by the
    pipeline, which runs the report stage); without it, the stamps alone say done or started."""
    stamps = run.rp.stamps
    table = (read_json(run.rp.stage_table) or {}).get("stages") or {}
    names: list[str] = list(table)
    docs = {n: str(v.get("doc", "")) for n, v in table.items()}
    digests = {n: v["digest"] for n, v in table.items() if v.get("digest")}
    names += [n for n in stamped_stages(stamps) if n not in names]
    rows = []
    for n in names:
        done = read_json(stamp_file(stamps, n, "done")) or {}
        started = read_json(stamp_file(stamps, n, "started")) or {}
        if n == "report":
            status = "this report"
        elif done and (n not in digests or done.get("digest") == digests[n]):
            status = "done"
        elif done:
            status = "stale (other config)"
        elif started:
            status = "started, not finished"
        else:
            status = "not run"
        rows.append(
            {
                "stage": n,
                "doc": docs.get(n, ""),
                "status": status,
                "wall_s": done.get("wall_s"),
                "peak_rss_mb": done.get("peak_rss_mb"),
                "finished": done.get("finished", ""),
            }
        )
    return rows


def artifact_provenance(run: RunView) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    rp = run.rp
    cands = [
        rp.characters,
        rp.startpoints,
        rp.pcrt_train,
        rp.pcrt_test,
        rp.rsa / "rsa_results.h5",
        rp.tuning / "tuning_results.h5",
    ]
    found = []
    for p in cands:
        if p.exists():
            a = h5_attrs(p)
            if a is not None:
                found.append((run.rel(p), a))
    versions: dict[str, str] = {}
    for _, a in found:
        if isinstance(a.get("versions"), dict):
            versions = {str(k): str(v) for k, v in a["versions"].items()}
            break
    return found, versions


def config_diff(cfg: Config, found: list[tuple[str, dict]]) -> list[str]:
    mine = cfg.to_dict()
    notes = []
    for rel, a in found:
        c = a.get("config")
        if not isinstance(c, dict):
            continue
        diffs = []
        for sec, vals in c.items():
            if sec in mine and isinstance(vals, dict):
                for k, v in vals.items():
                    if k in mine[sec] and json.dumps(mine[sec][k], default=str) != json.dumps(v, default=str):
                        if sec == "run" and k in ("quiet",):
                            continue
                        diffs.append(
                            f"{sec}.{k} = {json.dumps(v, default=str)} (config: {json.dumps(mine[sec][k], default=str)})"
                        )
        if diffs:
            notes.append(f"{rel} was written with " + "; ".join(diffs))
    return notes
