"""Wall time of all tuning models for all units of an S-7293-shaped model (original: single_cell/).

Synthetic hand trajectories (curved minimum-jerk movements, half in the 26 horizontal planes
z = -45..30 cm, half in the 17 vertical planes x = 6..54 cm, every plane analysed) and random
activations of the shapes of ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293`` (input (25,320,2),
spatial0-3, temporal0-3 with their receptive-field centres), generated block by block, or a real
activations file (``--activations PATH``). Times :func:`deepdraw.tuning.analyse_model` (16 models x all
units x both orientations, pooled and per plane, plus label selectivity) and the summaries
(:func:`deepdraw.tuning.build_tables`: preferred directions, uniformity, invariance). Figures are not
drawn. The last printed line is a JSON object with ``wall_s`` (target <= 120 s for 4,000 trajectories
on a 2-core CPU), ``generate_s`` (time spent making the random activations, part of ``wall_s``),
``n_trajectories``, ``n_units``, ``n_points`` and ``points_units_per_s``.

    python benchmarks/tuning.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from deepdraw.config import TuningConfig
from deepdraw.tuning import Activations, ActivationsFile, analyse_model, build_tables

logger = logging.getLogger("benchmarks.tuning")

T = 320
SPATIAL = [(13, 8), (7, 16), (4, 16), (2, 32)]  # (rows, channels) of spatial0-3 at 320 frames
TEMPORAL = [32, 32, 64, 64]  # channels of temporal0-3 (2 rows), kernel 9, stride 3


def same_centres(n_in: int, k: int, s: int) -> np.ndarray:
    """Input index at the centre of each output of a 'SAME' conv (TF: odd pad at the end)."""
    n_out = -(-n_in // s)
    pad_before = max((n_out - 1) * s + k - n_in, 0) // 2
    return np.clip(np.arange(n_out) * s - pad_before + k // 2, 0, n_in - 1)


def s7293_layers() -> tuple[dict[str, tuple[int, int, int]], dict[str, np.ndarray]]:
    shapes = {"input": (25, T, 2)}
    centres = {"input": np.arange(T)}
    for i, (r, c) in enumerate(SPATIAL):
        shapes[f"spatial{i}"] = (r, T, c)
        centres[f"spatial{i}"] = np.arange(T)
    cur = np.arange(T)
    for i, c in enumerate(TEMPORAL):
        cur = cur[same_centres(cur.size, 9, 3)]
        shapes[f"temporal{i}"] = (2, cur.size, c)
        centres[f"temporal{i}"] = cur.copy()
    return shapes, centres


def synthetic_kinematics(n: int, seed: int) -> dict[str, np.ndarray]:
    """Curved minimum-jerk movements in every horizontal and vertical plane of the original."""
    rng = np.random.default_rng(seed)
    hor = np.arange(-45, 31, 3.0)
    ver = np.arange(6, 55, 3.0)
    is_h = np.arange(n) % 2 == 0
    level = np.where(is_h, hor[rng.integers(0, hor.size, n)], ver[rng.integers(0, ver.size, n)])
    length = rng.integers(60, 250, n)
    start = np.array([rng.integers(0, T - L) for L in length])
    end = start + length
    tau = np.clip((np.arange(T)[None, :] - start[:, None]) / (length - 1)[:, None], 0, 1)
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    d = rng.uniform(-10, 10, (n, 2, 1))
    c = rng.uniform(-3, 3, (n, 2, 1))
    u0 = np.where(is_h, rng.uniform(25, 45, n), rng.uniform(-30, 0, n))
    v0 = np.where(is_h, rng.uniform(-30, 0, n), rng.uniform(-30, 0, n))
    path = d * s[:, None, :] + c * np.stack([np.sin(2 * np.pi * s), 1 - np.cos(2 * np.pi * s)], 1)
    u = u0[:, None] + path[:, 0]
    v = v0[:, None] + path[:, 1]
    lv = np.broadcast_to(level[:, None], (n, T))
    ee = np.where(is_h[:, None, None], np.stack([u, v, lv], 1), np.stack([lv, u, v], 1))
    return {
        "ee": ee,
        "plane": np.where(is_h, "horizontal", "vertical"),
        "start": start,
        "end": end,
        "label": rng.integers(0, 20, n),
    }


class RandomActivations(Activations):
    """Random float32 activations of the S-7293 shapes, generated per block (seeded by layer and block)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        kin = synthetic_kinematics(n, seed)
        self.ee, self.plane, self.label = kin["ee"], kin["plane"], kin["label"]
        self.start_id, self.end_id = kin["start"], kin["end"]
        self.sample_index = np.arange(n)
        self._shapes, self._centres = s7293_layers()
        self.layer_names = list(self._shapes)
        self.model_name = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293_1"
        self.task, self.trained, self.where = "art", True, "<random S-7293 activations>"
        self.seed = seed
        self.generate_s = 0.0
        self.check()

    def shape(self, layer: str) -> tuple[int, int, int, int]:
        return (self.n, *self._shapes[layer])

    def centres(self, layer: str) -> np.ndarray:
        return self._centres[layer]

    def read(self, layer: str, sl: slice) -> np.ndarray:
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, self.layer_names.index(layer), sl.start])
        a = rng.standard_normal((sl.stop - sl.start, *self._shapes[layer]), dtype=np.float32)
        self.generate_s += time.perf_counter() - t0
        return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="trajectories (default 4000)")
    ap.add_argument("--quick", action="store_true", help="400 trajectories")
    ap.add_argument("--activations", default="", help="a real activations file instead of random data")
    ap.add_argument("--chunk", type=int, default=128, help="trajectories per block")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = 400 if args.quick else args.n
    cfg = TuningConfig(chunk=args.chunk, figures=False)

    t0 = time.perf_counter()
    act = ActivationsFile(args.activations) if args.activations else RandomActivations(n)
    with act:
        t1 = time.perf_counter()
        res = analyse_model(act, cfg, quiet=args.quiet)
        t2 = time.perf_counter()
        tables = build_tables([res], cfg)
        t3 = time.perf_counter()
        gen = getattr(act, "generate_s", 0.0)
        n_units = sum(lf.n_units for lf in res.layers)
        n_points = int(
            sum(of.n_points[0].sum() for lf in res.layers for of in lf.orient.values())
        )  # vel-set points (train + test) over layers and orientations
        points_units = sum(
            int(of.n_points.sum()) * lf.n_units for lf in res.layers for of in lf.orient.values()
        )
        n_planes = {o: int(of.levels.size) for o, of in res.layers[0].orient.items()}
        out = {
            "benchmark": "tuning",
            "source": args.activations or "random S-7293",
            "n_trajectories": act.n,
            "n_layers": len(res.layers),
            "n_units": n_units,
            "n_models": 16,
            "n_planes": n_planes,
            "n_points": n_points,
            "load_s": round(t1 - t0, 3),
            "analyse_s": round(t2 - t1, 3),
            "summary_s": round(t3 - t2, 3),
            "generate_s": round(gen, 3),
            "wall_s": round(t3 - t0, 3),
            "points_units_per_s": round(points_units / max(t2 - t1 - gen, 1e-9)),
            "quick": bool(args.quick),
        }
    d = tables["directions"]
    logger.info(
        "uniformity (horizontal) per layer: %s", d[d.orientation == "horizontal"].uniformity.round(3).tolist()
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
