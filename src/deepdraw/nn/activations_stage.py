"""The activations stage, ``deepdraw activations``: every trained model (``best.pt``) and untrained
control (``untrained.pt``) of the train table run on one seeded subset of the test file.

- :func:`activation_indices`: the subset's rows, drawn with ``SeedSequence(run.seed, spawn_key=(6,))``.
- :func:`run_activations`: one file per model, ``activations/<name>.h5`` (untrained names end in ``r``;
  TDT-PV files in ``activations/tdt_pv/``); a file of the same model, checkpoint and rows is kept.
- :func:`activation_paths`: the files it writes.

The file layout is :mod:`deepdraw.nn.activations`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deepdraw import store
from deepdraw.contracts import SEED_STREAM_ACTIVATIONS
from deepdraw.errors import DeepDrawError
from deepdraw.nn.plan import planned_runs, task_dir
from deepdraw.nn.runio import train_device
from deepdraw.paths import RunPaths
from deepdraw.settings import Config

__all__ = ["activation_indices", "activation_paths", "run_activations"]

logger = logging.getLogger("deepdraw.nn.stage")  # the activations stage's logger name, as before the split


def activation_indices(cfg: Config, n_test: int) -> np.ndarray:
    """Sorted rows of the test file whose activations are extracted, the same for every model.

    ``[activations] n_samples`` rows drawn without replacement with
    ``SeedSequence(run.seed, spawn_key=(6,))``; all rows when the file is not larger (or n_samples <= 0).
    """
    n_test = int(n_test)
    if n_test < 1:
        raise DeepDrawError(f"activation_indices: the test file has {n_test} rows; expected at least one")
    k = int(cfg.activations.n_samples)
    if k <= 0 or k >= n_test:
        return np.arange(n_test, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.run.seed, spawn_key=(SEED_STREAM_ACTIVATIONS,)))
    return np.sort(rng.choice(n_test, size=k, replace=False)).astype(np.int64)


def _activation_file(cfg: Config, name: str, task: str) -> Path:
    return task_dir(RunPaths.of(cfg).activations, task) / f"{name}.h5"


def _activation_jobs(cfg: Config, table: pd.DataFrame | None) -> list[tuple[Path, Path, str]]:
    """``(checkpoint, activations file, model name)`` for every row of the train table."""
    if table is None:
        jobs = []
        for r in planned_runs(cfg):
            jobs.append((r.checkpoint(True), _activation_file(cfg, r.name, r.task), r.name))
            jobs.append(
                (r.checkpoint(False), _activation_file(cfg, r.untrained_name, r.task), r.untrained_name)
            )
        return jobs
    missing = {"model", "task", "checkpoint"} - set(table.columns)
    if missing:
        raise DeepDrawError(f"run_activations: the train table lacks columns {sorted(missing)}")
    jobs = []
    for _, row in table.iterrows():
        ck = Path(row["checkpoint"])
        ck = ck if ck.is_absolute() else Path(cfg.out_dir) / ck
        jobs.append((ck, _activation_file(cfg, str(row["model"]), str(row["task"])), str(row["model"])))
    return jobs


def activation_paths(cfg: Config) -> list[Path]:
    """The activations files :func:`run_activations` writes for ``cfg`` (two per planned run)."""
    return [out for _, out, _ in _activation_jobs(cfg, None)]


def _up_to_date(path: Path, name: str, idx: np.ndarray, checkpoint: Path) -> bool:
    """Same model name, same sample rows and the same checkpoint bytes (a resumed training rewrites it)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            same = np.array_equal(f["sample_index"][()], idx)
            held = f.attrs.get("model_name")
            held = held.decode() if isinstance(held, bytes) else held
            sha = f.attrs.get("checkpoint_sha256", "")
            sha = sha.decode() if isinstance(sha, bytes) else sha
    except (OSError, KeyError):
        return False
    return bool(same and held == name and sha == store.file_sha256(checkpoint))


def run_activations(cfg: Config, table: pd.DataFrame | None = None) -> list[Path]:
    """Activations of every model of the train table on the seeded test subset; the files written.

    ``table`` defaults to the planned runs of ``cfg`` (the rows of ``models/summary.csv``): trained models
    from ``best.pt``, untrained controls from ``untrained.pt``. An existing file with the same model and
    sample rows is kept; one with other rows is rewritten.
    """
    from deepdraw.nn.data import check_pcrt
    from deepdraw.nn.train import extract_activations

    rp = RunPaths.of(cfg)
    if not rp.pcrt_test.is_file():
        raise DeepDrawError(
            f"{rp.pcrt_test}: PCRT test file not found; run 'deepdraw dataset assemble' first"
        )
    if cfg.activations.batch_size < 1:
        raise DeepDrawError(
            f"activations.batch_size is {cfg.activations.batch_size}; expected a positive integer"
        )
    device = train_device(cfg.train.device)
    jobs = _activation_jobs(cfg, table)
    for ck, _, name in jobs:
        if not ck.is_file():
            raise DeepDrawError(f"{ck}: checkpoint of '{name}' not found; run 'deepdraw train' first")
    idx = activation_indices(cfg, check_pcrt(rp.pcrt_test))
    out: list[Path] = []
    for ck, path, name in tqdm(jobs, desc="activations", unit="model", disable=cfg.run.quiet):
        if _up_to_date(path, name, idx, ck):
            logger.info("%s: up to date, skipped", path)
        else:
            if path.exists():
                logger.warning("%s: other model, checkpoint or sample rows; rewritten", path)
            extract_activations(
                ck,
                rp.pcrt_test,
                idx,
                path,
                cfg.activations.batch_size,
                device=device,
                overwrite=True,
                quiet=True,
                expected=name,
                config=cfg.to_dict(["activations"]),
                seeds={"seed": cfg.run.seed, "spawn_key": [SEED_STREAM_ACTIVATIONS]},
            )
        out.append(path)
    return out
