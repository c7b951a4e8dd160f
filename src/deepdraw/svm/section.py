"""The checks of the ``[svm]`` config section (run by :func:`deepdraw.config.load_config`)."""

from __future__ import annotations

import math

from ..errors import DeepDrawError
from ..settings import Config
from ..value_checks import check_count, check_fraction, check_positive
from .subsets import parse_subsets

__all__ = ["check_svm_section"]


def check_svm_section(cfg: Config) -> None:
    """Checks of ``[svm]`` (run by :func:`deepdraw.config.load_config`)."""
    s = cfg.svm
    if not s.c_grid:
        raise DeepDrawError("key 'svm.c_grid' is empty; expected at least one C value")
    for c in s.c_grid:
        if not (math.isfinite(c) and c > 0):
            raise DeepDrawError(f"key 'svm.c_grid' holds {c}; expected positive finite C values")
    if not s.inputs:
        raise DeepDrawError("key 'svm.inputs' is empty; expected at least one input key")
    if len(set(s.inputs)) != len(s.inputs):
        raise DeepDrawError(f"key 'svm.inputs' lists a key twice ({s.inputs}); expected each once")
    check_fraction("svm.val_fraction", s.val_fraction)
    if s.max_train < 0:
        raise DeepDrawError(f"key 'svm.max_train' is {s.max_train}; expected 0 (all) or a positive count")
    if s.rank < 0:
        raise DeepDrawError(f"key 'svm.rank' is {s.rank}; expected 0 (exact) or a positive count")
    if s.project < 0:
        raise DeepDrawError(
            f"key 'svm.project' is {s.project}; expected 0 (every feature) or a positive count"
        )
    if s.project and s.project_sample < s.project:
        raise DeepDrawError(
            f"key 'svm.project_sample' is {s.project_sample}; expected at least svm.project "
            f"({s.project}) rows"
        )
    if s.decode_window < 1 or s.decode_window % 2 == 0:
        raise DeepDrawError(f"key 'svm.decode_window' is {s.decode_window}; expected an odd count >= 1")
    for key in ("project_sample", "max_iter", "read_chunk"):
        check_count(f"svm.{key}", getattr(s, key))
    check_positive("svm.tol", s.tol, "a positive tolerance")
    parse_subsets(s.subsets)
    if s.decode_alpha < 0:
        raise DeepDrawError(f"key 'svm.decode_alpha' is {s.decode_alpha}; expected >= 0")
