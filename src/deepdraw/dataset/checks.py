"""Checks of an assembled PCRT file: single-frame muscle-length jumps (wrapping discontinuities).

The MoBL-ARMS model's wrapping surfaces make a few muscle paths (LAT1-3, TMAJ, TMIN, BIClong) jump by
up to ~100 mm between two neighbouring postures; OpenSim itself reproduces them. A movement crossing
such a posture has one frame-to-frame step far larger than the steps around it. The paper's selection
(1 candidate in 5 kept, lowest muscle jerk first) leaves none in the paper-scale files: their largest
frame-to-frame step over 10,000 test samples is 4.1 mm (BRD, a fast but smooth muscle).

A *jump* at (sample, muscle, frame t) is a step ``|L[t+1] - L[t]| >= jump_mm`` that is also at least
``ratio`` times both neighbouring steps (a smooth fast muscle has similar neighbouring steps).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from deepdraw.errors import DeepDrawError

__all__ = ["JUMP_MM", "JUMP_RATIO", "find_jumps", "muscle_jumps"]

JUMP_MM = 5.0
"""Default smallest step (mm between two frames) counted as a jump."""
JUMP_RATIO = 4.0
"""Default: a jump is at least this many times both neighbouring steps."""


def find_jumps(
    lengths: np.ndarray, jump_mm: float = JUMP_MM, ratio: float = JUMP_RATIO
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sample, muscle, frame, step_mm)`` of every jump in ``lengths`` ``[n, muscles, frames]`` (mm).

    ``frame`` is the first frame of the step (the jump is between ``frame`` and ``frame + 1``); NaN
    frames (padding) never count.
    """
    x = np.asarray(lengths, dtype=np.float64)
    if x.ndim != 3:
        raise DeepDrawError(f"find_jumps: lengths has shape {x.shape}; expected [samples, muscles, frames]")
    if not jump_mm > 0 or not ratio >= 1:
        raise DeepDrawError(f"find_jumps: jump_mm={jump_mm}, ratio={ratio}; expected jump_mm > 0, ratio >= 1")
    step = np.abs(np.diff(x, axis=-1))
    step = np.where(np.isfinite(step), step, 0.0)
    before = np.pad(step, ((0, 0), (0, 0), (1, 0)))[..., :-1]
    after = np.pad(step, ((0, 0), (0, 0), (0, 1)))[..., 1:]
    hit = (step >= jump_mm) & (step >= ratio * np.maximum(before, after))
    s, m, f = np.nonzero(hit)
    return s, m, f, step[s, m, f]


def muscle_jumps(
    path: str | os.PathLike,
    jump_mm: float = JUMP_MM,
    ratio: float = JUMP_RATIO,
    block: int = 1024,
    max_listed: int = 20,
) -> dict:
    """Jumps in the ``muscle_coords`` of PCRT file ``path``, read in blocks of rows.

    Returns ``{"file", "n_samples", "samples_with_jumps", "jumps", "largest_mm", "by_muscle": {name:
    samples}, "examples": [{"row", "muscle", "frame", "step_mm"}, ...], "jump_mm", "ratio"}``; the
    examples are the largest ``max_listed`` jumps.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise DeepDrawError(f"{p}: PCRT file not found")
    with h5py.File(p, "r") as f:
        if "muscle_coords" not in f:
            raise DeepDrawError(f"{p}: no dataset 'muscle_coords'; expected a PCRT file (docs/formats.md)")
        ds = f["muscle_coords"]
        names = json.loads(f.attrs["muscle_names"]) if "muscle_names" in f.attrs else None
        n = int(ds.shape[0])
        rows, muscles, frames, steps = [], [], [], []
        for s in range(0, n, block):
            r, m, fr, st = find_jumps(ds[s : s + block], jump_mm, ratio)
            rows.append(r + s)
            muscles.append(m)
            frames.append(fr)
            steps.append(st)
    r, m, fr, st = (np.concatenate(a) if a else np.zeros(0) for a in (rows, muscles, frames, steps))
    name = (lambda i: names[int(i)]) if names else (lambda i: int(i))
    per_muscle: Counter[str | int] = Counter()
    for mi in np.unique(m):
        per_muscle[name(mi)] = int(np.unique(r[m == mi]).size)
    order = np.argsort(-st)[:max_listed]
    return {
        "file": str(p),
        "n_samples": n,
        "samples_with_jumps": int(np.unique(r).size),
        "jumps": int(r.size),
        "largest_mm": float(st.max()) if st.size else 0.0,
        "by_muscle": dict(per_muscle.most_common()),
        "examples": [
            {"row": int(r[i]), "muscle": name(m[i]), "frame": int(fr[i]), "step_mm": round(float(st[i]), 3)}
            for i in order
        ],
        "jump_mm": float(jump_mm),
        "ratio": float(ratio),
    }
