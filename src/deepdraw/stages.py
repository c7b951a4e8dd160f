"""The pipeline's stages, in order: one literal table (:data:`STAGES`) used by ``deepdraw pipeline``
and by every single-stage command (``deepdraw svm``, ``deepdraw train``, ...), which run a stage through
:func:`deepdraw.pipeline.run_stage`, with the same checks, stamps and refusals.

Each :class:`Stage` names the config sections it reads, the stages it depends on, a ``run(cfg)``
function (writing the stage's outputs, summary included) and an ``outputs(cfg)`` function (the files
the pipeline verifies and puts at stake). The runners import their stage modules lazily: torch and the
analysis libraries are slow to import, and this table is read by every command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .paths import RunPaths, stage_summary
from .settings import Config
from .store import write_json_atomic


@dataclass
class Stage:
    """One step of the pipeline."""

    name: str
    sections: list[str]
    run: Callable[[Config], object]
    outputs: Callable[[Config], list[Path]]
    after: list[str] = field(default_factory=list)
    doc: str = ""
    adopts: bool = False
    """The stage checks outputs it finds (same config, else a refusal) and keeps them, so outputs that no
    pipeline run recorded (e.g. models of an older ``deepdraw train``) are resumed from, not put at stake."""
    enabled: Callable[[Config], bool] | None = None
    """Whether the config has this stage (None: always). A disabled stage is left out of the plan, the
    run and :func:`deepdraw.pipeline.status`."""
    off_hint: str = ""
    """What turns a stage that ``enabled`` can switch off on (said when it is asked for while off)."""
    needs: Callable[[Config], list[str]] | None = None
    """Upstream stages that only some configs depend on (added to ``after`` for the digest, the inputs
    and the stamps; e.g. ``train`` needs ``search`` when ``[train] models = "search"``)."""
    selects: tuple[str, ...] = ()
    """Keys of ``sections`` (``"section.key"``) that only choose *which* outputs exist, for a stage that
    adopts and checks each output by itself: left out of the digest, so that adding a seed trains that
    seed instead of putting every finished run at stake (the missing outputs make the stage resume)."""
    keys: Callable[[Config], dict] | None = None
    """Settings outside ``sections`` that the stage's outputs depend on, as ``{"section.key": value}``
    (covered by the digest and recorded in the stamps)."""


DATASET_STAGES = ("characters", "startpoints", "kinematics", "assemble")
"""The stages that make the PCRT dataset (external to a config without dataset sections)."""


def _rp(cfg: Config) -> RunPaths:
    return RunPaths.of(cfg)


# --- runners and outputs (the stage modules are imported when a stage runs) ----------------------


def _characters(cfg: Config) -> None:
    from .dataset.stage import run_characters

    run_characters(cfg, overwrite=True)  # the pipeline put an earlier file at stake (or it is its own)


def _startpoints(cfg: Config) -> None:
    from .dataset.stage import run_startpoints

    run_startpoints(cfg, overwrite=True)


def _kinematics(cfg: Config) -> None:
    from .dataset.stage import run_kinematics

    run_kinematics(cfg)


def _kinematics_outputs(cfg: Config) -> list[Path]:
    from .dataset.kinematics import shard_bounds

    rp = _rp(cfg)
    return [rp.shard(k) for k, _, _ in shard_bounds(cfg.kinematics.n_candidates, cfg.kinematics.shard_size)]


def _assemble(cfg: Config) -> None:
    from .dataset.assemble.stage import run_assemble
    from .dataset.inspect import inspect_sample, summary_figure

    run_assemble(cfg)
    inspect_sample(cfg, 0, str(_rp(cfg).figures / "sample_train_0.png"), source="train")
    summary_figure(cfg)


def _json_safe(v):
    """Numbers, strings, paths and nested dicts/lists of them, as plain JSON data."""
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


def _write_summary(folder: Path, summary: dict) -> None:
    write_json_atomic(stage_summary(folder), _json_safe(summary), indent=1, sort_keys=True)


def _svm(cfg: Config) -> None:
    from .svm.stage import run_svm

    rp = _rp(cfg)
    _write_summary(
        rp.svm, run_svm(cfg, rp.pcrt_train, rp.pcrt_test, rp.svm, quiet=cfg.run.quiet, overwrite=True)
    )


def _search_on(cfg: Config) -> bool:
    return cfg.search.n_per_family > 0


def _search(cfg: Config) -> None:
    from .nn.search_stage import run_search

    run_search(cfg, seeds=False)  # the winners' seeds are the train stage's ([train] models = "search")


def _search_outputs(cfg: Config) -> list[Path]:
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


def _search_keys(cfg: Config) -> dict:
    return {f"train.{k}": getattr(cfg.train, k) for k in SEARCH_TRAIN_KEYS}


def _train(cfg: Config) -> None:
    from .nn.stage import run_train

    run_train(cfg)


def _uses_search(cfg: Config) -> list[str]:
    return ["search"] if cfg.train.models == "search" else []


def _unless_search_missing(fn: Callable[[Config], list[Path]], cfg: Config, known: list[Path]) -> list[Path]:
    """``fn(cfg)``, or ``known`` while the search's winners are not known yet (``[train] models =
    "search"`` before the search ran: the plan is made before any stage runs)."""
    from .nn.search_stage import SearchResultsMissing

    try:
        return fn(cfg)
    except SearchResultsMissing:
        return known


def _train_outputs(cfg: Config) -> list[Path]:
    from .nn.stage import train_output_paths

    return _unless_search_missing(train_output_paths, cfg, [_rp(cfg).models / "summary.csv"])


def _activations(cfg: Config) -> None:
    from .nn.stage import run_activations

    run_activations(cfg)


def _activation_paths(cfg: Config) -> list[Path]:
    from .nn.stage import activation_paths

    return activation_paths(cfg)


def _activation_outputs(cfg: Config) -> list[Path]:
    return _unless_search_missing(_activation_paths, cfg, [])


def _rsa(cfg: Config) -> None:
    from .rsa.stage import run_rsa

    rp = _rp(cfg)
    res = run_rsa(cfg, _activation_paths(cfg), rp.pcrt_test, rp.rsa, quiet=cfg.run.quiet, overwrite=True)
    _write_summary(rp.rsa, res)


def _tuning(cfg: Config) -> None:
    from .tuning.stage import run_tuning

    rp = _rp(cfg)
    res = run_tuning(cfg, _activation_paths(cfg), rp.tuning, quiet=cfg.run.quiet, overwrite=True)
    _write_summary(rp.tuning, res)


def _report(cfg: Config) -> None:
    from .report.build import build_report

    build_report(cfg)


# --- the table ---------------------------------------------------------------------------------------

STAGES: dict[str, Stage] = {
    st.name: st
    for st in (
        Stage("characters", ["characters"], _characters, lambda c: [_rp(c).characters], doc="UCI pen paths"),
        Stage(
            "startpoints",
            ["startpoints"],
            _startpoints,
            lambda c: [_rp(c).startpoints],
            doc="start points of the writing planes",
        ),
        Stage(
            "kinematics",
            ["kinematics", "muscles"],
            _kinematics,
            _kinematics_outputs,
            after=["characters", "startpoints"],
            doc="augmented candidates, IK, acceptance, jerks",
            adopts=True,  # shards of another config are refused (dataset.stage.check_existing_shards)
        ),
        Stage(
            "assemble",
            ["assembly"],
            _assemble,
            lambda c: [_rp(c).pcrt_train, _rp(c).pcrt_test, _rp(c).figures / "dataset_summary.png"],
            after=["kinematics"],
            doc="selection, temporal placement, proprioceptive inputs, train/test files",
        ),
        Stage(
            "svm",
            ["svm"],
            _svm,
            lambda c: [stage_summary(_rp(c).svm)],
            after=["assemble"],
            doc="pairwise and one-vs-one SVMs, linear TDT decoding",
        ),
        Stage(
            "search",
            ["search"],
            _search,
            _search_outputs,
            after=["assemble"],
            doc="architecture search: random candidates per family on ART and TDT, ranked on validation",
            adopts=True,  # finished candidates are kept; folders of other settings refused (nn.search_stage)
            enabled=_search_on,
            off_hint="key 'search.n_per_family' is 0; expected a positive number of candidates per family "
            "(the paper: 50)",
            keys=_search_keys,
        ),
        Stage(
            "train",
            ["train"],
            _train,
            _train_outputs,
            after=["assemble"],
            doc="networks: ART and TDT, seeds, untrained controls",
            adopts=True,  # finished runs are kept, run folders of other settings refused (nn.stage)
            needs=_uses_search,
            selects=("train.models", "train.tasks", "train.seeds", "train.source"),
        ),
        Stage(
            "activations",
            ["activations"],
            _activations,
            _activation_outputs,
            after=["train"],
            doc="layer activations on a seeded test subset",
        ),
        Stage(
            "rsa",
            ["rsa"],
            _rsa,
            lambda c: [stage_summary(_rp(c).rsa)],
            after=["activations"],
            doc="RDMs, CKA, t-SNE, population decoding",
        ),
        Stage(
            "tuning",
            ["tuning"],
            _tuning,
            lambda c: [stage_summary(_rp(c).tuning)],
            after=["activations"],
            doc="single-unit tuning analyses",
        ),
        Stage(
            "report",
            ["report"],
            _report,
            lambda c: [_rp(c).report / "index.html"],
            after=["svm", "rsa", "tuning"],
            doc="HTML report",
            needs=lambda c: ["search"],  # its figures, when the config has a search stage
        ),
    )
}
"""Every stage, in the order the pipeline runs them."""
