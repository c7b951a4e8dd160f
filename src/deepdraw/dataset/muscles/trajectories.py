"""Postures of the dataset for building and validating the fast engine: synthetic pen paths around DeepDraw's start points, UCI characters, through the arm's IK."""

from __future__ import annotations

import logging
import os

import numpy as np

from ...errors import DeepDrawError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# postures of the dataset: synthetic pen paths around DeepDraw's start points, through the arm's IK
# --------------------------------------------------------------------------------------------------
_PLANES = {
    "horizontal": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    "vertical": np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}


def _resample(p: np.ndarray, n: int) -> np.ndarray:
    x = np.linspace(0, p.shape[1] - 1, max(n, 2))
    src = np.arange(p.shape[1])
    return np.stack([np.interp(x, src, row) for row in p])


def synthetic_trajectories(
    n: int,
    seed: int = 0,
    startpoints: str | os.PathLike | None = None,
    box_cm: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint trajectories like the dataset's: smooth pen paths at DeepDraw's start points, solved by IK.

    Each pen path is a random smooth curve (a sum of sinusoids in velocity, 40-182 frames), rescaled
    per axis to a ``box_cm`` box as the UCI characters are, then augmented as in generate_data.py
    (size 0.7/1/1.3, rotation and shears in {0, ±15°, ±30°}, speed 0.8-1.4), put in a horizontal or
    vertical plane at a random start point of ``pcr_startingpoints.hdf5`` and solved by
    :func:`deepdraw.dataset.arm.ik_batch` from the posture (50, 40, 20, 75).
    Returns joints (n, T, 4) degrees (NaN after each end) and lengths (n,).
    """
    import h5py

    from .. import arm

    if startpoints is None:
        from ...paths import original_startpoints

        startpoints = original_startpoints()
    try:
        with h5py.File(startpoints, "r") as f:
            starts = {k: np.asarray(f[k][()], dtype=np.float64) for k in _PLANES}
    except (OSError, KeyError) as e:
        raise DeepDrawError(
            f"{startpoints}: cannot read the start points 'horizontal'/'vertical' ({e})"
        ) from None
    rng = np.random.default_rng(seed)
    angles = np.deg2rad([-30.0, -15.0, 0.0, 15.0, 30.0])
    paths = []
    for _ in range(n):
        t0 = int(rng.integers(40, 183))
        s = np.linspace(0.0, 1.0, t0)
        vel = np.zeros((2, t0))
        for ax in range(2):
            for _k in range(int(rng.integers(2, 6))):
                fr = rng.uniform(0.5, 3.5)
                vel[ax] += rng.normal() / fr * np.sin(2 * np.pi * fr * s + rng.uniform(0, 2 * np.pi))
        p = np.cumsum(vel, axis=1)
        lo, hi = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
        p = ((p - lo) / np.where(hi - lo > 0, hi - lo, 1.0) - 0.5) * box_cm
        size = float(rng.choice([0.7, 1.0, 1.3]))
        p = _resample(p[:, :1] + size * (p - p[:, :1]), int(t0 * size))
        rot, shx, shy = (float(rng.choice(angles)) for _ in range(3))
        c, si = np.cos(rot), np.sin(rot)
        p = np.array([[1.0, np.tan(shx)], [np.tan(shy), 1.0]]) @ np.array([[c, -si], [si, c]]) @ p
        p = _resample(p, int(p.shape[1] / float(rng.choice([0.8, 1.0, 1.2, 1.4]))))
        plane = "horizontal" if rng.random() < 0.5 else "vertical"
        start = starts[plane][int(rng.integers(len(starts[plane])))]
        p3 = np.concatenate([p, np.zeros((1, p.shape[1]))])
        paths.append((_PLANES[plane] @ p3 + start[:, None]).T)
    lens = np.array([len(p) for p in paths], dtype=np.int64)
    targets = np.full((n, int(lens.max(initial=1)), 3), np.nan)
    for i, p in enumerate(paths):
        targets[i, : len(p)] = p
    joints, _ = arm.ik_batch(targets, lens)
    return joints, lens


def character_trajectories(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Joint trajectories of the dataset's kind from the shipped UCI characters (as generate_data.py).

    Uses :mod:`deepdraw.dataset.characters`, :mod:`~deepdraw.dataset.augment` and
    :func:`~deepdraw.dataset.arm.ik_batch`; for validation and benchmarks.
    Returns joints (n, T, 4) degrees (NaN after each end) and lengths (n,).
    """
    import h5py

    from ...paths import original_startpoints
    from .. import arm, augment, characters

    rc = characters.load_shipped(verify=False)
    trajs, lens, _ = characters.preprocess(rc)
    with h5py.File(original_startpoints(), "r") as f:
        starts = {k: np.asarray(f[k][()], dtype=np.float64) for k in _PLANES}
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(n):
        j = int(rng.integers(len(lens)))
        plane = "horizontal" if rng.random() < 0.5 else "vertical"
        lat = augment.draw_latents(
            rng,
            len(starts[plane]),
            [0.7, 1.0, 1.3],
            [-30.0, -15.0, 0.0, 15.0, 30.0],
            [0.8, 1.0, 1.2, 1.4],
            [0.0],
        )
        paths.append(augment.transform(trajs[j, :, : lens[j]], lat, plane, starts[plane][lat.start_id]).T)
    out_lens = np.array([len(p) for p in paths], dtype=np.int64)
    targets = np.full((n, int(out_lens.max(initial=1)), 3), np.nan)
    for i, p in enumerate(paths):
        targets[i, : len(p)] = p
    joints, _ = arm.ik_batch(targets, out_lens)
    return joints, out_lens


def dataset_trajectories(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Realistic joint trajectories: from the UCI characters when available, else synthetic ones."""
    try:
        return character_trajectories(n, seed)
    except (DeepDrawError, ImportError, AttributeError, OSError) as e:
        log.warning("character trajectories unavailable (%s); using synthetic pen paths", e)
        return synthetic_trajectories(n, seed)
