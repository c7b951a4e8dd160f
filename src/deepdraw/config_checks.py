"""The value checks of a config, run when it is loaded (:func:`validate_config`).

Each section has one check; :func:`section_checks` lists them in the order of
:data:`~deepdraw.settings.SECTIONS`. The run, parallel and dataset sections are checked here, the others
next to the stage that reads them; all of them word their errors with :mod:`deepdraw.value_checks`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from .contracts import N_FRAMES
from .errors import DeepDrawError
from .settings import DATASET_SECTION_NAMES, PLANES, Config, ParallelConfig
from .value_checks import check_choice, check_count, check_fraction, check_positive, check_size

__all__ = [
    "check_run_section",
    "check_parallel_section",
    "check_dataset_sections",
    "section_checks",
    "validate_config",
]


def check_run_section(cfg: Config) -> None:
    """Checks of ``[run]``."""
    if not cfg.run.out_dir:
        raise DeepDrawError("key 'run.out_dir' is empty; expected a folder for the run's outputs")
    if cfg.run.seed < 0:
        raise DeepDrawError(f"key 'run.seed' is {cfg.run.seed}; expected a non-negative integer")
    if cfg.run.dataset_dir:
        made_here = [s for s in DATASET_SECTION_NAMES if cfg.given and s in cfg.given]
        if made_here:
            raise DeepDrawError(
                f"key 'run.dataset_dir' is '{cfg.run.dataset_dir}' (another run's dataset, used read-only), but "
                f"the config also has dataset sections [{'], ['.join(made_here)}]; expected one or the other"
            )


def check_parallel_section(cfg: Config) -> None:
    """Checks of ``[parallel]`` (sizes as Dask reads them: "auto" for memory_limit, bytes or "2GB")."""
    p = cfg.parallel
    check_choice("parallel.mode", p.mode, ("local", "sync", "scheduler", "slurm"))
    if p.mode == "scheduler" and not p.scheduler:
        raise DeepDrawError(
            "key 'parallel.scheduler' is empty but parallel.mode is 'scheduler'; expected the "
            "address of a Dask scheduler, e.g. tcp://host:8786"
        )
    for key in ("workers", "gpus", "processes"):
        if getattr(p, key) < 0:
            raise DeepDrawError(f"key 'parallel.{key}' is {getattr(p, key)}; expected 0 or more")
    check_size("parallel.memory_limit", p.memory_limit, auto=True)
    if p.mode == "slurm":
        _check_slurm(p)


_WALLTIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


def _check_slurm(p: ParallelConfig) -> None:
    """The SLURM keys of ``[parallel]`` (mode "slurm"): sizes, the time limit, one worker per GPU."""
    for key in ("cores", "jobs"):
        check_count(f"parallel.{key}", getattr(p, key))
    check_size("parallel.memory", p.memory)
    if not _WALLTIME.match(p.walltime):
        raise DeepDrawError(
            f"key 'parallel.walltime' is {p.walltime!r}; expected a SLURM time limit, e.g. '04:00:00' or "
            "'1-12:00:00'"
        )
    if p.gpus and p.processes not in (0, p.gpus):
        raise DeepDrawError(
            f"key 'parallel.processes' is {p.processes} but parallel.gpus is {p.gpus}; expected 0 or "
            f"{p.gpus} (one worker process per GPU)"
        )
    n = p.processes or p.gpus or p.cores
    if n > p.cores:
        raise DeepDrawError(
            f"key 'parallel.cores' is {p.cores}, fewer than the {n} worker processes per job; expected at "
            "least one core per worker"
        )
    for key in ("job_directives", "job_prologue"):
        bad = [x for x in getattr(p, key) if "\n" in x or not x.strip()]
        if bad:
            raise DeepDrawError(f"key 'parallel.{key}' holds {bad[0]!r}; expected non-empty one-line entries")
    if any(d.startswith(("--gres", "--gpus")) for d in p.job_directives) and p.gpus:
        raise DeepDrawError(
            "key 'parallel.job_directives' requests GPUs itself, and so does parallel.gpus; expected only "
            "parallel.gpus (it writes --gres=gpu:N)"
        )


def check_dataset_sections(cfg: Config) -> None:
    """Checks of ``[characters]``, ``[startpoints]``, ``[kinematics]``, ``[muscles]``, ``[assembly]``."""
    check_positive("characters.box_cm", cfg.characters.box_cm, "a positive size in cm")
    s = cfg.startpoints
    check_choice("startpoints.source", s.source, ("original", "search"))
    for key in ("grid_step_cm", "square_cm", "tol_cm"):
        check_positive(f"startpoints.{key}", getattr(s, key), "a positive length in cm")
    check_count("startpoints.fine", s.fine)
    k = cfg.kinematics
    check_choice("kinematics.ik", k.ik, ("batched", "reference"))
    check_choice("kinematics.acceptance", k.acceptance, ("and", "original"))
    check_choice("kinematics.muscle_jerk", k.muscle_jerk, ("screen", "exact"))
    check_choice("muscles.engine", cfg.muscles.engine, ("fast", "exact"))
    for p in k.planes:
        check_choice("kinematics.planes", p, PLANES)
    if not k.planes:
        raise DeepDrawError(f"key 'kinematics.planes' is empty; expected at least one of {', '.join(PLANES)}")
    for key in ("n_candidates", "shard_size", "max_attempts"):
        check_count(f"kinematics.{key}", getattr(k, key))
    for key in ("max_tracing_error_cm", "max_joint_jerk"):
        check_positive(f"kinematics.{key}", getattr(k, key), "a positive bound")
    for key in ("sizes", "speeds", "angles", "noises"):
        values = getattr(k, key)
        if not values:
            raise DeepDrawError(f"key 'kinematics.{key}' is empty; expected at least one value")
        for v in values:
            if key in ("sizes", "speeds"):
                check_positive(f"kinematics.{key}", v, "positive factors")
            elif not math.isfinite(v):
                raise DeepDrawError(f"key 'kinematics.{key}' holds {v}; expected finite values")
    a = cfg.assembly
    for key in ("n_samples", "chunk"):
        check_count(f"assembly.{key}", getattr(a, key))
    if a.n_frames != N_FRAMES:
        raise DeepDrawError(
            f"key 'assembly.n_frames' is {a.n_frames}; expected {N_FRAMES} (the frame count of the "
            "PCRT files and of the networks' input)"
        )
    check_positive("assembly.dt", a.dt, "a positive time step in seconds (0.015)")
    if not (math.isfinite(a.firing_noise) and a.firing_noise >= 0):
        raise DeepDrawError(f"key 'assembly.firing_noise' is {a.firing_noise}; expected >= 0")
    check_fraction("assembly.test_fraction", a.test_fraction)
    n_test = int(round(a.n_samples * a.test_fraction))
    if not 1 <= n_test < a.n_samples:
        raise DeepDrawError(
            f"keys 'assembly.n_samples' = {a.n_samples} and 'assembly.test_fraction' = {a.test_fraction} "
            f"give {n_test} test and {a.n_samples - n_test} training samples; expected at least one of each "
            "(more samples, or another test_fraction)"
        )
    if a.n_samples > k.n_candidates:
        raise DeepDrawError(
            f"key 'assembly.n_samples' is {a.n_samples}, which exceeds kinematics.n_candidates "
            f"({k.n_candidates}); expected at most as many samples as candidates"
        )


def section_checks() -> list[Callable[[Config], object]]:
    """The checks of every section, in the order of :data:`deepdraw.settings.SECTIONS`.

    The run, parallel and dataset sections are checked here; the other sections next to the stage
    that reads them (imported on call: the train check needs the model registry, hence torch).
    """
    from .nn.search_stage import check_search_section
    from .nn.section import check_activations_section, check_train_section
    from .rsa.stage import check_rsa_config
    from .svm.stage import check_svm_section
    from .tuning.stage import check_tuning_config

    return [
        check_run_section,
        check_parallel_section,
        check_dataset_sections,
        check_svm_section,
        check_train_section,
        check_search_section,
        check_activations_section,
        lambda c: check_rsa_config(c.rsa),
        lambda c: check_tuning_config(c.tuning),
    ]


def validate_config(cfg: Config, where: str = "<config>") -> None:
    """Every value check of every section (:func:`section_checks`), run when a config is loaded.

    The first bad value is one :class:`DeepDrawError` naming ``where`` (the config file), the key, the
    value and what was expected, before any stage runs or any output is touched.
    """
    for check in section_checks():
        try:
            check(cfg)
        except DeepDrawError as e:
            raise DeepDrawError(f"{where}: {e}") from None
