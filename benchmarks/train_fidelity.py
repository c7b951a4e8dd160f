"""Does the fast training path train the same networks? Fast path vs fp32 reference, medium scale.

Trains S-7293 and ST-7272 (ART) with 3 seeds for 10 epochs on a fixed medium dataset, once with the
reference path (``precision = "fp32"``) and once with the default fast path (``precision = "auto"``),
and compares the mean test accuracy over seeds (target: within 1 point) and the learning curves.

The medium dataset is the first ``--n-train`` rows of a PCRT training file and the first
``--n-test`` rows of its test file (default: the paper-scale dataset of ``configs/paper.toml``;
regenerate it with ``deepdraw pipeline configs/paper.toml --only
characters,startpoints,kinematics,assemble``), copied once to ``OUT/pcrt_{train,test}.h5``. The seeds
of one model and precision are trained together (:func:`deepdraw.nn.group.train_group`, one batch
order, ``data_seed`` 1) on both paths, so the two paths see the same batches. Runs resume: a killed
validation continues where it stopped.

Writes ``OUT/fidelity.json`` (per model and precision: test accuracy per seed, mean, SEM, curves,
wall time) and the figure ``--figure`` (default ``docs/figures/train_fidelity.png``): validation
accuracy per epoch, both paths, every seed. The last printed line is one JSON object with
``fidelity_delta_<family>`` (fast minus fp32 mean test accuracy, percentage points) and the means.

    python benchmarks/train_fidelity.py                      # ~50 min on 2 cores
    python benchmarks/train_fidelity.py --quick   # smoke test of the script (< 1 min)

``--quick`` trains 1 epoch of 2 seeds on 1,000 rows (300 test) into ``runs/fidelity-quick``; when the
source files are missing it uses a synthetic separable PCRT file instead (the script's smoke test,
not a fidelity figure).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import h5py
import numpy as np

from deepdraw.nn.group import train_group
from deepdraw.nn.train import TrainConfig

MODELS = {
    "spatial_temporal": "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
    "spatiotemporal": "spatiotemporal_4_8-8-32-64_7272",
}
KEYS = ("spindle_info", "label", "endeffector_coords")

logger = logging.getLogger("benchmarks.train_fidelity")


def synthetic_file(path: Path, n: int, seed: int) -> Path:
    """A separable synthetic PCRT file (20 classes: a length offset on 3 muscles and a rhythm each)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 20, n)
    t = np.arange(320) * 0.015
    x = np.empty((n, 25, 320, 2), np.float32)
    x[..., 0] = 100 + rng.normal(0, 1, (n, 25, 320))
    x[..., 1] = rng.normal(0, 5, (n, 25, 320))
    for i, c in enumerate(label):
        x[i, c : c + 3, :, 0] += 3.0
        x[i, :, :, 1] += 20 * np.sin(2 * np.pi * (1 + c % 5) * t / 4.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["spindle_info"] = x
        f["label"] = label
        f["endeffector_coords"] = np.zeros((n, 3, 320), np.float32)
        f.attrs["source"] = "synthetic"
    return path


def medium_file(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` rows of ``src`` (inputs, labels, hand positions) in ``dst`` (made once)."""
    if dst.exists():
        with h5py.File(dst, "r") as f:
            if f["label"].shape[0] == n:
                return dst
        raise SystemExit(f"{dst} holds another number of rows than {n}; remove it or use another --out")
    if not src.exists():
        raise SystemExit(
            f"{src} does not exist: make the paper-scale dataset first (deepdraw pipeline configs/paper.toml "
            "--only characters,startpoints,kinematics,assemble) or pass --train/--test"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    with h5py.File(src, "r") as f, h5py.File(tmp, "w") as g:
        if f["label"].shape[0] < n:
            raise SystemExit(f"{src} has {f['label'].shape[0]} rows; --n asks for {n}")
        for k in KEYS:
            g.create_dataset(k, data=f[k][:n])
        g.attrs["source"] = str(src)
    tmp.replace(dst)
    return dst


def run(args) -> dict:
    out = Path(args.out)
    if args.quick and not Path(args.train).exists():
        args.train = str(synthetic_file(out / "synthetic_train.h5", 2 * args.n_train, 0))
        args.test = str(synthetic_file(out / "synthetic_test.h5", 2 * args.n_test, 1))
    train = medium_file(Path(args.train), out / "pcrt_train.h5", args.n_train)
    test = medium_file(Path(args.test), out / "pcrt_test.h5", args.n_test)
    results: dict = {}
    for family in args.models:
        for precision in ("fp32", args.precision):
            configs = [
                TrainConfig(
                    model=MODELS[family],
                    train_path=train,
                    test_path=test,
                    out_dir=out / family / precision / f"seed{s}",
                    seed=s,
                    data_seed=1,
                    max_epochs=args.epochs,
                    precision=precision,
                    quiet=True,
                )
                for s in args.seeds
            ]
            t0 = time.perf_counter()
            res = train_group(configs, quiet=False)
            wall = time.perf_counter() - t0
            acc = [100 * r.metrics["test_accuracy"] for r in res]
            results[f"{family}/{precision}"] = {
                "model": MODELS[family],
                "precision": res[0].metrics["precision"],
                "seeds": list(args.seeds),
                "test_accuracy": acc,
                "mean": float(np.mean(acc)),
                "sem": float(np.std(acc, ddof=1) / math.sqrt(len(acc))) if len(acc) > 1 else 0.0,
                "epochs_wall_s": [r.metrics["wall_time_s"] for r in res],
                "wall_s_this_call": wall,
                "curves": [[100 * e["val_accuracy"] for e in r.metrics["epochs"]] for r in res],
            }
            logger.info(
                "%s %s: test accuracy %s (mean %.2f %%), %.0f s",
                family, precision, ", ".join(f"{a:.2f}" for a in acc), np.mean(acc), wall,
            )  # fmt: skip
    return results


def figure(results: dict, path: Path, precision: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({k.split("/")[0] for k in results})
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], families, strict=True):
        for prec, style, colour in (("fp32", "-", "tab:blue"), (precision, "--", "tab:orange")):
            r = results.get(f"{fam}/{prec}")
            if r is None:
                continue
            for i, c in enumerate(r["curves"]):
                label = (
                    f"{r['precision']}: test {r['mean']:.2f} % (mean of {len(r['curves'])})"
                    if i == 0
                    else None
                )
                ax.plot(range(1, len(c) + 1), c, style, color=colour, alpha=0.8, label=label)
        ax.set(title=results[f"{fam}/fp32"]["model"], xlabel="epoch", ylabel="validation accuracy (%)")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="runs/paper/dataset/pcrt_train.h5", help="source PCRT training file")
    p.add_argument("--test", default="runs/paper/dataset/pcrt_test.h5", help="source PCRT test file")
    p.add_argument("--n-train", type=int, default=20000, help="training rows (the last 10 %% validate)")
    p.add_argument("--n-test", type=int, default=4000, help="test rows")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--precision", default="auto", help="the fast path compared with fp32 (default auto)")
    p.add_argument("--out", default="runs/fidelity", help="output folder (resumable)")
    p.add_argument("--figure", default="docs/figures/train_fidelity.png")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 2 seeds, 1,000 rows")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.seeds = 1000, 300, 1, [1, 2]
        args.out = "runs/fidelity-quick" if args.out == "runs/fidelity" else args.out
        args.figure = str(Path(args.out) / "train_fidelity.png")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("deepdraw").setLevel(logging.WARNING)
    results = run(args)
    fast = next(v["precision"] for k, v in results.items() if not k.endswith("/fp32"))
    (Path(args.out) / "fidelity.json").write_text(json.dumps(results, indent=1))
    figure(results, Path(args.figure), args.precision)
    source = "synthetic" if "synthetic" in str(args.train) else str(args.train)
    summary: dict = {
        "source": source,
        "precision": fast,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "epochs": args.epochs,
    }
    for fam in args.models:
        a, b = results[f"{fam}/fp32"], results[f"{fam}/{args.precision}"]
        summary[f"test_accuracy_{fam}_fp32"] = round(a["mean"], 2)
        summary[f"test_accuracy_{fam}_fast"] = round(b["mean"], 2)
        summary[f"fidelity_delta_{fam}"] = round(b["mean"] - a["mean"], 2)
        summary[f"wall_s_{fam}_fp32"] = round(max(a["epochs_wall_s"]), 1)
        summary[f"wall_s_{fam}_fast"] = round(max(b["epochs_wall_s"]), 1)
    summary["seeds"] = list(args.seeds)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
