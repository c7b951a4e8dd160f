"""Latent variables and the transforms that turn a pen path into a 3-D hand path (original: dataset/generate_data.py).

A candidate movement is one UCI pen path plus latents: size (scale of path length *and* duration),
rotation, shear in x and y (radians), speed (duration divided by it), the writing plane, a start point
of that plane, and a noise level (drawn and recorded as the original does; never applied, as in the
original). The transforms reproduce the original's arithmetic:

* ``resize``: velocity ``[0, diff(p)]`` linearly interpolated at ``int(T * size)`` points on
  ``[0, T-1]``, then integrated from the first point;
* ``rotate_shear``: ``p <- [[1, tan sx], [tan sy, 1]] @ R(rot) @ p``;
* ``speedify``: positions linearly resampled at ``int(T / speed)`` points;
* ``to_world``: append z = 0, map with the plane's matrix (horizontal: (x, y, z) = (p_y, -p_x, 0);
  vertical: (0, -p_x, p_y)) and add the start point (cm, world frame {W}).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PLANE_CODES = {"horizontal": 0, "vertical": 1}
PLANE_MATRICES = {
    "horizontal": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    "vertical": np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}


def resize(p: np.ndarray, size: float) -> np.ndarray:
    """(2, T) -> (2, int(T*size)): scale path length and duration by ``size``."""
    T = p.shape[1]
    vel = np.concatenate([np.zeros((2, 1)), np.diff(p, axis=1)], axis=1)
    n = int(T * size)
    x = np.linspace(0, T - 1, n)
    src = np.arange(T)
    v = np.stack([np.interp(x, src, vel[k]) for k in range(2)])
    return np.cumsum(v, axis=1) + p[:, :1]


def rotate_shear(p: np.ndarray, rot: float, shear_x: float, shear_y: float) -> np.ndarray:
    """(2, T) -> (2, T): rotation by ``rot`` then shear, angles in radians."""
    c, s = np.cos(rot), np.sin(rot)
    R = np.array([[c, -s], [s, c]])
    S = np.array([[1.0, np.tan(shear_x)], [np.tan(shear_y), 1.0]])
    return S @ R @ p


def speedify(p: np.ndarray, speed: float) -> np.ndarray:
    """(2, T) -> (2, int(T/speed)): linear resampling in time."""
    T = p.shape[1]
    n = int(T / speed)
    x = np.linspace(0, T - 1, n)
    src = np.arange(T)
    return np.stack([np.interp(x, src, p[k]) for k in range(2)])


def to_world(p: np.ndarray, plane: str, startpt: np.ndarray) -> np.ndarray:
    """(2, T) pen path -> (3, T) hand path in {W} (cm) for ``plane`` starting at ``startpt``."""
    p3 = np.concatenate([p, np.zeros((1, p.shape[1]))], axis=0)
    return PLANE_MATRICES[plane] @ p3 + np.asarray(startpt, dtype=np.float64)[:, None]


@dataclass
class Latents:
    """Latent variables of one candidate (angles in radians)."""

    size: float
    rot: float
    shear_x: float
    shear_y: float
    speed: float
    noise: float
    start_id: int  # row of the start-point table of ``plane``


def draw_latents(
    rng: np.random.Generator,
    n_start: int,
    sizes: list[float],
    angles_deg: list[float],
    speeds: list[float],
    noises: list[float],
) -> Latents:
    """One draw, in a fixed order of calls (so a stream of draws is reproducible)."""
    ang = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    size = float(rng.choice(sizes))
    rot, sx, sy = (float(rng.choice(ang)) for _ in range(3))
    speed = float(rng.choice(speeds))
    noise = float(rng.choice(noises))
    start_id = int(rng.integers(n_start))
    return Latents(size, rot, sx, sy, speed, noise, start_id)


def transform(pen: np.ndarray, lat: Latents, plane: str, startpt: np.ndarray) -> np.ndarray:
    """Pen path (2, T) (no NaN) + latents -> hand path (3, T') in {W} (cm)."""
    p = resize(pen, lat.size)
    p = rotate_shear(p, lat.rot, lat.shear_x, lat.shear_y)
    p = speedify(p, lat.speed)
    return to_world(p, plane, startpt)


def max_length(t_max: int, sizes: list[float], speeds: list[float]) -> int:
    """Longest transformed path for pen paths of at most ``t_max`` frames (295 for the original)."""
    return max(int(int(t_max * s) / v) for s in sizes for v in speeds)
