"""Which muscles depend on the shoulder and which on the elbow (level-1 build,
:func:`~deepdraw.dataset.muscles.build_fast_engine`), and the check that the path of a muscle depending on
both is a shoulder part plus an elbow part, as the split shoulder and elbow tables assume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DeepDrawError
from .constants import MUSCLES
from .exact import ExactEngine


def _coupling(
    eng: ExactEngine, post: np.ndarray, rng: np.random.Generator, k: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """Which muscles depend on the shoulder / the elbow, and the mixed difference (additivity check)."""
    i = rng.integers(len(post), size=(k, 4))
    s1, s2 = post[i[:, 0], :3], post[i[:, 1], :3]
    d1, d2 = post[i[:, 2], 3:], post[i[:, 3], 3:]
    quad = np.concatenate(
        [
            np.concatenate([s1, d1], 1),
            np.concatenate([s1, d2], 1),
            np.concatenate([s2, d1], 1),
            np.concatenate([s2, d2], 1),
        ]
    )
    L = eng.path_lengths(quad[None])[0].reshape(4, k, len(MUSCLES))
    with np.errstate(invalid="ignore"):
        dep_sh = np.nanmax(np.abs(L[0] - L[2]), axis=0) > 1e-9
        dep_el = np.nanmax(np.abs(L[0] - L[1]), axis=0) > 1e-9
        mixed = np.nanmax(np.abs(L[0] - L[1] - L[2] + L[3]), axis=0)
    coupling = dep_sh.astype(np.int8) | (dep_el.astype(np.int8) << 1)
    coupling[coupling == 0] = 1  # constant: a (flat) shoulder table
    return coupling, mixed


def muscle_split(
    eng: ExactEngine, post: np.ndarray, rng: np.random.Generator, model_path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Coupling (25,) (bit 0: shoulder, bit 1: elbow), the shoulder and elbow muscles, and the largest
    mixed difference (mm) of the muscles with both; their path must be a shoulder part plus an elbow part."""
    coupling, mixed = _coupling(eng, post, rng)
    both = coupling == 3
    if np.any(both & ~(mixed <= 1e-6)):
        m = int(np.argmax(np.where(both, np.nan_to_num(mixed, nan=np.inf), -1)))
        raise DeepDrawError(
            f"{model_path}: the path length of {MUSCLES[m]} is not a shoulder part plus an elbow part "
            f"(mixed difference {mixed[m]:.3g} mm); expected separable paths (docs/muscles.md)"
        )
    mixed_max = float(np.nanmax(np.where(both, mixed, 0.0)))
    return coupling, np.flatnonzero(coupling & 1), np.flatnonzero(coupling & 2), mixed_max
