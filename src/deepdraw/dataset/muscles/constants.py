"""Names, joint limits and file names of the muscle engines (25 muscles, 4 joints)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MUSCLES: tuple[str, ...] = (
    "CORB", "DELT1", "DELT2", "DELT3", "INFSP", "LAT1", "LAT2", "LAT3", "PECM1", "PECM2", "PECM3",
    "SUBSC", "SUPSP", "TMAJ", "TMIN", "ANC", "BIClong", "BICshort", "BRA", "BRD", "ECRL", "PT",
    "TRIlat", "TRIlong", "TRImed",
)  # fmt: skip
"""The 25 muscles kept, in the dataset's order (15 shoulder, then 10 elbow muscles; spec section 0)."""
JOINTS: tuple[str, ...] = ("elv_angle", "shoulder_elv", "shoulder_rot", "elbow_flexion")
"""The OpenSim coordinates set from the joint angles, in the order of the joint arrays."""
Q_MIN = np.array([-90.0, 0.0, -90.0, 0.0])
"""Lower joint limits of the arm, degrees (same as :data:`deepdraw.dataset.arm.Q_MIN`)."""
Q_MAX = np.array([130.0, 180.0, 20.0, 130.0])
"""Upper joint limits of the arm, degrees."""

ENGINE_KIND = "muscle_fast_engine"
"""``kind`` attribute of the fast-engine artifact."""
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
