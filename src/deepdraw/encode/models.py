"""The models ``deepdraw encode`` runs: zoo names or checkpoint paths, trained and untrained.

A zoo name loads with :func:`deepdraw.zoo.load` (checkpoint sha256 checked; the untrained control
rebuilt from its seed and checked against the card). A checkpoint path (``models/<name>/best.pt`` of a
``deepdraw train`` run) takes its untrained control from ``untrained.pt`` beside it.

Each model's activations on every window of ``encoded.h5`` go to ``activations/<name>.h5`` (untrained:
``activations/<name>_untrained.h5``), written by :func:`deepdraw.nn.activations.extract_activations`
with the provenance attributes of :func:`deepdraw.store.provenance` (kind ``encode_activations``,
``inputs`` = the encoded file and the checkpoint with their sha256).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import store
from ..contracts import ENCODED_SCHEMA, KIND_ENCODE_ACTIVATIONS, KIND_ENCODED, schema_subset
from ..errors import DeepDrawError
from ..settings import Config

log = logging.getLogger(__name__)


def resolve(entry: str, untrained: bool):
    """``(name, [(model, trained, checkpoint path)])`` of one ``encode.models`` entry."""
    from .. import zoo
    from ..nn.checkpoints import load_checkpoint

    p = Path(entry)
    if p.suffix == ".pt" or p.is_file():
        model, ck = load_checkpoint(p)
        name = str(ck["model_name"])
        out = [(model, bool(ck["trained"]), p)]
        if untrained:
            u = p.with_name("untrained.pt")
            if not u.is_file():
                raise DeepDrawError(
                    f"{p}: no untrained control 'untrained.pt' beside it; expected the folder of a "
                    "`deepdraw train` run, or set encode.untrained = false (--no-untrained)"
                )
            out.append((load_checkpoint(u)[0], False, u))
        return name, out
    model, card = zoo.load(entry)
    path = zoo.verify(entry)
    out = [(model, True, path)]
    if untrained:
        out.append((zoo.load(entry, untrained=True)[0], False, path))
    return entry, out


def run_models(encoded: Path, cfg: Config, out_dir: Path, overwrite: bool = False) -> list[Path]:
    """Activations of every model of ``encode.models`` (``[]``: every zoo model) on ``encoded``."""
    from .. import zoo
    from ..nn.activations import extract_activations

    entries = list(cfg.encode.models) or zoo.available()
    if not entries:
        raise DeepDrawError(
            "encode.models is empty and the zoo has no model; expected a name or a checkpoint"
        )
    with store.open_artifact(encoded, KIND_ENCODED, schema_subset(ENCODED_SCHEMA, ("spindle_info",))) as f:
        n = int(f["spindle_info"].shape[0])
    inputs = {encoded.name: store.file_sha256(encoded)}
    written = []
    for entry in entries:
        name, runs = resolve(entry, cfg.encode.untrained)
        for model, trained, ck_path in runs:
            if tuple(model.input_shape) != (25, cfg.assembly.n_frames, 2):
                raise DeepDrawError(
                    f"{entry}: model input {tuple(model.input_shape)}; expected (25, {cfg.assembly.n_frames}, 2)"
                )
            dest = out_dir / f"{name}{'' if trained else '_untrained'}.h5"
            if dest.exists() and not overwrite:
                raise DeepDrawError(f"{dest}: output exists; refusing to overwrite it (use --overwrite)")
            extract_activations(
                model, encoded, np.arange(n), dest, batch=cfg.encode.batch_size, device=None,
                overwrite=True, quiet=cfg.run.quiet, kind=KIND_ENCODE_ACTIVATIONS,
                config=cfg.to_dict(["encode"]), inputs={**inputs, Path(ck_path).name: store.file_sha256(ck_path)},
                attrs={"model_entry": entry, "trained": bool(trained)},
            )  # fmt: skip
            log.info("activations of %s (%s): %s", name, "trained" if trained else "untrained", dest)
            written.append(dest)
    return written
