"""Single-unit tuning analyses (original: single_cell/): kinematic features, tuning models fitted to all units at once,
preferred directions, uniformity, invariance across planes and statistics over seeds.

Entry point: :func:`run_tuning`. See ``docs/tuning.md``.
"""

from ..contracts import ACTIVATIONS_SCHEMA
from .activations import Activations, ActivationsFile, ArrayActivations
from .analysis import analyse_model
from .features import COLUMNS, FSETS, frame_mask, master_columns, plane_levels, plane_vectors, polar, project
from .models import (
    MODEL_NAMES,
    MODELS,
    TUNING_TYPES,
    TYPE_NAMES,
    SuffStats,
    TuningModel,
    design_matrix,
    fit_all_units,
    get_model,
    label_selectivity,
    ovr_auc,
    register_model,
    score_from_stats,
    score_units,
    solve_normal,
    split_by_trajectory,
)
from .results import ModelResult
from .stage import RESULTS_NAME, run_tuning
from .summary import (
    mean_ci,
    paired_tests,
    parse_model_name,
    pd_uniformity,
    plane_invariance,
    preferred_directions,
    score_stats,
    wrap_angle,
)
from .tables import build_tables, headline

__all__ = [
    "ACTIVATIONS_SCHEMA", "COLUMNS", "FSETS", "MODELS", "MODEL_NAMES", "RESULTS_NAME", "TUNING_TYPES", "TYPE_NAMES",
    "Activations", "ActivationsFile", "ArrayActivations", "ModelResult", "SuffStats", "TuningModel",
    "analyse_model", "build_tables", "design_matrix", "fit_all_units", "frame_mask", "get_model", "headline",
    "label_selectivity", "master_columns", "mean_ci", "ovr_auc", "paired_tests", "parse_model_name",
    "pd_uniformity", "plane_invariance", "plane_levels", "plane_vectors", "polar", "preferred_directions",
    "project", "register_model", "run_tuning", "score_from_stats", "score_stats", "score_units", "solve_normal",
    "split_by_trajectory", "wrap_angle",
]  # fmt: skip
