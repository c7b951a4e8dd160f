"""Typed run configuration, loaded from TOML: parsing, composition, overrides and loading.

One TOML file configures a whole run; each stage reads its own section. The sections are the dataclasses
of :mod:`deepdraw.settings` (defaults and units in the field comments; ``docs/config.md`` lists them),
re-exported here (``from deepdraw.config import Config, TrainConfig``). Unknown sections and keys are
errors that suggest the nearest valid name; every value is checked at load
(:func:`deepdraw.config_checks.validate_config`, which runs each stage's section check). The resolved
config (defaults filled in) is stored as JSON in every artifact the run writes.

Example (``configs/demo.toml``)::

    [run]
    out_dir = "runs/demo"
    seed = 1

    [kinematics]
    n_candidates = 4000
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .config_checks import (
    check_dataset_sections,
    check_parallel_section,
    check_run_section,
    section_checks,
    validate_config,
)
from .errors import DeepDrawError, did_you_mean
from .settings import (
    DATASET_SECTION_NAMES,
    PLANES,
    SECTIONS,
    ActivationsConfig,
    AssemblyConfig,
    CharactersConfig,
    Config,
    EncodeConfig,
    KinematicsConfig,
    MusclesConfig,
    ParallelConfig,
    PredictConfig,
    ReportConfig,
    RsaConfig,
    RunConfig,
    SearchConfig,
    StartpointsConfig,
    SvmConfig,
    TrainConfig,
    TuningConfig,
)

__all__ = [
    # the schema, re-exported from deepdraw.settings
    "PLANES",
    "DATASET_SECTION_NAMES",
    "RunConfig",
    "ParallelConfig",
    "CharactersConfig",
    "StartpointsConfig",
    "KinematicsConfig",
    "MusclesConfig",
    "AssemblyConfig",
    "SvmConfig",
    "TrainConfig",
    "SearchConfig",
    "ActivationsConfig",
    "RsaConfig",
    "TuningConfig",
    "EncodeConfig",
    "PredictConfig",
    "ReportConfig",
    "SECTIONS",
    "Config",
    # reading and composing
    "BASE_KEY",
    "build_section",
    "config_from_dict",
    "read_config_chain",
    "parse_override",
    "load_config",
    "reference_markdown",
    # the value checks, re-exported from deepdraw.config_checks
    "check_run_section",
    "check_parallel_section",
    "check_dataset_sections",
    "section_checks",
    "validate_config",
]


def _check_type(value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise TypeError(f"a list of {item.__name__}")
        return [_check_type(v, item) for v in value]
    if origin in (types.UnionType, typing.Union):
        for t in typing.get_args(tp):
            try:
                return _check_type(value, t)
            except TypeError:
                pass
        raise TypeError(" or ".join(getattr(t, "__name__", str(t)) for t in typing.get_args(tp)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    return value


def build_section(name: str, values: dict[str, Any], where: str) -> Any:
    """Build the dataclass of section ``name`` from TOML values, rejecting unknown keys."""
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in valid:
            raise DeepDrawError(f"{where}: unknown key '{name}.{key}'{did_you_mean(key, valid)}")
        try:
            kwargs[key] = _check_type(value, hints[key])
        except TypeError as e:
            raise DeepDrawError(f"{where}: key '{name}.{key}' is {value!r}; expected {e}") from None
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str = "<config>") -> Config:
    """Build a :class:`Config` from nested dicts (as parsed from TOML)."""
    kwargs: dict[str, Any] = {}
    for sec, values in data.items():
        if sec not in SECTIONS:
            raise DeepDrawError(f"{where}: unknown section '[{sec}]'{did_you_mean(sec, list(SECTIONS))}")
        if not isinstance(values, dict):
            raise DeepDrawError(f"{where}: '{sec}' must be a [section] table")
        kwargs[sec] = build_section(sec, values, where)
    cfg = Config(**kwargs, source=where, given=list(data))
    validate_config(cfg, where)
    return cfg


BASE_KEY = "base"
"""Top-level key of a config file naming the config it inherits (a path relative to the file)."""


def _read_toml(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise DeepDrawError(f"{p}: config file not found")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DeepDrawError(f"{p}: not valid TOML: {e}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, key by key within each section (lists replace, never concatenate)."""
    out = {sec: dict(values) for sec, values in base.items()}
    for sec, values in top.items():
        out.setdefault(sec, {}).update(values)
    return out


def read_config_chain(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The sections of ``path`` merged over those of its ``base`` chain, and the files of the chain
    (``path`` first). Each file is checked on its own (unknown sections and keys, types), so an error
    names the file that holds the bad key; a cycle of ``base`` names is an error."""
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    p = Path(path)
    while True:
        if any(p.resolve() == q.resolve() for q in chain):
            loop = " -> ".join(str(q) for q in [*chain, p])
            raise DeepDrawError(f"{chain[-1]}: key '{BASE_KEY}' makes a cycle ({loop}); expected a chain")
        data = _read_toml(p)
        chain.append(p)
        base = data.pop(BASE_KEY, None)
        for sec, values in data.items():
            if sec not in SECTIONS:
                raise DeepDrawError(
                    f"{p}: unknown section '[{sec}]'{did_you_mean(sec, [*SECTIONS, BASE_KEY])}"
                )
            if not isinstance(values, dict):
                raise DeepDrawError(f"{p}: '{sec}' must be a [section] table")
            build_section(sec, values, str(p))
        layers.append(data)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise DeepDrawError(
                f"{p}: key '{BASE_KEY}' is {base!r}; expected the path of another config file (relative "
                "to this one), written before any [section]"
            )
        nxt = p.parent / base
        if not nxt.is_file():
            raise DeepDrawError(f"{p}: key '{BASE_KEY}' names {base!r}, but {nxt} does not exist")
        p = nxt
    merged: dict[str, Any] = {}
    for data in reversed(layers):
        merged = _merge(merged, data)
    return merged, [str(q) for q in chain]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` (``--set``) -> (section, key, value). The value is a TOML literal
    (``3``, ``[1, 2]``, ``true``, ``"text"``); a value that is not one, or any value of a string key,
    is taken as the bare text (``run.out_dir=runs/x``)."""
    where = f"--set {text}"
    name, eq, raw = text.partition("=")
    sec, dot, key = name.strip().partition(".")
    if not eq or not dot or not key or "." in key:
        raise DeepDrawError(f"{where}: expected SECTION.KEY=VALUE, e.g. train.seeds=[1,2]")
    if sec not in SECTIONS:
        raise DeepDrawError(f"{where}: unknown section '[{sec}]'{did_you_mean(sec, list(SECTIONS))}")
    valid = [f.name for f in dataclasses.fields(SECTIONS[sec])]
    if key not in valid:
        raise DeepDrawError(f"{where}: unknown key '{sec}.{key}'{did_you_mean(key, valid)}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if typing.get_type_hints(SECTIONS[sec])[key] is str and not isinstance(value, str):
        value = raw
    build_section(sec, {key: value}, where)  # type check, naming the flag
    return sec, key, value


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load and validate a TOML config file, its ``base`` chain and ``--set`` overrides.

    ``path`` None: the built-in defaults with the overrides (a config that makes its own dataset, as
    ``Config()``). The sections given (:attr:`Config.given`: does the config make its own dataset?) are
    the union over the chain and the overridden sections. Values are checked on the resolved config.
    """
    data, chain = read_config_chain(path) if path is not None else ({}, [])
    sets = [parse_override(t) for t in overrides]
    data = _merge(data, {})
    for sec, key, value in sets:
        data.setdefault(sec, {})[key] = value
    where = str(path) if path is not None else "<defaults>"
    if sets:
        where += " with " + " ".join(f"--set {t}" for t in overrides)
    cfg = config_from_dict(data, where)
    cfg.source = str(path) if path is not None else ""
    cfg.layers = [*chain, *(f"--set {t}" for t in overrides)]
    if path is None:
        cfg.given = None
    return cfg


def reference_markdown() -> str:
    """``docs/config.md``: every section and key with its default and the comment beside it in the
    source (the test suite checks that the file is up to date)."""
    import inspect

    lines = [
        "# Configuration reference",
        "",
        "One TOML file configures a run; each `[section]` is read by one stage. Every key is optional (the",
        "default is shown). Unknown sections and keys are errors that name the nearest valid key. Every",
        "value of every section is checked when the config is loaded (before any stage runs or any output",
        "is touched): a bad one is one error naming the file, the key, the value and what was expected.",
        "A config file without dataset sections (`[characters]`, `[startpoints]`, `[kinematics]`,",
        "`[muscles]`, `[assembly]`) uses the dataset already in its `run.out_dir` and never makes one",
        "(`docs/report.md`). The",
        "resolved config is stored in every artifact (`config` attribute). Examples: `configs/demo.toml`,",
        "`configs/paper.toml`.",
        "",
        '**Composing configs.** A file may start with `base = "other.toml"` (a path relative to the file):',
        "it inherits every key of that config and overrides those it sets, key by key within a section",
        "(a list replaces the inherited list). Bases may have bases; a cycle is an error. The sections a",
        "composed config gives are those of the whole chain (so a base with dataset sections makes the",
        "config make its dataset). Every command that reads a config also takes",
        "`--set SECTION.KEY=VALUE` (repeatable, applied last, in order): VALUE is a TOML literal",
        "(`--set train.seeds=[1,2]`, `--set train.lr=1e-3`, `--set svm.decode=false`), or the bare text",
        "for a string key (`--set run.out_dir=runs/x`); a `--set` of a dataset key counts as a dataset",
        "section given. Both are checked like the file (an unknown section or key is an error naming it),",
        "and the resolved values are what the artifacts and the pipeline's stamps record (the stamps also",
        "list the files and overrides, `layers`). Example: `configs/paper-zoo.toml` inherits",
        "`configs/paper-train-best.toml`, which inherits `configs/paper-run.toml`.",
        "",
        "This page is generated from the sections of `src/deepdraw/settings.py`",
        "(`python -c 'import deepdraw.config as c; print(c.reference_markdown())' > docs/config.md`).",
        "",
    ]
    for name, cls in SECTIONS.items():
        src = inspect.getsource(cls)
        comments = {
            m.group(1): (m.group(2) or "").strip()
            for m in re.finditer(r"^    (\w+): [^=\n]+=[^#\n]*(?:#\s*(.*))?$", src, re.M)
        }
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        lines += [f"## `[{name}]`", "", doc, "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                d = f.default
            elif callable(f.default_factory):
                d = f.default_factory()
            else:  # not reached: every config field has a default
                raise TypeError(f"config field {name}.{f.name} has no default")
            dv = json.dumps(d)
            lines.append(f"| `{f.name}` | `{dv}` | {comments.get(f.name, '').replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
