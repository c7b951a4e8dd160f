"""Value checks of the ``[tuning]`` config section (run at load by :func:`deepdraw.config.load_config`)."""

from __future__ import annotations

from ..errors import DeepDrawError
from ..settings import Config, TuningConfig
from ..value_checks import check_choice, check_count, check_fraction
from .features import ORIENTATIONS


def tuning_config(cfg: Config | TuningConfig) -> TuningConfig:
    """The tuning section of a config (or the section itself), checked."""
    t = cfg.tuning if isinstance(cfg, Config) else cfg
    if not isinstance(t, TuningConfig):
        raise DeepDrawError(f"run_tuning: cfg is a {type(cfg).__name__}; expected a Config or a TuningConfig")
    check_tuning_config(t)
    return t


def check_tuning_config(t: TuningConfig) -> None:
    """Value checks of the tuning section (run by :func:`deepdraw.config.load_config`)."""
    choices = {
        "window": (t.window, ("movement", "all")),
        "trim": (t.trim, ("fixed", "original", "none")),
        "label_index": (t.label_index, ("macro", "max")),
        "label_samples": (t.label_samples, ("trajectory", "frames")),
    }
    for key, (v, opts) in choices.items():
        check_choice(f"tuning.{key}", v, opts)
    for o in t.orientations:
        if o not in ORIENTATIONS:
            raise DeepDrawError(f"key 'tuning.orientations' holds '{o}'; expected horizontal or vertical")
    check_fraction("tuning.test_fraction", t.test_fraction)
    for key in ("chunk", "pd_bins", "min_plane_units", "label_max_points"):
        check_count(f"tuning.{key}", getattr(t, key))
    if t.plane_tol_cm <= 0:
        raise DeepDrawError(f"key 'tuning.plane_tol_cm' is {t.plane_tol_cm}; expected > 0")
