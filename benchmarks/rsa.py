"""Benchmark of the RSA stage's heavy parts on the S-7293 architecture at paper scale (4,000 samples).

For every layer of ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293`` (input + 8 layers, 137,280
features per sample in all) it times what :func:`deepdraw.rsa.run_rsa` does per layer:

* ``gram_s``: the Gram matrix of the row-centred activations of two models (one matrix product each;
  shared by the RDM and CKA);
* ``rdm_s``: the correlation RDM of the class-balanced subset (200 per character), its Pearson r and
  Kendall tau-a/b with the category oracle, and the percentile image;
* ``cka_s``: the centred, normalised Gram matrices and their CKA;
* ``decoding_s``: ridge decoding of position, direction and speed at every centre frame
  (4,000 trajectories x up to 320 frames), split by trajectory.

Activations are random arrays of the right shapes (speed does not depend on training) unless
``--activations PATH`` (once or twice: model A, model B) points at real activations files. Generating
or reading them is timed apart (``load_s``) and not part of ``wall_s``. The last line printed is one
JSON object.

    python benchmarks/rsa.py            # 4,000 samples, target wall_s <= 60 s on 2 cores
    python benchmarks/rsa.py --quick    # 600 samples
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
from tqdm.auto import tqdm

from deepdraw.nn import build_model
from deepdraw.rsa import cka, decoding, rdm

log = logging.getLogger("benchmarks.rsa")

ARCH = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"
# (rows, frames, channels) per layer, from the model itself (the paper's Table 3; tested in test_nn_models)
S7293 = {"input": (25, 320, 2), **build_model(ARCH).layer_shapes()}


def _centres(frames: int, total: int = 320) -> np.ndarray:
    stride = int(np.ceil(total / frames))
    return np.minimum(np.arange(frames) * stride + stride // 2, total - 1)


class RandomSource:
    """Random activations of S-7293 shapes and smooth random hand trajectories."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.layers = list(S7293)
        self.labels = np.arange(n) % 20
        steps = self.rng.standard_normal((n, 3, 320)).cumsum(axis=2) * 0.05
        steps[:, 2] = 0.0
        self.kin = decoding.kinematic_targets(
            30 + steps, np.array([b"horizontal"] * n), np.full(n, 10), np.full(n, 300), 0.015
        )

    def layer(self, name: str, model: int) -> tuple[np.ndarray, np.ndarray]:
        shp = S7293[name]
        X = self.rng.standard_normal((self.n, *shp), dtype=np.float32)
        np.maximum(X, 0, out=X)  # ReLU-like: positive mean, as real activations
        return X, _centres(shp[1])


class FileSource:
    """Layers, labels and kinematics of real activations files (A, and B for CKA; B = A if one)."""

    def __init__(self, paths: list[str]) -> None:
        import h5py

        self.paths = paths if len(paths) > 1 else paths * 2
        with h5py.File(self.paths[0], "r") as f:
            names = f.attrs["layer_names"]
            self.layers = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(names)]
            self.labels = f["label"][()].astype(np.int64)
            self.n = self.labels.size
            self.kin = decoding.kinematic_targets(
                f["kinematics/endeffector_coords"][()],
                f["plane"][()],
                f["start_id"][()],
                f["end_id"][()],
                0.015,
            )

    def layer(self, name: str, model: int) -> tuple[np.ndarray, np.ndarray]:
        import h5py

        with h5py.File(self.paths[model], "r") as f:
            return f[f"layers/{name}"][()].astype(np.float32), f[f"centres/{name}"][()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 samples instead of 4,000")
    ap.add_argument("--n", type=int, default=0, help="samples (overrides --quick)")
    ap.add_argument(
        "--activations", action="append", default=[], help="real activations file (give twice for A and B)"
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="BLAS threads (0 = library default)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    n = args.n or (600 if args.quick else 4000)
    src = FileSource(args.activations) if args.activations else RandomSource(n)
    n = src.n
    sub = rdm.balanced_subset(src.labels, args.per_class, np.random.default_rng(1))
    oracle = rdm.oracle_rdm(src.labels[sub])
    test_mask = decoding.trajectory_split(n, 0.2, np.random.default_rng(2))
    t = dict.fromkeys(("load_s", "gram_s", "rdm_s", "cka_s", "decoding_s"), 0.0)
    per_layer = {}
    features = 0
    cpu = 0.0
    for name in tqdm(src.layers, desc="layers", disable=args.quiet):
        t0 = time.perf_counter()
        XA, centres = src.layer(name, 0)
        XB, _ = src.layer(name, 1)
        t1 = time.perf_counter()
        c1 = time.process_time()
        GA = rdm.layer_gram(XA, args.dtype, args.device)
        GB = rdm.layer_gram(XB, args.dtype, args.device)
        t2 = time.perf_counter()
        rdm_vec = GA.rdm(sub)
        sim = rdm.oracle_similarity(rdm_vec, src.labels[sub], oracle)
        rdm.percentile_image(rdm_vec, sub.size)
        del rdm_vec
        t3 = time.perf_counter()
        c = cka.cka_normalised(cka.normalised_gram(GA), cka.normalised_gram(GB))
        del GA, GB
        t4 = time.perf_counter()
        res = decoding.decode_layer(XA, centres, src.kin, test_mask, 1.0)
        t5 = time.perf_counter()
        cpu += time.process_time() - c1
        d = int(np.prod(XA.shape[1:]))
        features += d
        del XA, XB
        per_layer[name] = {
            "features": d,
            "gram_s": round(t2 - t1, 3),
            "rdm_s": round(t3 - t2, 3),
            "cka_s": round(t4 - t3, 3),
            "decoding_s": round(t5 - t4, 3),
            "oracle_r": round(sim["oracle_r"], 5),
            "cka": round(c, 5),
            "position_error_cm": round(res["position_error_cm"], 4),
        }
        for k, v in zip(
            ("load_s", "gram_s", "rdm_s", "cka_s", "decoding_s"),
            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
        ):
            t[k] += v
        log.info("%-10s %s", name, per_layer[name])
    wall = t["gram_s"] + t["rdm_s"] + t["cka_s"] + t["decoding_s"]
    out = {
        "benchmark": "rsa",
        "architecture": ARCH,
        "source": "file" if args.activations else "random",
        "n_samples": int(n),
        "rdm_samples": int(sub.size),
        "layers": len(src.layers),
        "features_total": features,
        "dtype": args.dtype,
        "device": args.device,
        "threads": args.threads or "default",
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # CPU time of the analysis (all threads): wall_s x cores when unloaded
        **{k: round(v, 2) for k, v in t.items()},
        "target_wall_s": 60,
        "per_layer": per_layer,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
