"""Streaming mini-batches from PCRT HDF5 files.

A file holds ``spindle_info`` (N, 25 muscles, 320 frames, 2) — muscle length (mm) and velocity (mm/s) —
plus ``label`` (N,) in 0..19 and ``endeffector_coords`` (N, 3, 320) cm. A :class:`BatchStream` reads a
row range ``[start, stop)`` in contiguous blocks of ``chunk_rows`` rows: each epoch shuffles the block
order and the rows inside each block with ``np.random.default_rng([seed, epoch])`` (so an epoch's order
depends only on the seed and the epoch number, which makes resumed runs identical), and cuts the resulting
sequence into batches, which may span two blocks. The next block is read in a background thread while
the current one is used.

When the rows fit ``cache_bytes`` they are read once (in blocks) into a float32 tensor on the device and
batches are gathered from it in exactly the same order as the streamed path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from deepdraw.contracts import N_CLASSES
from deepdraw.errors import DeepDrawError
from deepdraw.nn.models.networks import INPUT_SHAPE
from deepdraw.nn.targets import TargetSpec

__all__ = ["INPUT_KEY", "open_pcrt", "check_pcrt", "epoch_plan", "BatchStream", "read_rows"]

logger = logging.getLogger(__name__)

INPUT_KEY = "spindle_info"


def open_pcrt(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, with a clear error when it is missing or not HDF5."""
    p = Path(path)
    if not p.is_file():
        raise DeepDrawError(f"PCRT file {p} does not exist.")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise DeepDrawError(f"PCRT file {p} is not a readable HDF5 file ({exc}).") from None


def check_pcrt(
    path: str | os.PathLike,
    task: str | None = None,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    rows: tuple[int, int] | None = None,
) -> int:
    """Validate a PCRT file for ``task`` (None: input only) and return its number of rows.

    Raises :class:`DeepDrawError` naming the file and key when ``spindle_info`` is missing or not
    ``(N, *input_shape)``, when the task's target is missing or mis-shaped, or when labels leave 0..19.
    """
    with open_pcrt(path) as f:
        if INPUT_KEY not in f:
            raise DeepDrawError(
                f"PCRT file {path} has no dataset '{INPUT_KEY}'; expected (N, {', '.join(map(str, input_shape))}) "
                "muscle length (mm) and velocity (mm/s)."
            )
        ds = f[INPUT_KEY]
        if ds.ndim != 4 or tuple(ds.shape[1:]) != tuple(input_shape):
            raise DeepDrawError(
                f"PCRT file {path}: dataset '{INPUT_KEY}' has shape {ds.shape}; expected "
                f"(N, {', '.join(map(str, input_shape))}) (muscles, frames, channels)."
            )
        n = int(ds.shape[0])
        a, b = rows if rows is not None else (0, n)
        if task == "art":
            if "label" not in f:
                raise DeepDrawError(f"PCRT file {path} has no dataset 'label'; expected (N,) ints in 0..19.")
            lab = f["label"]
            if lab.shape != (n,):
                raise DeepDrawError(
                    f"PCRT file {path}: dataset 'label' has shape {lab.shape}; expected ({n},)."
                )
            values = lab[a:b]
            if values.size and (values.min() < 0 or values.max() >= N_CLASSES):
                raise DeepDrawError(
                    f"PCRT file {path}: dataset 'label' holds values {int(values.min())}..{int(values.max())}; "
                    "expected 0..19 (the original's 1..20 minus 1)."
                )
        elif task in ("tdt", "tdt_pv"):
            if "endeffector_coords" not in f:
                raise DeepDrawError(
                    f"PCRT file {path} has no dataset 'endeffector_coords'; expected (N, 3, {input_shape[1]}) cm."
                )
            ee = f["endeffector_coords"]
            if tuple(ee.shape) != (n, 3, input_shape[1]):
                raise DeepDrawError(
                    f"PCRT file {path}: dataset 'endeffector_coords' has shape {ee.shape}; "
                    f"expected ({n}, 3, {input_shape[1]})."
                )
    return n


def epoch_plan(
    start: int, stop: int, chunk_rows: int, shuffle: bool, seed: int, epoch: int
) -> list[tuple[int, int, np.ndarray]]:
    """Blocks ``(a, b, order)`` of one epoch: rows ``a + order`` are visited in this sequence."""
    bounds = [(a, min(a + chunk_rows, stop)) for a in range(start, stop, chunk_rows)]
    if not shuffle:
        return [(a, b, np.arange(b - a)) for a, b in bounds]
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(len(bounds))
    return [(bounds[i][0], bounds[i][1], rng.permutation(bounds[i][1] - bounds[i][0])) for i in order]


def read_rows(f: h5py.File, path, a: int, b: int, targets: TargetSpec | None):
    """Rows ``[a, b)``: inputs (n, 25, 320, 2) float32 (checked finite) and targets (or None)."""
    x = np.asarray(f[INPUT_KEY][a:b], dtype=np.float32)
    if not np.isfinite(x).all():
        bad = a + int(np.argwhere(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0, 0])
        raise DeepDrawError(
            f"PCRT file {path}: dataset '{INPUT_KEY}' row {bad} holds NaN or inf; expected finite values."
        )
    y = None if targets is None else targets(f[targets.key][a:b])
    return x, y


class BatchStream:
    """Mini-batches ``(x [B, 25, 320, 2] float32, y)`` of rows ``[start, stop)`` of a PCRT file.

    ``y``: ``art`` labels [B] int64; ``tdt`` [B, frames', 3]; ``tdt_pv`` [B, frames', 6] (scaled).
    ``drop_last`` drops a final partial batch (unless it would be the only one).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rows: tuple[int, int],
        batch_size: int,
        targets: TargetSpec | None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        chunk_rows: int = 2048,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        cache_bytes: int = 0,
        quiet: bool = True,
    ) -> None:
        self.path = Path(path)
        self.start, self.stop = int(rows[0]), int(rows[1])
        self.batch_size = int(batch_size)
        self.targets = targets
        self.shuffle = shuffle
        self.seed = int(seed)
        self.chunk_rows = max(int(chunk_rows), 1)
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.quiet = quiet
        self.n = self.stop - self.start
        per_row = int(np.prod(INPUT_SHAPE)) * 4 + 6 * INPUT_SHAPE[1] * 4
        self.cached = self.n > 0 and self.n * per_row <= int(cache_bytes)
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + int(rest > 0 and (not self.drop_last or full == 0))

    # ---- cache
    def _load_cache(self) -> None:
        logger.info("caching rows %d..%d of %s on %s", self.start, self.stop, self.path, self.device)
        # filled block by block in place: the cache never needs twice its size
        self._x = self._y = None
        with open_pcrt(self.path) as f:
            blocks = range(self.start, self.stop, self.chunk_rows)
            for a in tqdm(blocks, desc=f"cache {self.path.name}", disable=self.quiet, leave=False):
                b = min(a + self.chunk_rows, self.stop)
                x, y = read_rows(f, self.path, a, b, self.targets)
                if self._x is None:
                    self._x = torch.empty((self.n, *x.shape[1:]), dtype=torch.float32, device=self.device)
                self._x[a - self.start : b - self.start] = torch.from_numpy(x)
                if y is not None:
                    yt = torch.from_numpy(y)
                    if self._y is None:
                        self._y = torch.empty((self.n, *yt.shape[1:]), dtype=yt.dtype, device=self.device)
                    self._y[a - self.start : b - self.start] = yt

    # ---- iteration
    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Batches of one epoch (order from ``seed`` and ``epoch`` only)."""
        plan = epoch_plan(self.start, self.stop, self.chunk_rows, self.shuffle, self.seed, epoch)
        n_batches = len(self)
        if self.cached:
            if self._x is None:
                self._load_cache()
            flat = (
                np.concatenate([a - self.start + order for a, _, order in plan])
                if plan
                else np.zeros(0, np.int64)
            )
            idx = torch.from_numpy(flat).to(self.device)
            x_all = self._x
            assert x_all is not None  # filled by _load_cache
            for i in range(n_batches):
                sel = idx[i * self.batch_size : (i + 1) * self.batch_size]
                yield x_all[sel], (None if self._y is None else self._y[sel])
            return
        yield from self._stream(plan, n_batches)

    def __iter__(self):
        return self.epoch(0)

    def _to_dev(self, a: np.ndarray | None) -> torch.Tensor | None:
        if a is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, non_blocking=True)

    def _stream(self, plan, n_batches: int):
        emitted = 0
        carry_x = carry_y = None
        with open_pcrt(self.path) as f, ThreadPoolExecutor(max_workers=1) as pool:

            def load(block):
                a, b, order = block
                x, y = read_rows(f, self.path, a, b, self.targets)
                return x[order], (None if y is None else y[order])

            future = pool.submit(load, plan[0]) if plan else None
            for i in range(len(plan)):
                assert future is not None  # submitted for every block of the plan
                x, y = future.result()
                future = pool.submit(load, plan[i + 1]) if i + 1 < len(plan) else None
                if carry_x is not None:
                    x = np.concatenate([carry_x, x])
                    y = None if y is None else np.concatenate([carry_y, y])
                n_full = len(x) // self.batch_size
                for j in range(n_full):
                    if emitted == n_batches:
                        break
                    s = slice(j * self.batch_size, (j + 1) * self.batch_size)
                    yield self._to_dev(x[s]), self._to_dev(None if y is None else y[s])
                    emitted += 1
                rest = slice(n_full * self.batch_size, len(x))
                carry_x, carry_y = x[rest], (None if y is None else y[rest])
            if carry_x is not None and len(carry_x) and emitted < n_batches:
                yield self._to_dev(carry_x), self._to_dev(carry_y)
