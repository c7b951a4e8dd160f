"""The model zoo: trained paper-scale networks shipped with deepdraw, each with a model card.

A shipped model is two files in ``deepdraw/zoo/checkpoints/`` (installed with the package):

- ``<name>.pt``: a deepdraw network checkpoint (:mod:`deepdraw.nn.checkpoints`, kind ``best``) holding
  the weights only (no optimizer state);
- ``<name>.json``: its card (format :data:`CARD_FORMAT`): name, architecture, family, task, seed, the
  dataset it was trained on (config, provenance digest, sizes), code versions, training (epochs, best
  epoch, stop reason, wall time, precision, device), test and validation metrics of the trained model
  and of its untrained control, the sha256 of the checkpoint file, the digest of the untrained
  control's weights, and the licence terms of the data.

The untrained control is not shipped: :func:`load` with ``untrained=True`` rebuilds it from the seed
(the same generator the training used) and checks its weights against the card's digest, so a torch
whose initialisation differs is an error, not a silently different control.

Python::

    from deepdraw import zoo
    zoo.available()                       # names
    model, card = zoo.load("spatiotemporal_4_8-8-32-64_7272_1")
    control, _ = zoo.load("spatiotemporal_4_8-8-32-64_7272_1", untrained=True)

Command line: ``deepdraw zoo list``, ``deepdraw zoo show NAME``, ``deepdraw zoo add RUN_DIR`` (packaging
a finished training run into the zoo; see ``docs/zoo.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from deepdraw.errors import DeepDrawError, did_you_mean

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "ZOO_DIR",
    "DATA_LICENCES",
    "resolve_zoo_dir",
    "available",
    "card",
    "cards",
    "checkpoint_path",
    "verify",
    "load",
    "state_digest",
]

CARD_FORMAT = "deepdraw.zoo.card"
CARD_VERSION = 1
ZOO_DIR = Path(__file__).resolve().parent / "checkpoints"
"""Where the shipped checkpoints and cards live (inside the installed package)."""

DATA_LICENCES = {
    "character_trajectories": "UCI 'Character Trajectories' (B.H. Williams, 2008): CC BY 4.0; cite "
    "Williams, Toussaint & Storkey, ICANN 2006",
    "musculoskeletal_model": "MoBL-ARMS upper-limb model (Saul et al. 2015; McFarland et al. 2019): "
    "non-commercial use only (research, academic, evaluation, personal), BSD 3-Clause for those uses; "
    "commercial use needs a licence from its owners",
    "start_points": "DeepDraw start points (amathislab/DeepDraw): MIT, (c) 2023 A. Mathis Group & "
    "M.W. Mathis Lab @ EPFL",
    "note": "The networks were trained on data derived from all three; their terms carry over. "
    "See data/README.md.",
}
"""Licence terms of the data every shipped model was trained on (recorded on each card)."""


def resolve_zoo_dir(zoo_dir: str | os.PathLike | None = None) -> Path:
    """``zoo_dir`` or the shipped zoo folder."""
    return Path(zoo_dir) if zoo_dir is not None else ZOO_DIR


def available(zoo_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the shipped models (sorted)."""
    d = resolve_zoo_dir(zoo_dir)
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def card(name: str, zoo_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model card of ``name``; an unknown name raises with the closest shipped names."""
    d = resolve_zoo_dir(zoo_dir)
    path = d / f"{name}.json"
    if not path.is_file():
        names = available(d)
        hint = did_you_mean(name, names, n=3, cutoff=0.6, list_all=False)
        raise DeepDrawError(
            f"model '{name}' is not in the zoo ({d}); {len(names)} shipped models (`deepdraw zoo list`){hint}"
        )
    try:
        out = json.loads(path.read_text())
    except ValueError as exc:
        raise DeepDrawError(f"{path}: not a JSON model card ({exc})") from None
    if out.get("format") != CARD_FORMAT:
        raise DeepDrawError(f"{path}: field 'format' is {out.get('format')!r}; expected '{CARD_FORMAT}'")
    if out.get("version", 0) > CARD_VERSION:
        raise DeepDrawError(
            f"{path}: card version {out.get('version')} is newer than this deepdraw reads ({CARD_VERSION})"
        )
    return out


def cards(zoo_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every shipped model's card."""
    return [card(n, zoo_dir) for n in available(zoo_dir)]


def checkpoint_path(name: str, zoo_dir: str | os.PathLike | None = None) -> Path:
    """The shipped checkpoint file of ``name`` (not verified; see :func:`verify`)."""
    c = card(name, zoo_dir)
    return resolve_zoo_dir(zoo_dir) / c["checkpoint"]["file"]


def verify(name: str, zoo_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint of ``name`` after checking its size and sha256 against the card."""
    c = card(name, zoo_dir)
    path = resolve_zoo_dir(zoo_dir) / c["checkpoint"]["file"]
    if not path.is_file():
        raise DeepDrawError(f"{path}: the checkpoint of zoo model '{name}' is missing")
    want_size, want_sha = int(c["checkpoint"]["bytes"]), c["checkpoint"]["sha256"]
    size = path.stat().st_size
    if size != want_size:
        raise DeepDrawError(
            f"{path}: {size} bytes, but its card records {want_size}: the file is truncated or replaced"
        )
    from deepdraw.store import file_sha256

    sha = file_sha256(path)
    if sha != want_sha:
        raise DeepDrawError(
            f"{path}: sha256 {sha[:16]}... does not match its card ({want_sha[:16]}...): the file was "
            "modified; reinstall deepdraw or restore the file"
        )
    return path


def state_digest(state_dict) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (device- and file-format-free)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load(
    name: str,
    *,
    untrained: bool = False,
    device: str | None = "cpu",
    zoo_dir: str | os.PathLike | None = None,
):
    """``(model in eval mode, card)`` of shipped model ``name``.

    The checkpoint is verified against the card first (size, sha256). With ``untrained=True`` the
    model's untrained control is rebuilt from its seed and checked against the card's weight digest.
    """
    from deepdraw.nn.checkpoints import load_checkpoint, resolve_device
    from deepdraw.nn.models.build import build_model
    from deepdraw.nn.models.spec import parse_model_name

    c = card(name, zoo_dir)
    path = verify(name, zoo_dir)
    model, ck = load_checkpoint(path, c["architecture"], task=c["task"], device="cpu")
    if ck.get("model_name") != c["name"]:
        raise DeepDrawError(f"{path}: holds model '{ck.get('model_name')}'; its card names '{c['name']}'")
    if untrained:
        spec = parse_model_name(c["name"])
        model = build_model(spec, c["task"], seed=int(c["seed"]), input_shape=tuple(ck["input_shape"]))
        digest = state_digest(model.state_dict())
        if digest != c["untrained"]["state_sha256"]:
            raise DeepDrawError(
                f"zoo model '{name}': the untrained control rebuilt from seed {c['seed']} differs from the "
                f"one trained (weights digest {digest[:16]}... vs the card's "
                f"{c['untrained']['state_sha256'][:16]}...); this torch initialises differently"
            )
        model.eval()
    return model.to(resolve_device(device)), c
