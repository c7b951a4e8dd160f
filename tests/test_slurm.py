"""SLURM through dask-jobqueue (job script from the config) and one GPU per Dask worker."""

from __future__ import annotations

import dataclasses
import time

import pytest

from deepdraw import parallel
from deepdraw.config import ParallelConfig, config_from_dict
from deepdraw.errors import DeepDrawError

SLURM = {
    "mode": "slurm",
    "queue": "gpu",
    "account": "lab42",
    "cores": 8,
    "memory": "64GB",
    "walltime": "1-04:00:00",
    "jobs": 3,
    "gpus": 4,
    "job_directives": ["--qos=long", "--constraint=a100"],
    "job_prologue": ["module load cuda/12.4", "source ~/venvs/deepdraw/bin/activate"],
    "log_dir": "logs/slurm",
    "python": "apptainer exec --nv deepdraw.sif python",
}


def _script(p: ParallelConfig) -> str:
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**parallel.slurm_options(p), scheduler_options={"dashboard_address": None})
    try:
        return cluster.job_script()  # no SLURM needed: nothing is submitted before scale()
    finally:
        cluster.close()


def test_job_script_follows_the_config():
    cfg = config_from_dict({"parallel": SLURM})
    text = _script(cfg.parallel)
    lines = text.splitlines()
    for directive in (
        "#SBATCH -p gpu",
        "#SBATCH -A lab42",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=60G",  # 64 GB = 59.6 GiB, as dask-jobqueue writes it
        "#SBATCH -t 1-04:00:00",
        "#SBATCH --gres=gpu:4",
        "#SBATCH --qos=long",
        "#SBATCH --constraint=a100",
        "#SBATCH -J deepdraw",
    ):
        assert directive in lines, (directive, text)
    assert any(x.startswith("#SBATCH -e logs/slurm/") for x in lines)
    assert lines.index("module load cuda/12.4") < lines.index("source ~/venvs/deepdraw/bin/activate")
    worker = next(x for x in lines if "distributed.cli.dask_worker" in x)
    assert "--nworkers 4" in worker and "--nthreads 2" in worker and "--resources GPU=1" in worker
    assert "--memory-limit 14.90GiB" in worker  # the job's memory shared by its 4 workers
    assert worker.startswith("apptainer exec --nv deepdraw.sif python -m distributed.cli.dask_worker")


def test_job_script_without_gpus():
    p = config_from_dict({"parallel": {"mode": "slurm", "cores": 16, "memory": "32GB", "jobs": 2}}).parallel
    text = _script(p)
    assert (
        "--gres" not in text and "GPU=1" not in text and "#SBATCH -p" not in text and "#SBATCH -A" not in text
    )
    assert "--nworkers 16" in text and "--nthreads 1" in text and "#SBATCH -t 01:00:00" in text
    p2 = dataclasses.replace(p, processes=4)
    assert "--nworkers 4" in _script(p2) and "--nthreads 4" in _script(p2)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"walltime": "4h"}, r"'parallel.walltime' is '4h'; expected a SLURM time limit"),
        ({"memory": "lots"}, r"'parallel.memory' is 'lots'; expected a size"),
        ({"cores": 0}, r"'parallel.cores' is 0; expected a positive integer"),
        ({"jobs": 0}, r"'parallel.jobs' is 0"),
        ({"gpus": 4, "processes": 2, "cores": 8}, r"'parallel.processes' is 2 but parallel.gpus is 4"),
        ({"gpus": 4, "cores": 2}, r"'parallel.cores' is 2, fewer than the 4 worker processes"),
        ({"gpus": 1, "job_directives": ["--gres=gpu:1"]}, r"job_directives' requests GPUs itself"),
        ({"job_prologue": ["a\nb"]}, r"job_prologue' holds 'a\\nb'"),
        ({"gpus": -1}, r"'parallel.gpus' is -1; expected 0 or more"),
    ],
)
def test_slurm_keys_are_checked(values, message):
    with pytest.raises(DeepDrawError, match=message):
        config_from_dict({"parallel": {"mode": "slurm", **values}}, "c.toml")


def test_slurm_keys_unchecked_outside_slurm_mode():
    assert config_from_dict({"parallel": {"walltime": "4h"}}).parallel.mode == "local"


def _which_device(i: int) -> tuple[str, str | None]:
    from distributed import get_worker

    time.sleep(0.1)
    return str(get_worker().name), parallel.task_device()


def test_each_worker_gets_its_own_gpu():
    """A local cluster of two workers declaring a (fake) GPU each: every GPU task is given its worker's
    GPU, both GPUs are used; tasks mapped without gpu=True are given none."""
    cfg = ParallelConfig(mode="local", gpus=2, memory_limit="1GB")
    with parallel.executor(cfg, quiet=True) as ex:
        assert ex.n_workers == 2 and ex.gpus == 2
        got = ex.map(_which_device, range(8), gpu=True)
        plain = ex.map(_which_device, range(2))
    assert {name: dev for name, dev in got} == {"0": "cuda:0", "1": "cuda:1"}
    assert all(dev is None for _, dev in plain)
    assert parallel.task_device() is None  # nothing leaks into this process


def test_worker_gpu_from_the_worker_name(monkeypatch):
    import distributed

    class W:
        def __init__(self, name, gpu):
            self.name = name
            self.state = type("S", (), {"total_resources": {"GPU": 1} if gpu else {}})()

    for name, gpus, want in [
        ("deepdraw-3-0", 4, "cuda:0"),
        ("deepdraw-3-2", 4, "cuda:2"),
        ("deepdraw-7", 1, "cuda:0"),
        (5, 2, "cuda:1"),
    ]:
        monkeypatch.setattr(distributed, "get_worker", lambda n=name: W(n, True))
        assert parallel.worker_gpu(gpus) == want
    monkeypatch.setattr(distributed, "get_worker", lambda: W("deepdraw-3-2", False))
    assert parallel.worker_gpu(4) is None  # a worker without a GPU resource
    assert parallel.worker_gpu(0) is None


def test_training_task_takes_its_workers_gpu():
    from deepdraw.nn.train import TrainConfig
    from deepdraw.nn.train_stage import _on_task_device

    tc = TrainConfig(model="m", train_path="a", test_path="b", out_dir="o", device=None)
    assert _on_task_device(tc) is tc  # outside a GPU task: unchanged
    token = parallel._TASK_DEVICE.set("cuda:3")
    try:
        assert _on_task_device(tc).device == "cuda:3"
        assert _on_task_device(dataclasses.replace(tc, device="cuda")).device == "cuda:3"
        assert (
            _on_task_device(dataclasses.replace(tc, device="cpu")).device == "cpu"
        )  # an explicit choice stays
    finally:
        parallel._TASK_DEVICE.reset(token)


def test_slurm_mode_builds_the_cluster_from_the_config(monkeypatch):
    """executor() in mode "slurm" passes slurm_options to SLURMCluster and submits `jobs` jobs (here a
    LocalCluster stands in for SLURM, which this machine lacks)."""
    import dask_jobqueue
    from distributed import LocalCluster

    calls = {}

    class FakeSLURM(LocalCluster):
        def __init__(self, **kwargs):
            calls["kwargs"] = kwargs
            super().__init__(
                n_workers=1,
                threads_per_worker=1,
                memory_limit="1GB",
                dashboard_address=None,
                resources={"GPU": 1},
            )

        def scale(self, n=0, jobs=None, **kw):
            if jobs is None:  # scale(0) when closing
                return super().scale(n, **kw)
            calls["jobs"] = jobs

    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", FakeSLURM)
    cfg = config_from_dict({"parallel": SLURM}).parallel
    with parallel.executor(cfg, quiet=True) as ex:
        assert ex.map(_square, [1, 2, 3], gpu=True) == [1, 4, 9]
    assert calls == {"kwargs": parallel.slurm_options(cfg), "jobs": 3}


def _square(x: int) -> int:
    return x * x
