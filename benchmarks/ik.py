"""Batched IK (swivel search) against the original per-frame SLSQP, on letter-like trajectories.

Builds N augmented-like hand paths (smooth random pen paths rescaled to a 10 cm box, then size, rotation,
shear and speed latents as the original's augmentation, drawn in a horizontal or vertical plane around a
start point of the original file), solves them with ``ik_batch`` (all at once) and a subset with
``ik_reference`` (the original engine, one SLSQP per frame), and prints frames/s, the speed-up and
the agreement of the joint angles.

Agreement is reported three ways (see ``tests/test_arm.py`` for why they differ):

* ``max_joint_diff_deg`` / ``frac_frames_within_0p5deg``: whole trajectories, both engines started
  from (50, 40, 20, 75), against the original engine;
* ``..._one_step``: each frame solved from the original's own previous posture;
* ``..._smooth``: whole trajectories against SLSQP with a differentiable constraint, warm-started.

Usage: ``python benchmarks/ik.py [--quick] [--n 2000] [--n-ref 8]``. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from deepdraw.dataset import arm
from deepdraw.dataset.startpoints import load_original_startpoints


def make_paths(n: int, rng: np.random.Generator, t_min: int, t_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, T, 3) NaN-padded hand paths in {W} (cm) and their lengths (n,)."""
    starts = load_original_startpoints()
    lengths = rng.integers(t_min, t_max + 1, size=n)
    out = np.full((n, int(lengths.max()), 3), np.nan)
    for i, T in enumerate(lengths):
        t = np.linspace(0, 1, T)
        p = np.zeros((2, T))
        for _ in range(3):  # a few smooth strokes
            f = rng.uniform(0.5, 3.0, size=2)
            ph = rng.uniform(0, 2 * np.pi, size=2)
            p += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])
        p = ((p - p.min(1, keepdims=True)) / np.ptp(p, 1, keepdims=True) - 0.5) * 10.0  # 10 cm box
        size = rng.choice([0.7, 1.0, 1.3])
        rot, sx, sy = rng.choice([-np.pi / 6, -np.pi / 12, 0.0, np.pi / 12, np.pi / 6], size=3)
        shear = np.array([[1.0, np.tan(sx)], [np.tan(sy), 1.0]])
        rmat = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
        p = shear @ rmat @ (p * size)
        zero = np.zeros(T)
        if rng.random() < 0.5:
            w = (
                np.stack([p[1], -p[0], zero], 1)
                + starts["horizontal"][rng.integers(len(starts["horizontal"]))]
            )
        else:
            w = np.stack([zero, -p[0], p[1]], 1) + starts["vertical"][rng.integers(len(starts["vertical"]))]
        out[i, :T] = w
    return out, lengths


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="trajectories for the batched engine")
    ap.add_argument("--n-ref", type=int, default=8, help="trajectories (a subset) for the original engine")
    ap.add_argument("--t-min", type=int, default=100, help="shortest trajectory (frames)")
    ap.add_argument("--t-max", type=int, default=295, help="longest trajectory (frames)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_ref, args.t_min, args.t_max = 1500, 3, 80, 200
    rng = np.random.default_rng(args.seed)
    paths, lengths = make_paths(args.n, rng, args.t_min, args.t_max)
    print(f"{args.n} trajectories, {lengths.sum()} frames ({lengths.min()}-{lengths.max()} per trajectory)")

    t0 = time.perf_counter()
    joints, err = arm.ik_batch(paths, lengths)
    t_batch = time.perf_counter() - t0
    fps_batch = lengths.sum() / t_batch
    print(f"ik_batch:     {t_batch:8.2f} s  {fps_batch:10.0f} frames/s  max error {np.nanmax(err):.2e} cm")

    sub = np.arange(min(args.n_ref, args.n))
    t0 = time.perf_counter()
    refs = [arm.ik_reference(paths[i, : lengths[i]]) for i in sub]
    t_ref = time.perf_counter() - t0
    n_ref_frames = int(lengths[sub].sum())
    fps_ref = n_ref_frames / t_ref
    print(
        f"ik_reference: {t_ref:8.2f} s  {fps_ref:10.1f} frames/s  ({len(sub)} trajectories, {n_ref_frames} frames)"
    )

    diff = np.concatenate([np.abs(joints[i, : lengths[i]] - q).max(axis=1) for i, (q, _) in zip(sub, refs)])
    # one step from the original's own previous posture
    tgt = np.concatenate([paths[i, : lengths[i]] for i in sub])
    q_prev = np.concatenate([np.vstack([arm.Q_START, q[:-1]]) for q, _ in refs])
    q_one, _ = arm.ik_batch(tgt[:, None, :], q0=q_prev)
    diff_one = np.abs(q_one[:, 0] - np.concatenate([q for q, _ in refs])).max(axis=1)
    step_excess = np.linalg.norm(q_one[:, 0] - q_prev, axis=1) - np.linalg.norm(
        np.concatenate([q for q, _ in refs]) - q_prev, axis=1
    )
    # a well-posed SLSQP on the same objective
    diff_smooth = np.concatenate(
        [
            np.abs(
                joints[i, : lengths[i]] - arm.ik_reference(paths[i, : lengths[i]], method="smooth")[0]
            ).max(axis=1)
            for i in sub
        ]
    )
    speedup = fps_batch / fps_ref
    print(f"speed-up:     {speedup:8.0f}x")
    print(
        f"vs original, whole trajectories: max |dq| {diff.max():.2f} deg, {np.mean(diff < 0.5):.1%} frames within 0.5 deg"
    )
    print(
        f"vs original, one step:           {np.mean(diff_one < 0.5):.1%} frames within 0.5 deg; "
        f"batched step longer than original's on {np.sum(step_excess > 1e-3)} frames"
    )
    print(f"vs smooth SLSQP, whole trajectories: max |dq| {diff_smooth.max():.2e} deg")
    out = {
        "ik_batch_fps": float(fps_batch),
        "ik_reference_fps": float(fps_ref),
        "ik_speedup": float(speedup),
        "max_joint_diff_deg": float(diff.max()),
        "frac_frames_within_0p5deg": float(np.mean(diff < 0.5)),
        "frac_frames_within_0p5deg_one_step": float(np.mean(diff_one < 0.5)),
        "max_joint_diff_deg_smooth": float(diff_smooth.max()),
        "n_trajectories": int(args.n),
        "n_frames": int(lengths.sum()),
        "n_reference_frames": n_ref_frames,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
