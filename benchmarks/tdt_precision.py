"""Does bfloat16 training cost TDT accuracy? A shipped TDT model continued in bf16 and in float32.

The fast path's bfloat16 activations (docs/training.md, "Precision") round every hidden unit after the
first layer to ~0.4 % of its value. For ART that was measured harmless (``train_fidelity.py``); hand
position is regressed in cm over a ~100 cm workspace, where that rounding is ~0.1 cm of output: the
size of the TDT error itself. This benchmark measures it on the shipped paper-scale TDT models
(``deepdraw zoo list``), in one process and on the same data:

1. ``forward_gap_cm_<family>``: mean distance between the bf16 fast path's outputs and the float32
   reference's for the shipped weights, on the test rows (how far apart the two functions are);
2. each model is continued from its shipped weights for ``--passes`` passes over the first
   ``--n-train`` training rows at ``--lr`` (fresh Adam, MSE, batches of 256, the same seeded batch
   order) once with ``precision = "bf16"`` and once with ``"fast32"`` (the same matrix products in
   float32), and evaluated after each pass with the float32 reference forward (as ``deepdraw train``
   tests and every later stage sees a model) on the first ``--n-test`` test rows.

``tdt_error_bf16_<family>`` / ``tdt_error_fast32_<family>``: test error (cm) after the last pass;
``tdt_error_ratio_<family>``: bf16 / fast32; ``pass_time_ratio_<family>``: fast32 / bf16 seconds per
pass (the price of float32). The data are the paper-scale PCRT files (``runs/paper/dataset``; regenerate
with ``deepdraw pipeline configs/paper.toml --only characters,startpoints,kinematics,assemble``).

    python benchmarks/tdt_precision.py            # ~10 min on 2 cores (48,000 rows, 3 passes, both models)
    python benchmarks/tdt_precision.py --quick    # 2,000 rows, 1 pass, 500 test rows, ST-7272 only

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from deepdraw import zoo
from deepdraw.nn.evaluation import task_loss
from deepdraw.nn.precision import training_forward
from deepdraw.nn.targets import TargetSpec

MODELS = {
    "spatiotemporal": "spatiotemporal_r_4_8-8-32-64_7272_1",
    "spatial_temporal": "spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1",
}


def _read(path: Path, n: int) -> tuple[torch.Tensor, np.ndarray]:
    if not path.is_file():
        sys.exit(f"{path}: missing; expected the paper-scale PCRT file (see this script's docstring)")
    with h5py.File(path, "r") as f:
        return torch.from_numpy(f["spindle_info"][:n]), f["endeffector_coords"][:n]


def _test_error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])
    return float((out - y).norm(dim=-1).mean())


def _forward_gap(name: str, x: torch.Tensor) -> float:
    model, _ = zoo.load(name)
    fast = training_forward(model, "bf16")
    with torch.no_grad():
        gaps = [
            (fast(x[i : i + 500]).float() - model(x[i : i + 500])).norm(dim=-1) for i in range(0, len(x), 500)
        ]
    return float(torch.cat(gaps).mean())


def _continue(name: str, precision: str, data: dict, args: argparse.Namespace) -> dict:
    """Continue the shipped model ``name`` at ``precision``; test error after each pass, seconds per pass."""
    model, _ = zoo.load(name)
    targets = TargetSpec.for_model(model, "centre")
    ytr = torch.from_numpy(targets(data["ee_train"]))
    yte = torch.from_numpy(targets(data["ee_test"]))
    forward = training_forward(model, precision)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, fused=True)
    order = torch.Generator().manual_seed(0)
    errors, seconds = [_test_error(model, data["x_test"], yte)], []
    n = len(ytr)
    for _ in range(args.passes):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order)
        for i in range(0, n - 255, 256):
            idx = perm[i : i + 256]
            opt.zero_grad(set_to_none=True)
            task_loss("tdt", forward(data["x_train"][idx]), ytr[idx]).backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
        errors.append(_test_error(model, data["x_test"], yte))
        print(
            f"{name} {precision}: pass {len(seconds)}: test error {errors[-1]:.4f} cm ({seconds[-1]:.0f} s)",
            flush=True,
        )
    return {"errors_cm": errors, "seconds_per_pass": float(np.mean(seconds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="runs/paper/dataset", help="folder of pcrt_train.h5 / pcrt_test.h5")
    ap.add_argument("--n-train", type=int, default=48_000, help="training rows continued on (default 48,000)")
    ap.add_argument("--n-test", type=int, default=4_000, help="test rows evaluated (default 4,000)")
    ap.add_argument("--passes", type=int, default=3, help="passes over the training rows (default 3)")
    ap.add_argument("--lr", type=float, default=3.125e-5, help="Adam learning rate (default 5e-4 / 16)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="2,000 rows, 1 pass, 500 test rows, ST-7272 only")
    args = ap.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.passes = 2_000, 500, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {"spatiotemporal": MODELS["spatiotemporal"]} if args.quick else MODELS
    ds = Path(args.dataset)
    x_train, ee_train = _read(ds / "pcrt_train.h5", args.n_train)
    x_test, ee_test = _read(ds / "pcrt_test.h5", args.n_test)
    data = {"x_train": x_train, "ee_train": ee_train, "x_test": x_test, "ee_test": ee_test}
    result: dict = {
        "n_train": len(x_train), "n_test": len(x_test), "passes": args.passes, "lr": args.lr,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    for family, name in models.items():
        result[f"forward_gap_cm_{family}"] = _forward_gap(name, x_test)
        runs = {p: _continue(name, p, data, args) for p in ("bf16", "fast32")}
        for p, r in runs.items():
            result[f"tdt_error_{p}_{family}"] = r["errors_cm"][-1]
            result[f"tdt_errors_{p}_{family}"] = r["errors_cm"]
        result[f"tdt_error_ratio_{family}"] = runs["bf16"]["errors_cm"][-1] / runs["fast32"]["errors_cm"][-1]
        result[f"pass_time_ratio_{family}"] = (
            runs["fast32"]["seconds_per_pass"] / runs["bf16"]["seconds_per_pass"]
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
