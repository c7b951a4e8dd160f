"""Opening an activations file for analysis (RSA, tuning): schema, kind and model identity checked.

An activations file (written by :func:`deepdraw.nn.activations.extract_activations`, layout in
``docs/formats.md``) is read through :func:`open_activations`, which checks

* the per-sample keys the reader needs against :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA`;
* the root attribute ``kind``, when present, is an activations kind (files written before activations
  carried provenance have none);
* the root attribute ``model_name`` is present and, when the file's name is a model name
  (``activations/<model>.h5``), is that name: a file renamed or copied under another model's name
  would otherwise be analysed under the wrong label.

Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py

from .contracts import ACTIVATION_KINDS, ACTIVATIONS_SCHEMA, schema_subset
from .errors import DeepDrawError
from .names import identify
from .store import open_artifact

__all__ = ["expected_model_name", "check_model_name", "open_activations"]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def expected_model_name(path: str | os.PathLike) -> str | None:
    """The model name the file's name promises (``<model>.h5``), or None when the stem is not one."""
    stem = Path(path).stem
    return stem if identify(stem) is not None else None


def check_model_name(path: str | os.PathLike, recorded: str) -> None:
    """Raise when the file's name is a model name other than the ``model_name`` recorded inside."""
    want = expected_model_name(path)
    if want is not None and recorded != want:
        raise DeepDrawError(
            f"{path}: attribute 'model_name' is '{recorded}'; expected '{want}' (the model the file name "
            "says): the file was renamed or copied from another model; re-extract it with "
            "'deepdraw activations'"
        )


def open_activations(path: str | os.PathLike, keys: Sequence[str]) -> h5py.File:
    """Open an activations file read-only after the checks of the module docstring.

    ``keys``: the per-sample keys of :data:`~deepdraw.contracts.ACTIVATIONS_SCHEMA` the reader needs.
    The caller closes the returned file.
    """
    p = Path(path)
    f = open_artifact(p, schema=schema_subset(ACTIVATIONS_SCHEMA, tuple(keys)))
    try:
        kind = f.attrs.get("kind")
        if kind is not None and _text(kind) not in ACTIVATION_KINDS:
            raise DeepDrawError(
                f"{p}: attribute 'kind' is {_text(kind)!r}; expected one of {', '.join(ACTIVATION_KINDS)} "
                "(is this an activations file?)"
            )
        if "model_name" not in f.attrs:
            raise DeepDrawError(
                f"{p}: root attribute 'model_name' is missing; expected it on every activations file"
            )
        check_model_name(p, _text(f.attrs["model_name"]))
    except BaseException:
        f.close()
        raise
    return f
