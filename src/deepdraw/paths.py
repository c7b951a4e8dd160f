"""Where the shipped inputs live, and the file names of a run's outputs.

The shipped data folder is found next to the package source (a git clone with ``pip install -e``) or
through ``DEEPDRAW_DATA`` (any other install). A run's outputs live under ``run.out_dir``; the layout is
fixed here, in one place, and documented in ``docs/formats.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DeepDrawError


def data_dir() -> Path:
    """The folder holding the shipped inputs (``data/`` of the repository)."""
    env = os.environ.get("DEEPDRAW_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "data" / "reference_model"
        if cand.is_dir():
            return parent / "data"
    raise DeepDrawError(
        "data/: shipped data folder not found; set DEEPDRAW_DATA to the repository's data/ folder"
    )


def osim_model() -> Path:
    """The MoBL-ARMS model shipped in ``data/reference_model``."""
    return data_dir() / "reference_model" / "MoBL_ARMS_module5_scaleIK.osim"


def original_startpoints() -> Path:
    """DeepDraw's start points (``pcr_startingpoints.hdf5``)."""
    return data_dir() / "reference_model" / "pcr_startingpoints.hdf5"


SUMMARY_NAME = "summary.json"
"""The summary a stage with a results folder (svm, rsa, tuning) writes last: its headline values and
every figure it wrote (paths), so the report shows exactly that run's figures."""


def stage_summary(folder: Path) -> Path:
    """The :data:`SUMMARY_NAME` file of a stage's results folder."""
    return Path(folder) / SUMMARY_NAME


class RunPaths:
    """File names of one run's outputs, all under ``root``; the dataset under ``root/dataset`` unless
    ``dataset`` names another folder (``[run] dataset_dir``: a run that analyses another run's dataset)."""

    def __init__(self, root: str | os.PathLike, dataset: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self._dataset = Path(dataset) if dataset else None

    @classmethod
    def of(cls, cfg) -> RunPaths:
        """The paths of config ``cfg`` (``run.out_dir``, ``run.dataset_dir``)."""
        return cls(cfg.out_dir, getattr(cfg.run, "dataset_dir", "") or None)

    @property
    def dataset(self) -> Path:
        return self._dataset if self._dataset is not None else self.root / "dataset"

    @property
    def characters(self) -> Path:
        return self.dataset / "characters.h5"

    @property
    def startpoints(self) -> Path:
        return self.dataset / "startpoints.h5"

    @property
    def candidates(self) -> Path:
        return self.dataset / "candidates"

    def shard(self, k: int) -> Path:
        return self.candidates / f"shard_{k:05d}.h5"

    @property
    def pcrt_train(self) -> Path:
        return self.dataset / "pcrt_train.h5"

    @property
    def pcrt_test(self) -> Path:
        return self.dataset / "pcrt_test.h5"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def svm(self) -> Path:
        return self.root / "svm"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def rsa(self) -> Path:
        return self.root / "rsa"

    @property
    def tuning(self) -> Path:
        return self.root / "tuning"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def stamps(self) -> Path:
        return self.root / ".stamps"

    @property
    def stage_table(self) -> Path:
        """``.stamps/stages.json``: every stage of the last pipeline run's config with its doc and digest
        (``{"stages": {name: {"doc", "digest"}}}``, in order), so the report can tell a stage done for
        that config from a stale one without importing the pipeline."""
        return self.stamps / "stages.json"
