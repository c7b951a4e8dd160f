"""Random architecture samples from the paper's search grid (eLife Table 2), seeded.

Sampling follows the original ``train_networks.py``:

- conv families: ``n`` in {1, 2, 3, 4}; channel counts ``sorted(choices({8, 16, 32, 64}, k=2n))`` — for
  spatial_temporal the lower half goes to the spatial layers and the upper half to the temporal ones
  (temporal first for temporal_spatial), so channel counts never decrease along depth; kernel sizes
  ``(sK, tK) = sorted(choices({3, 5, 7, 9}, k=2))`` (so sK <= tK); ``sS`` in {1, 2}, ``tS`` in {1, 2, 3}.
- spatiotemporal: ``sorted(choices(..., k=n))`` channels; kernel and stride drawn as above and then forced
  equal in both dimensions (kernel = the smaller of the two drawn sizes, stride = ``sS``), as the
  original constructor does.
- lstm (grid ``paper``): ``n`` in {1, 2, 3, 4}, filters ``sorted(choices({8, 16, 32, 64}, k=n))``,
  sK in {3, 5, 7, 9}, sS in {1, 2}, units in {128, 256}. Grid ``code`` is the original script's LSTM grid:
  ``n`` in {1, 2, 3}, filters from {8, 16, 32}, units in {32, 64, 128}.

Draws use ``numpy.random.default_rng(seed)``; identical seeds give identical lists. Duplicates are
redrawn when ``unique`` (the original did not deduplicate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepdraw.errors import DeepDrawError
from deepdraw.nn.models.families import FAMILIES, get_family
from deepdraw.nn.models.spec import ModelSpec

__all__ = ["Grid", "GRIDS", "sample_architecture", "sample_architectures"]


@dataclass(frozen=True)
class Grid:
    """Values a random architecture is drawn from."""

    layers: tuple[int, ...] = (1, 2, 3, 4)
    channels: tuple[int, ...] = (8, 16, 32, 64)
    kernel_sizes: tuple[int, ...] = (3, 5, 7, 9)
    s_strides: tuple[int, ...] = (1, 2)
    t_strides: tuple[int, ...] = (1, 2, 3)
    lstm_layers: tuple[int, ...] = (1, 2, 3, 4)
    lstm_channels: tuple[int, ...] = (8, 16, 32, 64)
    lstm_units: tuple[int, ...] = (128, 256)


GRIDS: dict[str, Grid] = {
    "paper": Grid(),
    "code": Grid(lstm_layers=(1, 2, 3), lstm_channels=(8, 16, 32), lstm_units=(32, 64, 128)),
}


def _choice(rng: np.random.Generator, values, k: int | None = None):
    picked = rng.choice(np.asarray(values), size=k if k is not None else None, replace=True)
    return int(picked) if k is None else sorted(int(v) for v in picked)


def sample_architecture(family: str, rng: np.random.Generator, grid: str | Grid = "paper") -> ModelSpec:
    """One random :class:`ModelSpec` of ``family`` drawn with ``rng``."""
    get_family(family)
    g = GRIDS[grid] if isinstance(grid, str) else grid
    if family == "lstm":
        n = _choice(rng, g.lstm_layers)
        filters = _choice(rng, g.lstm_channels, n)
        return ModelSpec(
            "lstm",
            n,
            tuple(filters),
            s_kernel_size=_choice(rng, g.kernel_sizes),
            s_stride=_choice(rng, g.s_strides),
            n_units=_choice(rng, g.lstm_units),
        )
    n = _choice(rng, g.layers)
    if family == "spatiotemporal":
        ch = _choice(rng, g.channels, n)
        sk, _ = _choice(rng, g.kernel_sizes, 2)
        ss = _choice(rng, g.s_strides)
        return ModelSpec(family, n, tuple(ch), s_kernel_size=sk, s_stride=ss)
    ch = _choice(rng, g.channels, 2 * n)
    low, high = tuple(ch[:n]), tuple(ch[n:])
    sk, tk = _choice(rng, g.kernel_sizes, 2)
    ss, ts = _choice(rng, g.s_strides), _choice(rng, g.t_strides)
    s, t = (low, high) if family == "spatial_temporal" else (high, low)
    return ModelSpec(family, n, s, t, s_kernel_size=sk, s_stride=ss, t_kernel_size=tk, t_stride=ts)


def sample_architectures(
    family: str, n: int = 50, seed: int = 0, *, grid: str | Grid = "paper", unique: bool = True
) -> list[ModelSpec]:
    """``n`` random architectures of ``family`` (the paper: 50 per family), reproducible from ``seed``."""
    if family not in FAMILIES:
        get_family(family)
    if isinstance(grid, str) and grid not in GRIDS:
        raise DeepDrawError(f"Unknown search grid '{grid}'; expected one of {', '.join(GRIDS)}.")
    rng = np.random.default_rng(seed)
    out: list[ModelSpec] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * max(n, 1):
            raise DeepDrawError(f"Could not draw {n} distinct {family} architectures from grid '{grid}'.")
        spec = sample_architecture(family, rng, grid)
        if unique and spec.name in seen:
            continue
        seen.add(spec.name)
        out.append(spec)
    return out
