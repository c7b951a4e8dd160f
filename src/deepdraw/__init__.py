"""deepdraw: task-driven models of proprioception (the DeepDraw pipeline, rebuilt).

Stages exchange HDF5 artifacts written by :mod:`deepdraw.store`; each stage is a subcommand of the
``deepdraw`` CLI (:mod:`deepdraw.cli`) and a step of ``deepdraw pipeline`` (:mod:`deepdraw.pipeline`).
Artifact kinds, schemas and the constants shared by the stages are in :mod:`deepdraw.contracts`.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``deepdraw.LETTERS``: the 20 characters (:data:`deepdraw.contracts.LETTERS`), imported on first use."""
    if name == "LETTERS":
        from .contracts import LETTERS

        return LETTERS
    raise AttributeError(f"module 'deepdraw' has no attribute {name!r}")
