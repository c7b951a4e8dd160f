"""The pipeline's stages, in order (see :mod:`deepdraw.pipeline`). One place lists them all."""

from __future__ import annotations

from .config import Config
from .paths import RunPaths
from .pipeline import Stage, register


def _rp(cfg: Config) -> RunPaths:
    return RunPaths(cfg.out_dir)


def _characters(cfg: Config) -> None:
    from .dataset.stage import run_characters

    run_characters(cfg, overwrite=True)


def _startpoints(cfg: Config) -> None:
    from .dataset.stage import run_startpoints

    run_startpoints(cfg, overwrite=True)


def _kinematics(cfg: Config) -> None:
    from .dataset.stage import run_kinematics

    run_kinematics(cfg)


def _kinematics_outputs(cfg: Config):
    from .dataset.kinematics import shard_bounds

    rp = _rp(cfg)
    return [rp.shard(k) for k, _, _ in shard_bounds(cfg.kinematics.n_candidates, cfg.kinematics.shard_size)]


register(
    Stage(
        "characters",
        ["characters"],
        _characters,
        lambda c: [_rp(c).characters],
        doc="UCI pen paths",
    )
)
register(
    Stage(
        "startpoints",
        ["startpoints"],
        _startpoints,
        lambda c: [_rp(c).startpoints],
        doc="start points of the writing planes",
    )
)
register(
    Stage(
        "kinematics",
        ["kinematics", "muscles"],
        _kinematics,
        _kinematics_outputs,
        after=["characters", "startpoints"],
        doc="augmented candidates, IK, acceptance, jerks",
    )
)


def _assemble(cfg: Config) -> None:
    from .dataset.assemble import run_assemble
    from .dataset.inspect import inspect_sample, summary_figure

    run_assemble(cfg)
    inspect_sample(cfg, 0, str(_rp(cfg).figures / "sample_train_0.png"), source="train")
    summary_figure(cfg)


register(
    Stage(
        "assemble",
        ["assembly"],
        _assemble,
        lambda c: [_rp(c).pcrt_train, _rp(c).pcrt_test, _rp(c).figures / "dataset_summary.png"],
        after=["kinematics"],
        doc="selection, temporal placement, proprioceptive inputs, train/test files",
    )
)
