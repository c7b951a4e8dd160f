"""Packaging a finished training run into the model zoo: a weights-only checkpoint and its card.

``deepdraw zoo add RUN_DIR`` (maintainers): ``RUN_DIR`` is a ``models/<name>/`` folder left by
``deepdraw train`` (``best.pt``, ``untrained.pt``, ``metrics.json`` of a finished run,
``untrained_metrics.json``). The dataset is found from the run's recorded ``train_path`` (or given).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepdraw.errors import DeepDrawError
from deepdraw.zoo import CARD_FORMAT, CARD_VERSION, DATA_LICENCES, resolve_zoo_dir, state_digest
from deepdraw.zoo.dataset_match import samples_digest

__all__ = ["add_to_zoo", "dataset_identity"]


def _train_keys() -> tuple[str, ...]:
    """The schedule settings a card records: those a run folder must share to be resumed, and the precision."""
    from deepdraw.nn.train_stage import RUN_SETTINGS

    return (*RUN_SETTINGS, "precision")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DeepDrawError(f"{path}: not found; expected the file a finished 'deepdraw train' run leaves")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DeepDrawError(f"{path}: not valid JSON ({exc})") from None


def dataset_identity(train_path: str | os.PathLike, test_path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a PCRT dataset without hashing its gigabytes: the generating config, the input
    files' digests and the generator's commit (``provenance_sha256`` is the sha256 of those three as
    canonical JSON), row counts and sizes, and ``samples_sha256``, the digest of the candidate ids of both
    files: the same config and inputs regenerate the same files on the machines that made the zoo, not always on
    another (:mod:`deepdraw.zoo.dataset_match`)."""
    from deepdraw.store import read_attrs

    out: dict[str, Any] = {"files": {}}
    prov: dict[str, Any] = {}
    for split, p in (("train", Path(train_path)), ("test", Path(test_path))):
        if not p.is_file():
            raise DeepDrawError(f"{p}: the {split} file of the run's dataset is missing")
        attrs = read_attrs(p)
        import h5py

        with h5py.File(p, "r") as f:
            n = int(f["label"].shape[0]) if "label" in f else None
        out["files"][split] = {"name": p.name, "bytes": p.stat().st_size, "rows": n}
        if split == "train":
            prov = {k: attrs.get(k) for k in ("config", "inputs", "git_commit")}
    for k in ("config", "inputs"):
        if isinstance(prov.get(k), str):
            prov[k] = json.loads(prov[k])
    out["config"] = prov.get("config")
    out["inputs"] = prov.get("inputs")
    out["git_commit"] = prov.get("git_commit")
    blob = json.dumps(prov, sort_keys=True, default=str).encode()
    out["provenance_sha256"] = hashlib.sha256(blob).hexdigest()
    # the same config can give other samples on another machine (deepdraw.zoo.dataset_match)
    out["samples_sha256"] = samples_digest(train_path, test_path)
    return out


def _metric_block(m: dict | None) -> dict | None:
    return None if m is None else {k: v for k, v in m.items() if v is not None}


def add_to_zoo(
    run_dir: str | os.PathLike,
    zoo_dir: str | os.PathLike | None = None,
    *,
    train_path: str | os.PathLike | None = None,
    test_path: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<zoo>/<name>.pt`` (weights only) and ``<zoo>/<name>.json`` (card) for a finished run."""
    import torch

    from deepdraw.store import atomic_path, write_json_atomic

    run = _read_finished_run(Path(run_dir))
    name = run.name
    tc = run.metrics.get("config") or {}
    zoo = resolve_zoo_dir(zoo_dir)
    ck_path, card_path = zoo / f"{name}.pt", zoo / f"{name}.json"
    if not overwrite and (ck_path.exists() or card_path.exists()):
        raise DeepDrawError(
            f"{card_path}: model '{name}' is already in the zoo; pass --overwrite to replace it"
        )

    shipped = {k: v for k, v in run.best.items() if k not in ("optimizer", "config")}
    shipped["config"] = {k: tc[k] for k in _train_keys() if k in tc}
    # the card is built (dataset files read) before anything is written: a missing dataset leaves no .pt
    dataset = dataset_identity(train_path or tc.get("train_path", ""), test_path or tc.get("test_path", ""))
    zoo.mkdir(parents=True, exist_ok=True)
    with atomic_path(ck_path) as tmp:
        torch.save(shipped, tmp)
    card = _model_card(run, ck_path, shipped["config"], dataset)
    write_json_atomic(card_path, card, newline=True, indent=1, default=str)
    return card_path


@dataclass(frozen=True)
class _FinishedRun:
    """What a finished ``models/<name>/`` folder holds, read and checked."""

    name: str
    metrics: dict  # metrics.json
    best: dict  # best.pt
    untrained: dict  # untrained.pt
    untrained_metrics: dict  # untrained_metrics.json


def _read_finished_run(run: Path) -> _FinishedRun:
    from deepdraw.nn.checkpoints import read_checkpoint

    metrics = _read_json(run / "metrics.json")
    if not metrics.get("finished"):
        raise DeepDrawError(f"{run / 'metrics.json'}: the run is not finished; expected 'finished': true")
    name = str(metrics["model_name"])
    best = read_checkpoint(run / "best.pt")
    if best.get("model_name") != name or best.get("kind") != "best":
        raise DeepDrawError(
            f"{run / 'best.pt'}: holds '{best.get('model_name')}' ({best.get('kind')}); expected the best "
            f"checkpoint of '{name}'"
        )
    return _FinishedRun(
        name=name,
        metrics=metrics,
        best=best,
        untrained=read_checkpoint(run / "untrained.pt"),
        untrained_metrics=_read_json(run / "untrained_metrics.json"),
    )


def _model_card(run: _FinishedRun, ck_path: Path, settings: dict, dataset: dict) -> dict[str, Any]:
    """The card of a shipped checkpoint (docs/zoo.md, *What a card holds*)."""
    from deepdraw.nn.checkpoints import versions
    from deepdraw.store import file_sha256, git_commit

    metrics, best = run.metrics, run.best
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "name": run.name,
        "architecture": _architecture(run.name),
        "family": metrics.get("family"),
        "task": metrics.get("task"),
        "seed": int(metrics["seed"]),
        "n_parameters": metrics.get("n_parameters"),
        "conv_weights": metrics.get("conv_weights"),
        "input_shape": list(best["input_shape"]),
        "n_outputs": int(best["n_outputs"]),
        "checkpoint": {"file": ck_path.name, "bytes": ck_path.stat().st_size, "sha256": file_sha256(ck_path)},
        "metrics": {
            "test": _metric_block(metrics.get("test")),
            "validation": _metric_block(metrics.get("best_validation")),
        },
        "untrained": {
            "name": run.untrained.get("model_name"),
            "state_sha256": state_digest(run.untrained["state_dict"]),
            "test": _metric_block(run.untrained_metrics.get("test")),
            "validation": _metric_block(run.untrained_metrics.get("validation")),
        },
        "training": {
            "epochs": metrics.get("epochs_run"),
            "best_epoch": metrics.get("best_epoch"),
            "stopped_by": metrics.get("stopped_by"),
            "wall_time_s": metrics.get("wall_time_s"),
            "precision": metrics.get("precision"),
            "device": metrics.get("device"),
            "data_seed": metrics.get("data_seed"),
            "n_train": metrics.get("n_train"),
            "n_val": metrics.get("n_val"),
            "n_test": metrics.get("n_test"),
            "settings": settings,
        },
        "dataset": dataset,
        "code": {"training": metrics.get("versions"), "packaged": {**versions(), "git_commit": git_commit()}},
        "licence": {"model": "MIT (deepdraw)", "data": DATA_LICENCES},
        "created": _dt.date.today().isoformat(),
    }


def _architecture(name: str) -> str:
    from deepdraw.nn.models.spec import parse_model_name

    return parse_model_name(name).architecture.name
