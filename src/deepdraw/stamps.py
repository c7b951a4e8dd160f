"""What a run folder records of each stage: the ``started`` / ``done`` stamps of the pipeline.

A stamp is ``<out_dir>/.stamps/<stage>.{started,done}.json`` (:func:`stamp_path`). A ``done`` stamp
records, besides the digest and config (written by :mod:`deepdraw.pipeline`), the size and modification
time of the stage's input files (:func:`fingerprint`), the size of each output file and which HDF5
outputs opened (:func:`output_record`), so that a later run can tell changed inputs
(:func:`changed_inputs`) and damaged outputs (:func:`damaged_outputs`) apart from a finished stage.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

from .paths import RunPaths
from .settings import Config
from .store import write_json_atomic

WHICH = ("started", "done")
"""The two stamps of a stage."""

__all__ = [
    "WHICH",
    "stamp_file",
    "stamp_path",
    "stamped_stages",
    "read_stamp",
    "write_stamp",
    "peak_mb",
    "fingerprint",
    "changed_inputs",
    "output_files",
    "h5_unreadable",
    "output_record",
    "damaged_outputs",
    "rel",
]


def stamp_file(folder: Path, name: str, which: str) -> Path:
    """The stamp ``<folder>/<name>.<which>.json`` (``which``: ``started`` or ``done``) of a stamps folder."""
    return folder / f"{name}.{which}.json"


def stamp_path(cfg: Config, name: str, which: str) -> Path:
    """Stage ``name``'s stamp in ``cfg``'s run folder: ``<out_dir>/.stamps/<name>.<which>.json``."""
    return stamp_file(RunPaths.of(cfg).stamps, name, which)


def stamped_stages(folder: Path) -> list[str]:
    """The stages with a stamp in ``folder`` (sorted; none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted({p.name.split(".")[0] for which in WHICH for p in folder.glob(f"*.{which}.json")})


def read_stamp(p: Path) -> dict:
    """A stamp's content; ``{}`` when it is missing or unreadable (treated as never written)."""
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def write_stamp(p: Path, data: dict) -> None:
    """Write a stamp (or the stage table) atomically, keys sorted."""
    write_json_atomic(p, data, indent=1, sort_keys=True)


def peak_mb() -> float:
    """Peak resident memory so far (MB) of this process or its largest child."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(me, kids) / 1024.0


def fingerprint(cfg: Config, paths: list[Path]) -> dict[str, list[int]]:
    """``{path relative to out_dir: [size, mtime_ns]}`` of existing files."""
    out = {}
    for p in paths:
        try:
            info = p.stat()
        except OSError:
            continue
        try:
            key = str(p.relative_to(cfg.out_dir))
        except ValueError:
            key = str(p)
        out[key] = [info.st_size, info.st_mtime_ns]
    return out


def changed_inputs(recorded: dict, now: dict) -> list[str]:
    """Files whose :func:`fingerprint` differs between a ``done`` stamp and now (added or removed too)."""
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def output_files(paths: list[Path]) -> list[Path]:
    """The files among a stage's outputs, and the files directly inside its output folders (a model
    folder's checkpoints), hidden and temporary files left out."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
        elif p.is_file():
            files.append(p)
    return files


def h5_unreadable(p: Path) -> str | None:
    """Why ``p`` does not open as HDF5, or None when it does."""
    import h5py

    try:
        with h5py.File(p, "r"):
            return None
    except OSError as e:
        return f"not a readable HDF5 file ({str(e).splitlines()[0][:80]})"


def output_record(cfg: Config, paths: list[Path]) -> dict:
    """What a ``done`` stamp records of a stage's outputs: ``outputs`` (file relative to out_dir -> size)
    and ``outputs_hdf5`` (the ``.h5`` files among them that open)."""
    files = output_files(paths)
    return {
        "outputs": {k: v[0] for k, v in fingerprint(cfg, files).items()},
        "outputs_hdf5": [rel(cfg, f) for f in files if f.suffix == ".h5" and h5_unreadable(f) is None],
    }


def damaged_outputs(cfg: Config, done: dict, outputs: list[Path]) -> dict[Path, str]:
    """Outputs of a finished stage that are not what it wrote: a size other than the one recorded in
    its ``done`` stamp (truncated, replaced), or an HDF5 file that opened then and does not now. Stamps
    of an older deepdraw (no ``outputs`` record) get the HDF5 check for every ``.h5`` output."""
    recorded: dict[str, int] = done.get("outputs") or {}
    hdf5 = set(done.get("outputs_hdf5") or [])
    bad: dict[Path, str] = {}
    for p in output_files(outputs):
        key = rel(cfg, p)
        size = p.stat().st_size
        if key in recorded and recorded[key] != size:
            bad[p] = f"{key}: {size} bytes, {recorded[key]} when the stage finished"
        elif p.suffix == ".h5" and (key in hdf5 or "outputs" not in done) and (why := h5_unreadable(p)):
            bad[p] = f"{key}: {why}"
    return bad


def rel(cfg: Config, p: Path) -> str:
    """``p`` relative to the run folder (as stamps and messages name files), else as it is."""
    try:
        return str(p.relative_to(cfg.out_dir))
    except ValueError:
        return str(p)
