"""Training throughput: the fast path against the fp32 reference, models trained together, peak use.

For S ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``, ST ``spatiotemporal_4_8-8-32-64_7272`` and
``lstm_3_8-16-16_256`` (ART head: dropout, cross-entropy; Adam), in one process, with the same torch
threads and the same batches (random inputs on the data's scale), this times training steps of

- the reference path (``precision = "fp32"``: the model's NCHW convolutions in float32), and
- the default fast path (``precision = "auto"``, resolved on this device; :mod:`deepdraw.nn.lowered`),

each step the code of :class:`deepdraw.nn.train.Trainer` (built on a small temporary PCRT file). The
two are timed in alternating rounds; a rate is the median over rounds. ``train_speedup_<family>`` is
fast / reference. Model FLOPs per sample (forward + backward, counted on the reference model with
``torch.utils.flop_counter``) give the achieved GFLOP/s; ``peak_fraction_<family>`` divides it by a
dense 2048 x 2048 matmul timed in the same run at the fast path's precision (bf16 or fp32).

The LSTM is timed with half the batch (128 of 256, its training batch size).

``group_speedup``: 5 seeds of ST-7272 stepped together on shared batches
(:func:`deepdraw.nn.group.step_together`, one after another as :func:`~deepdraw.nn.group.train_group`
does by default) against the same 5 models stepped one at a time; ``group_speedup_threaded``: side
by side in threads of one torch thread each. Samples/s of all models together.

On the CPU both paths run with freed memory reused by the allocator, as training does
(:mod:`deepdraw.nn.hostmem`; ``host_allocator`` in the JSON); ``DEEPDRAW_MALLOC=system python
benchmarks/train.py`` measures glibc's defaults instead (every large buffer mapped afresh each step).

``--quick``: batches of 64 on the CPU, 1 warm-up and 2 rounds of 1 step (under a minute). The last
printed line is a JSON object (keys: ``train_speedup_spatial_temporal``,
``train_speedup_spatiotemporal``, ``train_speedup_lstm``, ``group_speedup``, ``samples_per_s_<family>``
(fast path) and ``samples_per_s_<family>_fp32``, ``gflops_<family>``, ``peak_fraction_<family>``,
``peak_gflops_fp32`` / ``_bf16`` (null where bfloat16 is emulated and not asked for), ``bf16_native``,
``precision``, ``device``, ...).

    python benchmarks/train.py --quick
    python benchmarks/train.py                 # batches of 256, 2 warm-up steps, 5 rounds of 3 steps
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from deepdraw.nn.checkpoints import resolve_device
from deepdraw.nn.group import Member, step_together
from deepdraw.nn.hostmem import reuse_freed_memory
from deepdraw.nn.models import build_model
from deepdraw.nn.precision import bf16_native, resolve_precision
from deepdraw.nn.train import TrainConfig, Trainer

MODELS = {
    "spatial_temporal": "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
    "spatiotemporal": "spatiotemporal_4_8-8-32-64_7272",
    "lstm": "lstm_3_8-16-16_256",
}
GROUP_MODEL = "spatiotemporal"
GROUP_SIZE = 5

logger = logging.getLogger("benchmarks.train")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # inputs on the scale of the data: lengths ~100 mm, velocities ~±50 mm/s
    x = torch.randn(batch, 25, 320, 2, generator=gen) * torch.tensor([10.0, 50.0]) + torch.tensor(
        [100.0, 0.0]
    )
    return x.to(device), torch.randint(0, 20, (batch,), generator=gen).to(device)


def _toy_file(path: Path, rows: int) -> Path:
    """A small PCRT file: the trainers need one to set up (their batches are given here)."""
    x, y = _batch(rows, torch.device("cpu"), seed=1)
    with h5py.File(path, "w") as f:
        f["spindle_info"] = x.numpy()
        f["label"] = y.numpy().astype(np.int64)
    return path


def _trainer(name: str, precision: str, seed: int, tmp: Path, device: torch.device) -> Trainer:
    cfg = TrainConfig(
        model=name,
        train_path=tmp / "toy.h5",
        out_dir=tmp / f"{name}_{precision}_{seed}",
        seed=seed,
        precision=precision,
        device=str(device),
        quiet=True,
        cache_gb=0.0,
    )
    t = Trainer(cfg)
    t.begin_epoch()
    return t


def _timed(fn, steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def flops_per_sample(name: str, batch: int = 32) -> float:
    """Forward + backward FLOPs of one training sample (reference model, ART head)."""
    model = build_model(name, "art", seed=0).train()
    x, y = _batch(batch, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b, 1, device) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def compare(name: str, precision: str, device: torch.device, tmp: Path, args) -> dict:
    """Reference vs fast path of one model: median samples/s over alternating rounds."""
    batch = args.batch // 2 if name.startswith("lstm") else args.batch  # the LSTM trains with 128
    x, y = _batch(batch, device)
    trainers = {
        "fp32": _trainer(name, "fp32", 1, tmp, device),
        "fast": _trainer(name, precision, 1, tmp, device),
    }
    for t in trainers.values():
        for _ in range(args.warmup):
            t.step(x, y)
    rates: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for k, t in trainers.items():
            rates[k].append(batch * args.steps / _timed(lambda t=t: t.step(x, y), args.steps, device))
    return {k: statistics.median(v) for k, v in rates.items()}


def group_rates(precision: str, device: torch.device, tmp: Path, args) -> dict:
    """5 seeds of ST-7272: one at a time (all threads) vs together (step_together), sequential
    (the default of train_group) and side by side in threads of one torch thread each."""
    name = MODELS[GROUP_MODEL]
    x, y = _batch(args.batch, device)
    members = [Member(_trainer(name, precision, s, tmp, device)) for s in range(1, GROUP_SIZE + 1)]
    total = torch.get_num_threads()
    n_threads = min(total, GROUP_SIZE) if device.type == "cpu" and precision != "fp32" else 1
    pool = ThreadPoolExecutor(max_workers=n_threads) if n_threads > 1 else None

    def alone():
        for m in members:
            m.trainer.step(x, y)

    def together():
        step_together(members, x, y, None)

    def threaded():
        torch.set_num_threads(max(1, total // n_threads))
        try:
            step_together(members, x, y, pool)
        finally:
            torch.set_num_threads(total)

    fns = {"alone": alone, "together": together}
    if pool is not None:
        fns["threaded"] = threaded
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for k, fn in fns.items():
            rates[k].append(GROUP_SIZE * args.batch * args.steps / _timed(fn, args.steps, device))
    if pool is not None:
        pool.shutdown()
    out = {k: statistics.median(v) for k, v in rates.items()}
    out["threads"] = n_threads
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="batches of 64 on CPU, 1 warm-up, 2 rounds of 1 step")
    p.add_argument("--batch", type=int, default=None, help="samples per batch (default 256)")
    p.add_argument("--steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per path")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--precision", default="auto", help="the fast path's precision (default auto)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--no-group", action="store_true", help="skip the group measurement")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("deepdraw").setLevel(logging.WARNING)
    device = resolve_device(args.device)
    if args.quick:
        args.steps, args.rounds, args.warmup = 1, 2, 1
    if args.batch is None:
        args.batch = 64 if args.quick and device.type == "cpu" else 256
    precision = resolve_precision(args.precision, device)
    # as the trainers do on the CPU (deepdraw.nn.hostmem), for both paths and the matmul peak alike;
    # DEEPDRAW_MALLOC=system measures glibc's defaults
    reused = device.type == "cpu" and reuse_freed_memory()
    result: dict = {"precision": precision, "host_allocator": "reuse" if reused else "system"}
    # an emulated bfloat16 product (a CPU without AVX512-BF16 or AMX) runs at ~2 GFLOP/s: its 2048^3
    # peak would take minutes, so it is timed only where bf16 is native or asked for
    timed_bf16 = bf16_native(device) or precision == "bf16"
    peak = {"fp32": matmul_gflops(torch.float32, device)}
    if timed_bf16:
        peak["bf16"] = matmul_gflops(torch.bfloat16, device)
    result["peak_gflops_fp32"] = round(peak["fp32"], 1)
    result["peak_gflops_bf16"] = round(peak["bf16"], 1) if timed_bf16 else None
    result["bf16_native"] = bf16_native(device)
    fast_peak = peak["bf16"] if precision == "bf16" else peak["fp32"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _toy_file(tmp / "toy.h5", 64)
        for family in args.models:
            name = MODELS[family]
            r = compare(name, precision, device, tmp, args)
            gf = flops_per_sample(name) / 1e9
            result[f"samples_per_s_{family}"] = round(r["fast"], 1)
            result[f"samples_per_s_{family}_fp32"] = round(r["fp32"], 1)
            result[f"train_speedup_{family}"] = round(r["fast"] / r["fp32"], 2)
            result[f"gflop_per_sample_{family}"] = round(gf, 4)
            result[f"gflops_{family}"] = round(gf * r["fast"], 1)
            result[f"gflops_{family}_fp32"] = round(gf * r["fp32"], 1)
            result[f"peak_fraction_{family}"] = round(gf * r["fast"] / fast_peak, 3)
            logger.info(
                "%-16s fp32 %8.1f  %s %8.1f samples/s  (x%.2f, %.1f GFLOP/s, %.0f %% of the %s matmul)",
                family, r["fp32"], precision, r["fast"], r["fast"] / r["fp32"], gf * r["fast"],
                100 * gf * r["fast"] / fast_peak, "bf16" if precision == "bf16" else "fp32",
            )  # fmt: skip
        if not args.no_group:
            g = group_rates(precision, device, tmp, args)
            result["group_samples_per_s"] = round(g["together"], 1)
            result["group_alone_samples_per_s"] = round(g["alone"], 1)
            result["group_speedup"] = round(g["together"] / g["alone"], 2)
            result["group_models"] = GROUP_SIZE
            if "threaded" in g:
                result["group_threaded_samples_per_s"] = round(g["threaded"], 1)
                result["group_speedup_threaded"] = round(g["threaded"] / g["alone"], 2)
                result["group_threads"] = g["threads"]
            logger.info(
                "group of %d %s: alone %.1f, together %.1f, side by side in %d threads %.1f samples/s",
                GROUP_SIZE, GROUP_MODEL, g["alone"], g["together"], g["threads"], g.get("threaded", float("nan")),
            )  # fmt: skip
    result["device"] = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    result.update(batch=args.batch, steps=args.steps, rounds=args.rounds, torch=str(torch.__version__))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
