"""Benchmark: the fast muscle engine against OpenSim (the exact engine) on dataset-like trajectories.

    .venv/bin/python benchmarks/muscles.py [--quick] [--n 200] [--engine PATH] [--seed S]

Trajectories are UCI characters augmented and placed at DeepDraw's start points as in
generate_data.py, solved by the arm's IK (synthetic pen paths if the characters are unavailable).
Prints a summary, then, as the last line, one JSON object with length_err_p999_mm, length_err_max_mm,
velocity_rel_rms, fallback_frac, exact_frames_per_s, fast_frames_per_s, muscles_speedup, and the
tables alone (no OpenSim): tables_frames_per_s of the node-major interpolation the engine uses and
tables_speedup against the per-muscle reference loop (``muscles.tricubic``) on the same postures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter trajectories (< 1 min)")
    ap.add_argument("--n", type=int, default=None, help="trajectories (default 200; quick: 12)")
    ap.add_argument(
        "--engine", default=None, help="fast-engine artifact (default: data/muscles/fast_engine.h5)"
    )
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from deepdraw.dataset import muscles as M
    from deepdraw.errors import DeepDrawError

    n = args.n if args.n is not None else (12 if args.quick else 200)
    try:
        t0 = time.perf_counter()
        fast = M.FastEngine.load(args.engine)
        joints, lengths = M.dataset_trajectories(n, args.seed)
        if args.quick:  # keep OpenSim under ~30 s
            lengths = np.minimum(lengths, 80)
            joints = joints[:, : int(lengths.max())]
        t_prep = time.perf_counter() - t0
        fig = M.validate_fast_engine(fast, joints, lengths, quiet=not args.verbose)
        fig.update(_tables(M, fast, joints, lengths))
    except DeepDrawError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fig["prepare_s"] = round(t_prep, 2)
    fig["quick"] = bool(args.quick)
    print(f"trajectories {fig['trajectories']}, frames {fig['frames']}")
    print(f"length error: p99.9 {fig['length_err_p999_mm']:.4f} mm, max {fig['length_err_max_mm']:.4f} mm")
    print(f"velocity relative RMS error: {fig['velocity_rel_rms']:.2e}")
    print(
        f"fallback: {fig['fallback_frac']:.3f} of frames, {fig['fallback_entry_frac']:.4f} of muscle values"
    )
    print(
        f"tables only: {fig['tables_frames_per_s']:.0f} frames/s, {fig['tables_speedup']:.1f}x the per-muscle loop"
    )
    print(
        f"exact {fig['exact_frames_per_s']:.0f} frames/s, fast {fig['fast_frames_per_s']:.0f} frames/s, "
        f"speed-up {fig['muscles_speedup']:.1f}x"
    )
    keys = [
        "length_err_p999_mm", "length_err_max_mm", "velocity_rel_rms", "fallback_frac", "fallback_entry_frac",
        "exact_frames_per_s", "fast_frames_per_s", "muscles_speedup", "frames", "trajectories", "nan_mismatch",
        "quick", "tables_frames_per_s", "tables_speedup",
    ]  # fmt: skip
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in fig.items() if k in keys}))
    return 0


def _tables(M, fast, joints: np.ndarray, lengths: np.ndarray) -> dict:
    """Shoulder-table interpolation alone: node-major (the engine's) vs the per-muscle reference loop."""
    from deepdraw.dataset.muscles import tables as T

    valid = np.arange(joints.shape[1])[None, :] < lengths[:, None]
    q3 = np.tile(joints[valid][:, :3], (max(1, 100_000 // int(valid.sum())), 1))
    args = (fast.sh_n, fast.sh_code, fast.sh_origin, fast.sh_step, q3)
    times = {}
    for name, fn, tab in (("ref", T.tricubic, fast.sh_table), ("nodes", T.tricubic_nodes, fast._sh_window)):
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            val, bad = fn(tab, *args)
            best = min(best, time.perf_counter() - t0)
        times[name] = (best, val, bad)
    (t_ref, v_ref, b_ref), (t_new, v_new, b_new) = times["ref"], times["nodes"]
    if not np.array_equal(b_ref, b_new) or np.abs(v_ref - v_new)[~b_ref].max(initial=0.0) > 1e-9:
        raise SystemExit("error: node-major tables disagree with the per-muscle reference")
    return {"tables_frames_per_s": len(q3) / t_new, "tables_speedup": t_ref / t_new}


if __name__ == "__main__":
    sys.exit(main())
