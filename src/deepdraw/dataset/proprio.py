"""Proprioceptive inputs from muscle lengths, and the temporal placement of a movement (original: dataset/PCRDatasetArrange.ipynb, deleted in commit b290e9e, and ModifyInputRepresentations.ipynb).

Formulas (L: muscle fiber length in mm over 320 frames, dt = 0.015 s, gradients along time):

* ``spindle_info = stack(L, dL/dt)``, shape (..., 25, 320, 2): length (mm) and velocity (mm/s) with
  ``dL/dt = np.gradient(L, dt)``. This is the networks' input; it is noise-free, as the original.
* ``spindle_firing = 2 * np.gradient(L, 1) + 4.3 * sign(v) * |v|**0.6`` with ``v = np.gradient(L, dt)``,
  then ``+ noise * std_t(p_m) * N(0, 1)`` per sample and muscle (noise = 0.3): the original's
  Prochazka-Gorassini-like rate, used by the SVM baselines. Its "stretch" term is a per-frame
  difference and it has no rest-length offset: both as the original code, unlike the published model.
"""

from __future__ import annotations

import numpy as np


def place(x: np.ndarray, onset: int, n_frames: int = 320) -> np.ndarray:
    """Put a movement (..., T) at frames [onset, onset+T) of ``n_frames``, holding the first value
    before and the last value after it (the original ``apply_shuffle``)."""
    T = x.shape[-1]
    if onset < 0 or onset + T > n_frames:
        raise ValueError(f"a movement of {T} frames does not fit at onset {onset} in {n_frames} frames")
    out = np.empty(x.shape[:-1] + (n_frames,), dtype=x.dtype)
    out[..., :onset] = x[..., :1]
    out[..., onset : onset + T] = x
    out[..., onset + T :] = x[..., -1:]
    return out


def draw_onset(rng: np.random.Generator, length: int, n_frames: int = 320) -> int:
    """Random onset in [0, n_frames - length) as the original (``np.random.randint(320 - L)``)."""
    if length >= n_frames:
        raise ValueError(f"movement of {length} frames is too long for {n_frames} frames")
    return int(rng.integers(n_frames - length))


def spindle_info(L: np.ndarray, dt: float = 0.015) -> np.ndarray:
    """(..., T) lengths in mm -> (..., T, 2): length (mm) and velocity (mm/s)."""
    return np.stack([L, np.gradient(L, dt, axis=-1)], axis=-1)


def spindle_rate(L: np.ndarray, dt: float = 0.015) -> np.ndarray:
    """Noise-free firing rate of the original's spindle model; (..., T) -> (..., T)."""
    v = np.gradient(L, dt, axis=-1)
    return 2.0 * np.gradient(L, 1.0, axis=-1) + 4.3 * np.sign(v) * np.abs(v) ** 0.6


def spindle_firing(
    L: np.ndarray, rng: np.random.Generator, noise: float = 0.3, dt: float = 0.015
) -> np.ndarray:
    """(..., M, T) -> (..., M, T): :func:`spindle_rate` plus ``noise * std over time`` Gaussian noise
    per muscle (one draw of shape (..., M, T) from ``rng``)."""
    p = spindle_rate(L, dt)
    sd = p.std(axis=-1, keepdims=True)
    return p + noise * sd * rng.standard_normal(p.shape)
