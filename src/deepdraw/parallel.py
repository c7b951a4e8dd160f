"""Parallel execution of independent tasks (shards, SVM pairs, search candidates, training runs) on Dask.

Four modes, chosen by ``[parallel]`` in the config or the CLI flags ``--sync``, ``--workers N`` and
``--scheduler ADDRESS``; :func:`executor` is the one place that builds a cluster:

* ``local`` (default): a :class:`distributed.LocalCluster` of one single-threaded worker process per
  core (or ``workers``; one per GPU with ``gpus``), started for the command and closed after it;
* ``slurm``: a ``dask_jobqueue.SLURMCluster`` of ``jobs`` batch jobs (queue, account, cores, memory,
  walltime, GPUs, extra directives from ``[parallel]``: :func:`slurm_options`), submitted for the
  command and cancelled after it;
* ``scheduler``: connect to an existing Dask scheduler (a cluster started by hand: ``docs/parallel.md``);
* ``sync``: run every task in this process, in order (for debugging and profiling).

GPUs: with ``parallel.gpus`` the workers declare the Dask resource ``GPU=1`` and tasks mapped with
``gpu=True`` (training, search candidates) request it, so a worker runs one of them at a time; each
task learns its worker's own GPU from :func:`task_device` (``cuda:N``, N = the worker's rank on its
machine or job modulo ``gpus``), so the workers of a multi-GPU node use different GPUs.

Tasks must be top-level functions with picklable arguments. Results come back in task order, whatever
the number of workers; each task seeds itself from its arguments (never from global state), so the
output does not depend on the mode or the number of workers.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tqdm.auto import tqdm

from .errors import DeepDrawError
from .settings import ParallelConfig

log = logging.getLogger(__name__)


class Executor:
    """Runs ``fn(item)`` for every item; see :func:`executor`."""

    def __init__(self, client: Any | None, quiet: bool = False, gpus: int = 0) -> None:
        self.client = client
        self.quiet = quiet
        self.gpus = gpus  # GPUs per machine / job: tasks mapped with gpu=True request one

    @property
    def n_workers(self) -> int:
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        desc: str = "tasks",
        gpu: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Apply ``fn(item, **kwargs)`` to every item; results in the order of ``items``.

        ``gpu``: on a cluster with ``gpus``, each task requests the resource ``GPU=1`` and runs with
        :func:`task_device` set to its worker's GPU. The first task that raises cancels the rest and its
        exception propagates.
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

            resources = None
            if gpu and self.gpus > 0:
                fn, resources = functools.partial(_on_worker_gpu, fn=fn, gpus=self.gpus), {"GPU": 1}
            futures = self.client.map(fn, items, pure=False, resources=resources, **kwargs)
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


_TASK_DEVICE: ContextVar[str | None] = ContextVar("deepdraw_task_device", default=None)


def task_device() -> str | None:
    """The GPU (``"cuda:N"``) given to the running task by ``Executor.map(..., gpu=True)``; None outside
    such a task (in-process runs, workers without a GPU resource)."""
    return _TASK_DEVICE.get()


def worker_gpu(gpus: int) -> str | None:
    """This Dask worker's own GPU: ``cuda:(rank % gpus)``, where rank is the number that ends the
    worker's name (a LocalCluster names its workers 0, 1, ...; ``dask worker --nworkers k``, as
    dask-jobqueue starts them, NAME-0 ... NAME-(k-1)). None outside a worker, or on a worker that
    declares no ``GPU`` resource."""
    if gpus < 1:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    if not worker.state.total_resources.get("GPU"):
        return None
    m = re.search(r"(\d+)$", str(worker.name))
    return f"cuda:{(int(m.group(1)) if m else 0) % gpus}"


def _on_worker_gpu(item: Any, fn: Callable[..., Any], gpus: int, **kwargs: Any) -> Any:
    """Run ``fn(item, **kwargs)`` with :func:`task_device` set to this worker's GPU (a Dask task)."""
    token = _TASK_DEVICE.set(worker_gpu(gpus))
    try:
        return fn(item, **kwargs)
    finally:
        _TASK_DEVICE.reset(token)


def _n_local_workers(cfg: ParallelConfig) -> int:
    return cfg.workers if cfg.workers > 0 else (cfg.gpus or os.cpu_count() or 1)


def _quiet_dask() -> None:
    for name in ("distributed", "distributed.core", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)  # keep the user's terminal readable


def local_cluster(cfg: ParallelConfig) -> Any:
    """The LocalCluster of mode "local": single-threaded worker processes, ``GPU=1`` each with gpus."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=_n_local_workers(cfg),
        threads_per_worker=1,
        processes=True,
        memory_limit=cfg.memory_limit,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        resources={"GPU": 1} if cfg.gpus else None,
    )


def slurm_options(cfg: ParallelConfig) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for the ``[parallel]`` SLURM keys.

    Each job asks for ``cores`` CPUs, ``memory`` and ``gpus`` GPUs (``--gres=gpu:N``) for ``walltime``
    on ``queue`` / ``account``, and starts ``processes`` workers (default: one per GPU, else one per
    core) that share its cores and memory; with GPUs each worker declares the resource ``GPU=1``.
    """
    n = cfg.processes or cfg.gpus or cfg.cores
    return {
        "queue": cfg.queue or None,
        "account": cfg.account or None,
        "cores": cfg.cores,
        "processes": n,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "job_name": "deepdraw",
        "job_extra_directives": [*([f"--gres=gpu:{cfg.gpus}"] if cfg.gpus else []), *cfg.job_directives],
        "job_script_prologue": list(cfg.job_prologue),
        "worker_extra_args": ["--resources", "GPU=1"] if cfg.gpus else [],
        "interface": cfg.interface or None,
        "log_directory": cfg.log_dir or None,
        **({"python": cfg.python} if cfg.python else {}),
    }


def slurm_cluster(cfg: ParallelConfig) -> Any:
    """The SLURMCluster of mode "slurm", with ``jobs`` jobs submitted (needs ``sbatch``)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - a dependency of deepdraw
        raise DeepDrawError("parallel.mode is 'slurm' but dask-jobqueue is not installed") from None
    cluster = SLURMCluster(**slurm_options(cfg))
    try:
        cluster.scale(jobs=cfg.jobs)
    except BaseException:
        cluster.close()
        raise
    log.info("SLURM: %d job(s) submitted; tasks start as their workers join", cfg.jobs)
    return cluster


def _connect(cfg: ParallelConfig) -> Any:
    from distributed import Client

    try:
        client = Client(cfg.scheduler, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise DeepDrawError(
            f"parallel.scheduler: cannot reach the Dask scheduler at {cfg.scheduler!r}: {e}"
        ) from None
    log.info("using Dask scheduler %s (%d workers)", cfg.scheduler, len(client.scheduler_info()["workers"]))
    return client


@contextmanager
def executor(cfg: ParallelConfig, quiet: bool = False):
    """Context manager yielding an :class:`Executor` for the configured mode (the one place where
    clusters are built and closed)."""
    if cfg.mode == "sync":
        yield Executor(None, quiet)
        return
    from distributed import Client

    cluster = client = None
    try:
        if cfg.mode == "scheduler":
            client = _connect(cfg)
        else:
            _quiet_dask()
            cluster = slurm_cluster(cfg) if cfg.mode == "slurm" else local_cluster(cfg)
            client = Client(cluster)
            if cfg.mode == "local":
                log.info("local Dask cluster with %d worker processes", _n_local_workers(cfg))
        yield Executor(client, quiet, gpus=cfg.gpus)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
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
