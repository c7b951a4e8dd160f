"""Parallel execution of independent tasks (shards, SVM pairs, search candidates) on Dask.

Three modes, chosen by ``[parallel]`` in the config or the CLI flags ``--sync``, ``--workers N`` and
``--scheduler ADDRESS``:

* ``local`` (default): a :class:`distributed.LocalCluster` of one single-threaded worker process per
  core (or ``workers``), started for the command and closed after it;
* ``scheduler``: connect to an existing Dask scheduler (a cluster started by hand, or by
  ``dask-jobqueue`` on SLURM: see ``docs/parallel.md``);
* ``sync``: run every task in this process, in order (for debugging and profiling).

Tasks must be top-level functions with picklable arguments. Results come back in task order, whatever
the number of workers; each task seeds itself from its arguments (never from global state), so the
output does not depend on the mode or the number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from .config import ParallelConfig
from .errors import DeepDrawError

log = logging.getLogger(__name__)


class Executor:
    """Runs ``fn(item)`` for every item; see :func:`executor`."""

    def __init__(self, client: Any | None, quiet: bool = False) -> None:
        self.client = client
        self.quiet = quiet

    @property
    def n_workers(self) -> int:
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self, fn: Callable[..., Any], items: Sequence[Any], desc: str = "tasks", **kwargs: Any
    ) -> list[Any]:
        """Apply ``fn(item, **kwargs)`` to every item; results in the order of ``items``.

        The first task that raises cancels the rest and its exception propagates.
        """
        items = list(items)
        results: list[Any] = [None] * len(items)
        if not items:
            return results
        bar = tqdm(total=len(items), desc=desc, disable=self.quiet, unit="task", leave=False)
        try:
            if self.client is None:
                for i, it in enumerate(items):
                    results[i] = fn(it, **kwargs)
                    bar.update()
                return results
            from distributed import as_completed

            futures = self.client.map(fn, items, pure=False, **kwargs)
            index = {f.key: i for i, f in enumerate(futures)}
            try:
                for fut in as_completed(futures):
                    results[index[fut.key]] = fut.result()
                    bar.update()
            except BaseException:
                self.client.cancel(futures)
                raise
            return results
        finally:
            bar.close()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS/OpenMP pools to one thread inside the block (as in a Dask worker).

    Dask's nanny starts workers with ``OMP_NUM_THREADS=1`` and friends; the synchronous mode runs in the
    calling process, whose BLAS may use many threads (``os.cpu_count()`` of the host in a container) and
    round a matrix product differently. Tasks whose bytes must not depend on the mode run in this block.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _n_local_workers(cfg: ParallelConfig) -> int:
    return cfg.workers if cfg.workers > 0 else (os.cpu_count() or 1)


@contextmanager
def executor(cfg: ParallelConfig, quiet: bool = False):
    """Context manager yielding an :class:`Executor` for the configured mode."""
    if cfg.mode == "sync":
        yield Executor(None, quiet)
        return
    from distributed import Client, LocalCluster

    if cfg.mode == "scheduler":
        try:
            client = Client(cfg.scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise DeepDrawError(
                f"parallel.scheduler: cannot reach the Dask scheduler at {cfg.scheduler!r}: {e}"
            ) from None
        log.info(
            "using Dask scheduler %s (%d workers)", cfg.scheduler, len(client.scheduler_info()["workers"])
        )
        try:
            yield Executor(client, quiet)
        finally:
            client.close()
        return
    n = _n_local_workers(cfg)
    for name in ("distributed", "distributed.core", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)  # keep the user's terminal readable
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        memory_limit=cfg.memory_limit,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    log.info("local Dask cluster with %d worker processes", n)
    try:
        yield Executor(client, quiet)
    finally:
        client.close()
        cluster.close()


def apply_cli_overrides(
    cfg: ParallelConfig, workers: int | None, scheduler: str | None, sync: bool
) -> ParallelConfig:
    """Return a copy of ``cfg`` with the CLI flags applied."""
    import dataclasses

    out = dataclasses.replace(cfg)
    if workers is not None:
        if workers < 1:
            raise DeepDrawError(f"--workers is {workers}; expected a positive integer")
        out.workers = workers
        if out.mode == "sync":
            out.mode = "local"
    if scheduler:
        out.mode, out.scheduler = "scheduler", scheduler
    if sync:
        out.mode = "sync"
    return out
