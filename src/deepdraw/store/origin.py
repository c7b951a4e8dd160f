"""Provenance of every artifact: file digests, the source's git commit, library versions.

:func:`provenance` is the set of root attributes :class:`~deepdraw.store.ArtifactWriter` writes on
every HDF5 file (no timestamp: the same config and seeds give byte-identical files).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        commit = out.stdout.strip()
        if out.returncode == 0 and commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour affects results."""
    import importlib.metadata as md

    out = {"python": ".".join(map(str, __import__("sys").version_info[:3]))}
    for name in ("numpy", "scipy", "h5py", "torch", "opensim", "scikit-learn", "rsatoolbox", "dask"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


_COMMIT: str | None = None


def git_commit() -> str:
    """The source tree's git commit ('-dirty' when it has uncommitted changes; 'unknown' outside git)."""
    global _COMMIT
    if _COMMIT is None:
        _COMMIT = _git_commit()
    return _COMMIT


def provenance(
    kind: str,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Root attributes recorded on every artifact (all values are strings; dicts as JSON)."""
    return {
        "kind": kind,
        "deepdraw_version": __version__,
        "git_commit": git_commit(),
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "seeds": json.dumps(seeds or {}, sort_keys=True, default=str),
        "inputs": json.dumps(inputs or {}, sort_keys=True),
        "versions": json.dumps(library_versions(), sort_keys=True),
    }
