"""The pipeline's stages, in order (see :mod:`deepdraw.pipeline`). One place lists them all."""

from __future__ import annotations

from .config import Config
from .paths import RunPaths
from .pipeline import Stage, register


def _rp(cfg: Config) -> RunPaths:
    return RunPaths.of(cfg)


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
        adopts=True,  # shards of another config are refused (dataset.stage.check_existing_shards)
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


def _json_safe(v):
    """Numbers, strings, paths and nested dicts/lists of them, as plain JSON data."""
    from pathlib import Path

    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return str(v)


def _write_summary(folder, summary: dict) -> None:
    import json
    import os

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".summary.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(_json_safe(summary), indent=1, sort_keys=True))
    tmp.replace(folder / "summary.json")


def _svm(cfg: Config) -> None:
    from .svm.stage import run_svm

    rp = _rp(cfg)
    _write_summary(
        rp.svm, run_svm(cfg, rp.pcrt_train, rp.pcrt_test, rp.svm, quiet=cfg.run.quiet, overwrite=True)
    )


register(
    Stage(
        "svm",
        ["svm"],
        _svm,
        lambda c: [_rp(c).svm / "summary.json"],
        after=["assemble"],
        doc="pairwise and one-vs-one SVMs, linear TDT decoding",
    )
)


def _search_on(cfg: Config) -> bool:
    return cfg.search.n_per_family > 0


def _search(cfg: Config) -> None:
    from .nn.search_stage import run_search

    run_search(cfg, seeds=False)  # the winners' seeds are the train stage's ([train] models = "search")


def _search_outputs(cfg: Config):
    from .nn.search_stage import search_output_paths

    return search_output_paths(cfg)


SEARCH_TRAIN_KEYS = (
    "lr",
    "batch_size",
    "lstm_lr",
    "lstm_batch_size",
    "patience",
    "min_epochs",
    "schedule",
    "val_fraction",
    "target_alignment",
    "precision",
)
"""The ``[train]`` keys a search candidate is trained with (so the search's digest covers them, and not
``[train] models``, ``tasks`` or ``seeds``)."""


register(
    Stage(
        "search",
        ["search"],
        _search,
        _search_outputs,
        after=["assemble"],
        doc="architecture search: random candidates per family on ART and TDT, ranked on validation",
        adopts=True,  # finished candidates are kept; folders of other settings refused (nn.search_stage)
        enabled=_search_on,
        keys=lambda c: {f"train.{k}": getattr(c.train, k) for k in SEARCH_TRAIN_KEYS},
    )
)


def _train(cfg: Config) -> None:
    from .nn.stage import run_train

    run_train(cfg)


def _uses_search(cfg: Config) -> list[str]:
    return ["search"] if cfg.train.models == "search" else []


def _unless_search_missing(fn, cfg: Config, known: list):
    """``fn(cfg)``, or ``known`` while the search's winners are not known yet (``[train] models =
    "search"`` before the search ran: the plan is made before any stage runs)."""
    from .nn.search_stage import SearchResultsMissing

    try:
        return fn(cfg)
    except SearchResultsMissing:
        return known


def _train_outputs(cfg: Config):
    from .nn.stage import train_output_paths

    return _unless_search_missing(train_output_paths, cfg, [_rp(cfg).models / "summary.csv"])


register(
    Stage(
        "train",
        ["train"],
        _train,
        _train_outputs,
        after=["assemble"],
        doc="networks: ART and TDT, seeds, untrained controls",
        adopts=True,  # finished runs are kept, run folders of other settings refused (nn.stage)
        needs=_uses_search,
    )
)


def _activations(cfg: Config) -> None:
    from .nn.stage import run_activations

    run_activations(cfg)


def _activation_paths(cfg: Config):
    from .nn.stage import activation_paths

    return activation_paths(cfg)


def _activation_outputs(cfg: Config):
    return _unless_search_missing(_activation_paths, cfg, [])


register(
    Stage(
        "activations",
        ["activations"],
        _activations,
        _activation_outputs,
        after=["train"],
        doc="layer activations on a seeded test subset",
    )
)


def _rsa(cfg: Config) -> None:
    from .rsa.stage import run_rsa

    rp = _rp(cfg)
    res = run_rsa(cfg, _activation_paths(cfg), rp.pcrt_test, rp.rsa, quiet=cfg.run.quiet, overwrite=True)
    _write_summary(rp.rsa, res)


register(
    Stage(
        "rsa",
        ["rsa"],
        _rsa,
        lambda c: [_rp(c).rsa / "summary.json"],
        after=["activations"],
        doc="RDMs, CKA, t-SNE, population decoding",
    )
)


def _tuning(cfg: Config) -> None:
    from .tuning.stage import run_tuning

    rp = _rp(cfg)
    res = run_tuning(cfg, _activation_paths(cfg), rp.tuning, quiet=cfg.run.quiet, overwrite=True)
    _write_summary(rp.tuning, res)


register(
    Stage(
        "tuning",
        ["tuning"],
        _tuning,
        lambda c: [_rp(c).tuning / "summary.json"],
        after=["activations"],
        doc="single-unit tuning analyses",
    )
)


def _report(cfg: Config) -> None:
    from .report.build import build_report

    build_report(cfg)


register(
    Stage(
        "report",
        ["report"],
        _report,
        lambda c: [_rp(c).report / "index.html"],
        after=["svm", "rsa", "tuning"],
        doc="HTML report",
        needs=lambda c: ["search"],  # its figures, when the config has a search stage
    )
)
