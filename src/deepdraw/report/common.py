"""Shared parts of the report: reading and formatting helpers, model names, the figure model and
the run being reported (:class:`RunView`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import math
import re
import shutil
import struct
from pathlib import Path
from typing import Any

from ..names import identify
from ..paths import RunPaths, stage_summary
from ..settings import Config
from .facts import FACTS, FAMILIES

log = logging.getLogger(__name__)


MAX_DATA_MB = 20.0
"""CSV tables larger than this are not copied into the report (they are named, not linked)."""
SHOWN_MODELS = 6
"""Per-model figures shown open per group (seed-1 trained models first); the rest are folded under a
<details>. Figures of no single model (summaries, inputs) are always shown."""
"""Tokens after the family (and the regression marker) in an architecture name: layers, kernels..., code."""
FAM_LABEL = {
    "spatial_temporal": "spatial-temporal",
    "spatiotemporal": "spatiotemporal",
    "temporal_spatial": "temporal-spatial",
    "lstm": "LSTM",
}
TASK_LABEL = {"art": "ART", "tdt": "TDT", "tdt_pv": "TDT-PV"}
FAM_COLOR = {
    "spatial_temporal": "#1f77b4",
    "spatiotemporal": "#d62728",
    "lstm": "#2ca02c",
    "temporal_spatial": "#9467bd",
}
_FACT = {f.key: f for f in FACTS}
PAPER_ART = {fam: _FACT[f"models.art_test_accuracy.{fam}"].paper for fam in FAMILIES}
PAPER_TDT = {fam: _FACT[f"models.tdt_test_error_cm.{fam}"].paper for fam in FAMILIES}
PAPER_PV = {fam: _FACT[f"models.tdt_pv_test_error_cm.{fam}"].paper for fam in FAMILIES}


# ----------------------------------------------------------------------------------------- helpers
def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def read_json(p: Path) -> dict | None:
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def flatten(d: dict, prefix: str, out: dict[str, float]) -> None:
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if is_num(v):
            out[key] = float(v)
        elif isinstance(v, dict):
            flatten(v, key, out)


def truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "trained")
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def family_of(name: str) -> str:
    parts = identify(str(name))
    return parts.family if parts is not None else str(name)


def parse_model(name: str) -> dict[str, Any] | None:
    """Family, regression marker, seed and untrained flag of a model or architecture name (None: not one;
    :func:`deepdraw.names.identify`).

    ``spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_2r`` -> family spatial_temporal, regression,
    seed 2, untrained; an architecture name (no seed) gives seed None.
    """
    parts = identify(str(name))
    if parts is None:
        return None
    return {
        "family": parts.family,
        "regression": parts.regression,
        "seed": parts.seed,
        "untrained": parts.untrained,
        "arch": parts.arch,
    }


def describe_model(name: str, task: str | None = None) -> str:
    """Plain words for a model name: family, task, seed, trained or untrained."""
    m = parse_model(name)
    if m is None:
        return name
    if task is None:
        task = "tdt" if m["regression"] else "art"
    words = [FAM_LABEL.get(m["family"], m["family"]), TASK_LABEL.get(task, task.upper())]
    if m["seed"] is not None:
        words.append(f"seed {m['seed']}")
        words.append("untrained" if m["untrained"] else "trained")
    else:
        words.append("all seeds")
    return ", ".join(words)


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A number for a table cell: integers with thousands separators, else ``digits`` significant."""
    if x is None or not math.isfinite(x):
        return "—"
    if digits == 0 or (abs(x) >= 10**digits and float(x).is_integer()):
        return f"{x:,.0f}"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    s = f"{x:.{digits}g}"
    if "e" in s:
        s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return s


def png_size(p: Path) -> tuple[int, int]:
    """Width and height of a PNG from its header ((0, 0) when unreadable)."""
    try:
        with open(p, "rb") as f:
            head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
    except OSError:
        pass
    return 0, 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def h5_rows(path: Path) -> tuple[int | None, dict[str, Any]]:
    """Number of samples (length of ``label``) and a few columns of a PCRT file; (None, {}) if unreadable."""
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            if "label" not in f:
                return None, {}
            n = int(f["label"].shape[0])
            cols: dict[str, Any] = {"label": f["label"][()]}
            if "plane" in f and "startpt" in f:
                cols["plane"] = np.array(
                    [p.decode() if isinstance(p, bytes) else str(p) for p in f["plane"][()]]
                )
                cols["startpt"] = f["startpt"][()]
            return n, cols
    except (OSError, KeyError, ValueError):
        return None, {}


def h5_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of an HDF5 artifact (JSON fields decoded); None if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            out: dict[str, Any] = {}
            for k, v in f.attrs.items():
                if isinstance(v, bytes):
                    v = v.decode()
                if k in ("config", "seeds", "inputs", "versions") and isinstance(v, str):
                    with contextlib.suppress(ValueError):
                        v = json.loads(v)
                out[k] = v
            return out
    except OSError:
        return None


def read_csv(p: Path):
    import pandas as pd

    try:
        return pd.read_csv(p)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------- the model
@dataclasses.dataclass
class FigureItem:
    """One figure of the report: its path relative to the report folder and its caption."""

    src: str
    caption: str
    wide: bool = False
    folded: bool = False  # shown under "more figures"


@dataclasses.dataclass
class FigureGroup:
    title: str
    intro: str
    items: list[FigureItem]
    missing: list[str]


class RunView:
    """Everything the report reads from one run folder."""

    def __init__(self, cfg: Config, dest: Path) -> None:
        self.cfg = cfg
        self.rp = RunPaths.of(cfg)
        self.dest = dest
        self.missing: list[tuple[str, str]] = []  # (what, why)
        self.copied: set[str] = set()

    # ---- file handling
    def rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.rp.root))
        except ValueError:
            return str(p)

    def miss(self, what: str, why: str) -> str:
        self.missing.append((what, why))
        return f"{what}: {why}"

    def copy_figure(self, src: Path, stage: str) -> str:
        """Copy a PNG into ``figures/<stage>/``; its path relative to the report folder."""
        sub = src.parent.relative_to(self._stage_root(stage)) if self._under(src, stage) else Path()
        name = _safe("_".join([*sub.parts, src.name])) if sub.parts else _safe(src.name)
        rel = f"figures/{stage}/{name}"
        k = 1
        while rel in self.copied:
            k += 1
            rel = f"figures/{stage}/{Path(name).stem}_{k}{Path(name).suffix}"
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dest / rel)
        self.copied.add(rel)
        return rel

    def copy_data(self, src: Path, stage: str) -> str | None:
        """Copy a small table into ``data/<stage>/``; None (and noted) when too large."""
        size = src.stat().st_size / 2**20
        if size > MAX_DATA_MB:
            self.miss(
                self.rel(src), f"{size:.0f} MB, not copied into the report (limit {MAX_DATA_MB:.0f} MB)"
            )
            return None
        rel = f"data/{stage}/{_safe(src.name)}"
        (self.dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dest / rel)
        return rel

    def _stage_root(self, stage: str) -> Path:
        return {"dataset": self.rp.figures}.get(stage, self.rp.root / stage)

    def _under(self, p: Path, stage: str) -> bool:
        try:
            p.relative_to(self._stage_root(stage))
            return True
        except ValueError:
            return False

    def pngs(self, folder: Path) -> list[Path]:
        """The figures under ``folder``; for a stage folder with a summary (svm, rsa, tuning), only those
        its last run lists there, so figures an earlier run left (a model since removed, a seed no
        longer embedded) are not shown as this run's."""
        if not folder.is_dir():
            return []
        found = sorted(p for p in folder.rglob("*.png") if p.is_file() and not p.name.startswith("."))
        listed = _listed_pngs(stage_summary(folder))
        return found if listed is None else [p for p in found if p.name in listed]


def _listed_pngs(summary: Path) -> set[str] | None:
    """File names of the figures a stage summary lists (anywhere in it); None when it has none (no
    readable summary, or one from a run that made no figures: then every figure in the folder is shown)."""
    data = read_json(summary)
    if not data:
        return None
    names: set[str] = set()
    todo: list[Any] = [data]
    while todo:
        o = todo.pop()
        if isinstance(o, dict):
            todo += o.values()
        elif isinstance(o, list):
            todo += o
        elif isinstance(o, str) and o.endswith(".png"):
            names.add(Path(o).name)
    return names or None
