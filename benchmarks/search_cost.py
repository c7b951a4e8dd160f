"""What an architecture search costs: every candidate of a config's search timed on this machine.

The search stage (:mod:`deepdraw.nn.search_stage`) trains each candidate of ``[search]`` once per task
with single-threaded torch, one candidate per Dask worker. This script draws exactly those candidates
(:func:`~deepdraw.nn.search_stage.search_candidates`: the same seed, families, grid and count), builds
each one's :class:`~deepdraw.nn.train.Trainer` with the config's precision (the fast path by default)
and times training steps on random batches with one torch thread, as a search worker runs them. From
the measured samples/s it estimates the search's cost:

    core-seconds per epoch = sum over candidates and tasks of (n_train + n_val / 3) / samples_per_s

(a validation sample is a forward pass only, about a third of a training step; the TDT head costs the
same as the ART head to within a few per cent, so each candidate is timed once, with the ART head, and
counted once per task). Total core-hours = that x ``--epochs``; wall hours on this machine = core-hours /
``--workers``. The model FLOPs per sample (forward + backward, ``torch.utils.flop_counter``) give the
total work in PFLOP, the measure to divide by a GPU's sustained rate.

The timing batch (``--batch``, default 32) is smaller than the training batch (256; LSTM 128) so that
the largest candidates (over 10 GFLOP per sample) take seconds, not minutes; small candidates run a
little faster at the training batch, so their cost is slightly overestimated.

    python benchmarks/search_cost.py --quick                          # 2 candidates per family, demo size
    python benchmarks/search_cost.py configs/paper-search.toml --n-per-family 10 --train-rows 20000 --epochs 20
    python benchmarks/search_cost.py configs/paper-search.toml --epochs 40  # the paper's search, 150 candidates

The last printed line is a JSON object (``core_hours_per_epoch``, ``core_hours``, ``wall_hours``,
``pflop``, per family ``core_hours_<family>``, the candidates' ``samples_per_s`` table is printed
above it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.train` from a checkout

from benchmarks.train import _batch, _toy_file, _trainer, flops_per_sample  # noqa: E402
from deepdraw.config import load_config  # noqa: E402

logger = logging.getLogger("benchmarks.search_cost")


def candidate_rate(name: str, precision: str, batch: int, min_time: float, tmp: Path) -> float:
    """Training samples/s of ``name`` on one torch thread: 1 warm-up step, then >= 2 steps and
    ``min_time`` seconds (``tmp`` holds ``toy.h5``, which the trainer is built on)."""
    torch.set_num_threads(1)
    t = _trainer(name, precision, 1, tmp, torch.device("cpu"))
    x, y = _batch(batch, torch.device("cpu"))
    t.step(x, y)
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < min_time:
        t.step(x, y)
        n += 1
    return batch * n / (time.perf_counter() - t0)


def estimate(rows: list[dict], n_train: int, n_val: int, n_tasks: int, epochs: int, workers: int) -> dict:
    """The cost figures of timed candidates (see the module docstring)."""
    per_pass = n_train + n_val / 3
    out: dict = {}
    total = 0.0
    for fam in sorted({r["family"] for r in rows}):
        s = sum(per_pass / r["samples_per_s"] for r in rows if r["family"] == fam) * n_tasks / 3600
        out[f"core_hours_per_epoch_{fam}"] = round(s, 3)
        out[f"core_hours_{fam}"] = round(s * epochs, 1)
        total += s
    flop = sum(r["gflop_per_sample"] for r in rows) * 1e9 * per_pass * n_tasks * epochs
    out.update(
        core_hours_per_epoch=round(total, 3),
        core_hours=round(total * epochs, 1),
        wall_hours=round(total * epochs / workers, 1),
        pflop=round(flop / 1e15, 2),
    )
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="configs/demo-search.toml", help="a config with [search]")
    p.add_argument(
        "--n-per-family", type=int, default=None, help="default: the config's [search] n_per_family"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per candidate (default: [search] max_epochs)"
    )
    p.add_argument("--train-rows", type=int, default=None,
                   help="rows of the training file, validation included (default: the config's "
                        "pcrt_train.h5 when it exists)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="single-threaded workers sharing the search")
    p.add_argument("--batch", type=int, default=32, help="timing batch (see the docstring)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed steps per candidate")
    p.add_argument("--quick", action="store_true", help="2 candidates per family, 0.2 s each, 3,000 rows")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("deepdraw").setLevel(logging.WARNING)
    torch.set_num_threads(1)

    from deepdraw.nn.search_stage import check_search_section, search_candidates
    from deepdraw.paths import RunPaths

    overrides = []
    n = 2 if args.quick and args.n_per_family is None else args.n_per_family
    if n is not None:
        overrides.append(f"search.n_per_family={n}")
    cfg = load_config(args.config, overrides)
    check_search_section(cfg)
    if cfg.search.n_per_family <= 0:
        raise SystemExit(f"{args.config}: [search] n_per_family is 0; pass --n-per-family N")
    rows_total = args.train_rows if args.train_rows is not None else (3000 if args.quick else None)
    if rows_total is None:
        train = RunPaths.of(cfg).pcrt_train
        if not train.exists():
            raise SystemExit(f"{train} does not exist; pass --train-rows N (rows of the training file)")
        import h5py

        with h5py.File(train, "r") as f:
            rows_total = int(f["label"].shape[0])
    n_val = int(round(rows_total * cfg.train.val_fraction))
    n_train = rows_total - n_val
    epochs = args.epochs if args.epochs is not None else cfg.search.max_epochs
    min_time = 0.2 if args.quick else args.min_time

    table = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _toy_file(tmp / "toy.h5", 64)
        for spec in search_candidates(cfg):
            sps = candidate_rate(spec.name, cfg.train.precision, args.batch, min_time, tmp)
            gf = flops_per_sample(spec.name, batch=8) / 1e9
            table.append(
                {"family": spec.family, "name": spec.name, "samples_per_s": sps, "gflop_per_sample": gf}
            )
            logger.info(
                "%-48s %9.1f samples/s  %7.3f GFLOP/sample  %6.1f GFLOP/s", spec.name, sps, gf, sps * gf
            )
    result = estimate(table, n_train, n_val, len(cfg.search.tasks), epochs, args.workers)
    result.update(
        config=str(args.config),
        candidates=len(table),
        n_per_family=cfg.search.n_per_family,
        tasks=len(cfg.search.tasks),
        n_train=n_train,
        n_val=n_val,
        epochs=epochs,
        workers=args.workers,
        precision=cfg.train.precision,
        batch=args.batch,
        slowest=min(table, key=lambda r: r["samples_per_s"])["name"],
        torch=str(torch.__version__),
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
