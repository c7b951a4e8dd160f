"""Names, joint limits and file names of the muscle engines (25 muscles, 4 joints).

The names, limits and the engine's kind and schema are defined in :mod:`deepdraw.contracts` and
re-exported here."""

from __future__ import annotations

import logging
from pathlib import Path

from ...contracts import ENGINE_SCHEMA, JOINTS, MUSCLES, Q_MAX, Q_MIN
from ...contracts import KIND_MUSCLE_ENGINE as ENGINE_KIND

__all__ = [
    "ENGINE_FILE", "ENGINE_KIND", "ENGINE_SCHEMA", "JOINTS", "MUSCLES", "Q_MAX", "Q_MIN",
    "default_engine_path", "default_model_path",
]  # fmt: skip

log = logging.getLogger(__name__)

ENGINE_FILE = "fast_engine.h5"
"""File name of the shipped fast-engine artifact under ``data/muscles/``."""


def default_model_path() -> Path:
    """The MoBL-ARMS model shipped in ``data/reference_model``."""
    from ...paths import osim_model

    return osim_model()


def default_engine_path() -> Path:
    """The fast-engine artifact shipped in ``data/muscles``."""
    from ...paths import data_dir

    return data_dir() / "muscles" / ENGINE_FILE
