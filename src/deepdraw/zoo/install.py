"""Shipped models as runs of a run folder: ``[train] source = "zoo"``.

Instead of training, the train stage installs each planned run that the zoo ships into its
``models/<name>/`` folder: ``best.pt`` (the verified shipped checkpoint), ``untrained.pt`` (the control
rebuilt from the seed and checked against the card) and ``metrics.json`` (``finished``, ``source:
"zoo"``, the card, and the test metrics *on this run's test file*). Activations, RSA, tuning and the
report then treat them as any trained model. Planned runs the zoo does not ship are skipped with a
warning.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from deepdraw import zoo
from deepdraw.errors import DeepDrawError
from deepdraw.zoo.dataset_match import NOT_HELD_OUT, compare_with_card

__all__ = ["install_run", "shipped"]

log = logging.getLogger(__name__)


def shipped(name: str, zoo_dir: str | os.PathLike | None = None) -> bool:
    """Whether the zoo ships model ``name``."""
    return name in zoo.available(zoo_dir)


def _copy(src: Path, dst: Path) -> None:
    from deepdraw.store import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def install_run(
    name: str,
    directory: str | os.PathLike,
    test_path: str | os.PathLike,
    *,
    train_path: str | os.PathLike | None = None,
    n_train: int = 0,
    device: str | None = None,
    batch_size: int = 512,
    zoo_dir: str | os.PathLike | None = None,
) -> dict:
    """Install shipped model ``name`` into ``directory``; its ``metrics.json`` content.

    Reused as is when the folder already holds the same shipped checkpoint evaluated on the same test
    file; a folder holding a model trained here is refused (never overwritten). ``metrics.json``'s
    ``dataset_check`` says whether the test file holds the samples the model was tested on
    (:func:`~deepdraw.zoo.dataset_match.compare_with_card`; a warning where it does not).
    """
    import torch

    from deepdraw.nn.checkpoints import read_checkpoint, save_checkpoint, write_json
    from deepdraw.nn.targets import TargetSpec
    from deepdraw.nn.train import evaluate

    d = Path(directory)
    card = zoo.card(name, zoo_dir)
    src = zoo.verify(name, zoo_dir)
    key = {"checkpoint_sha256": card["checkpoint"]["sha256"], "test_path": str(test_path)}
    mpath = d / "metrics.json"
    held = _held_install(d, name, key)
    if held is not None:
        _warn_if_not_held_out(name, held["dataset_check"])
        return held
    d.mkdir(parents=True, exist_ok=True)
    _copy(src, d / "best.pt")
    control, _ = zoo.load(name, untrained=True, zoo_dir=zoo_dir)
    best = read_checkpoint(d / "best.pt")
    save_checkpoint(
        d / "untrained.pt", control, kind="untrained", targets=TargetSpec.from_state(best["targets"]), epoch=0
    )
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    test = evaluate(d / "best.pt", test_path, device=dev, batch_size=batch_size)
    metrics = _install_metrics(name, card, key, test, n_train)
    status, why = compare_with_card(card, test_path, test, train_path)
    metrics["dataset_check"] = {"status": status, "detail": why}
    write_json(mpath, metrics)
    log.info("%s: shipped model installed in %s (test on this run: %s)", name, d, test)
    _warn_if_not_held_out(name, metrics["dataset_check"])
    return metrics


def _warn_if_not_held_out(name: str, check: dict) -> None:
    """The warning of a dataset check under which the test metrics are not held out (each install)."""
    if check.get("status") in NOT_HELD_OUT:
        log.warning(
            "%s: this run's dataset has the shipped model's config but not its samples (%s): its test "
            "file may hold the model's training rows, so its test metrics here are not held out; use the "
            "card's metrics (docs/zoo.md, 'A regenerated dataset')",
            name,
            check.get("detail"),
        )


def _held_install(d: Path, name: str, key: dict) -> dict | None:
    """The metrics of ``d`` when it already holds shipped ``name`` evaluated on the same test file (None
    when it holds nothing usable); a folder holding a model trained in the run is an error."""
    import json

    from deepdraw.store import file_sha256

    mpath = d / "metrics.json"
    if not mpath.is_file():
        return None
    held = json.loads(mpath.read_text())
    if held.get("source") != "zoo":
        raise DeepDrawError(
            f"{d}: holds a model trained in this run, not the shipped '{name}'; use another run.out_dir "
            "for the shipped models, or train.source = 'train'"
        )
    checked = "dataset_check" in held  # installs of older deepdraw are evaluated (and checked) again
    if (
        held.get("zoo_key") == key
        and checked
        and (d / "best.pt").is_file()
        and (d / "untrained.pt").is_file()
    ):
        if file_sha256(d / "best.pt") == key["checkpoint_sha256"]:
            return held
    return None


def _install_metrics(name: str, card: dict, key: dict, test: dict, n_train: int) -> dict:
    """The ``metrics.json`` of an installed shipped model: its card's training record, this run's test."""
    tr = card.get("training") or {}
    return {
        "model_name": name,
        "task": card["task"],
        "family": card["family"],
        "seed": card["seed"],
        "source": "zoo",
        "zoo_key": key,
        "finished": True,
        "stopped_by": tr.get("stopped_by"),
        "epochs_run": tr.get("epochs"),
        "best_epoch": tr.get("best_epoch"),
        "wall_time_s": tr.get("wall_time_s"),
        "n_parameters": card.get("n_parameters"),
        "conv_weights": card.get("conv_weights"),
        "n_train": int(n_train),
        "n_val": 0,
        "test": test,
        "best_validation": None,
        "paper_scale_test": (card.get("metrics") or {}).get("test"),
        "card": card,
    }
