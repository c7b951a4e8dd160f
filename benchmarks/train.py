"""Training throughput (samples/s) of the three analysed architectures on random input.

Models: S ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``, ST ``spatiotemporal_4_8-8-32-64_7272`` and
``lstm_3_8-16-16_256`` with the ART head (dropout, cross-entropy), Adam, batches of 256 (``--batch``),
timed after a warm-up on the available device (CUDA when present). ``--quick``: one warm-up and two timed
batches per model (on CPU, batches of 64). The last printed line is a JSON
object with ``samples_per_s_spatial_temporal``, ``samples_per_s_spatiotemporal``, ``samples_per_s_lstm``
and ``device``.

    python benchmarks/train.py --quick
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch
import torch.nn.functional as F

from deepdraw.nn.models import build_model
from deepdraw.nn.train import resolve_device

MODELS = {
    "spatial_temporal": "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
    "spatiotemporal": "spatiotemporal_4_8-8-32-64_7272",
    "lstm": "lstm_3_8-16-16_256",
}

logger = logging.getLogger("benchmarks.train")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def samples_per_second(name: str, device: torch.device, batch: int, steps: int, warmup: int) -> float:
    """Training samples per second of model ``name`` (forward, backward, Adam step) on random input."""
    model = build_model(name, "art", seed=0).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    gen = torch.Generator().manual_seed(0)
    # inputs on the scale of the data: lengths ~100 mm, velocities ~±50 mm/s
    x = torch.randn(batch, 25, 320, 2, generator=gen) * torch.tensor([10.0, 50.0]) + torch.tensor(
        [100.0, 0.0]
    )
    x, y = x.to(device), torch.randint(0, 20, (batch,), generator=gen).to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 warm-up batch and 2 timed batches per model; on CPU batches of 64 unless --batch is given",
    )
    p.add_argument("--batch", type=int, default=None, help="samples per batch (default 256)")
    p.add_argument("--steps", type=int, default=10, help="timed batches per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches per model")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    steps, warmup = (2, 1) if args.quick else (args.steps, args.warmup)
    device = resolve_device(args.device)
    if args.batch is None:
        args.batch = 64 if args.quick and device.type == "cpu" else 256
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    result: dict = {}
    for family in args.models:
        sps = samples_per_second(MODELS[family], device, args.batch, steps, warmup)
        result[f"samples_per_s_{family}"] = round(sps, 1)
        logger.info("%-16s %-48s %10.1f samples/s", family, MODELS[family], sps)
    result["device"] = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    result.update(batch=args.batch, timed_batches=steps, warmup_batches=warmup, torch=str(torch.__version__))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
