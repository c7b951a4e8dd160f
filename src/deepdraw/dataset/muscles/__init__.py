"""Muscle fiber lengths of the MoBL-ARMS OpenSim model along joint trajectories (original: dataset/generate_data.py).

Two engines give the fiber lengths (mm) of the 25 muscles of :data:`MUSCLES` for joint angles (degrees,
order of :data:`JOINTS`):

* :class:`ExactEngine` runs OpenSim frame by frame, as DeepDraw's ``make_muscle_config``.
* :class:`FastEngine` (the default) evaluates tables built once from OpenSim by
  :func:`build_fast_engine`, vectorised over thousands of trajectories, and hands the frames it cannot
  reproduce (near a wrapping discontinuity of the model, outside the tabulated box) to the exact engine.
  :func:`validate_fast_engine` measures its error against the exact engine.

The design, its validation figures and the model's discontinuities are described in ``docs/muscles.md``.

Modules: :mod:`.constants` (muscle and joint names, joint limits, file names), :mod:`.exact` (OpenSim),
:mod:`.trajectories` (postures for building and validating), :mod:`.tables` (interpolation and table
encoding), :mod:`.build` (level 1 from OpenSim: the steps, the engine's arrays, the artifact) with
:mod:`.grids` (its shoulder and elbow grids and region), :mod:`.coupling` (which muscle depends on which
joints) and :mod:`.stencils` (its stencil choice and checks against OpenSim), :mod:`.refine` (level 2),
:mod:`.fast` (the fast engine), :mod:`.validate` (fast vs exact).
"""

from .build import build_fast_engine
from .constants import (
    ENGINE_FILE,
    ENGINE_KIND,
    JOINTS,
    MUSCLES,
    Q_MAX,
    Q_MIN,
    default_engine_path,
    default_model_path,
)
from .exact import ExactEngine, evaluate_postures
from .fast import FastEngine
from .tables import FALLBACK, REFINE_KEYS
from .trajectories import character_trajectories, dataset_trajectories, synthetic_trajectories
from .validate import compare, validate_fast_engine, velocity

__all__ = [
    "MUSCLES",
    "JOINTS",
    "Q_MIN",
    "Q_MAX",
    "ENGINE_KIND",
    "ENGINE_FILE",
    "FALLBACK",
    "REFINE_KEYS",
    "ExactEngine",
    "FastEngine",
    "build_fast_engine",
    "validate_fast_engine",
    "compare",
    "velocity",
    "evaluate_postures",
    "synthetic_trajectories",
    "character_trajectories",
    "dataset_trajectories",
    "default_model_path",
    "default_engine_path",
]
