"""Toy PCRT files for the network tests (shared by test_nn_train and test_nn_stage)."""

from __future__ import annotations

import h5py
import numpy as np

N_CLASSES = 4
TINY = "spatial_temporal_1_4_4_5233"  # spatial0 (13, 320, 4) -> temporal0 (13, 107, 4)


def make_pcrt(path, n, seed, n_classes=N_CLASSES, angles=True):
    """A separable toy PCRT file: class c raises channel 0 of muscles 6c..6c+5 and has its own rhythm.

    ``angles`` adds the rot / shear latents (False: a file without them).
    """
    rng = np.random.default_rng(seed)
    label = np.arange(n) % n_classes
    rng.shuffle(label)
    t = np.arange(320) * 0.015
    x = rng.normal(0, 0.3, size=(n, 25, 320, 2)).astype(np.float32)
    for i, c in enumerate(label):
        x[i, 6 * c : 6 * c + 6, :, 0] += 1.5
        x[i, :, :, 1] += np.sin(2 * np.pi * (c + 1) * t / 4.8)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    ee = np.stack([30 + 5 * np.sin(t + phase), -10 + 5 * np.cos(t + phase), np.zeros((n, 320))], axis=1)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "pcrt"
        f["spindle_info"] = x
        f["label"] = label.astype(np.int64)
        f["candidate_id"] = 100_000 * seed + np.arange(n, dtype=np.int64)
        f["endeffector_coords"] = ee.astype(np.float32)
        f["joint_coords"] = rng.normal(size=(n, 4, 320)).astype(np.float32)
        f["plane"] = np.array(
            [b"horizontal", b"vertical"] * (n // 2) + [b"horizontal"] * (n % 2), dtype="S10"
        )
        f["start_id"] = rng.integers(0, 100, n)
        f["end_id"] = rng.integers(100, 320, n)
        for k, vals in (("size", [0.7, 1.0, 1.3]), ("speed", [0.8, 1.0, 1.2, 1.4])):
            f[k] = rng.choice(vals, n)
        for k in ("rot", "shear_x", "shear_y") if angles else ():
            f[k] = rng.choice([-30.0, -15.0, 0.0, 15.0, 30.0], n)
    return path


def train_config(files, out, **kw):
    """A TrainConfig of TINY on toy files ``(train, test)``: batch 16, lr 5e-3, 3 epochs, seed 1, CPU."""
    from deepdraw.nn.train import TrainConfig

    base = dict(
        model=TINY,
        train_path=files[0],
        test_path=files[1],
        out_dir=out,
        batch_size=16,
        lr=5e-3,
        max_epochs=3,
        seed=1,
        quiet=True,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)
