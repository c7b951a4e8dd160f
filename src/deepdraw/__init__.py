"""deepdraw: task-driven models of proprioception (the DeepDraw pipeline, rebuilt).

Stages exchange HDF5 artifacts written by :mod:`deepdraw.store`; each stage is a subcommand of the
``deepdraw`` CLI (:mod:`deepdraw.cli`) and a step of ``deepdraw pipeline`` (:mod:`deepdraw.pipeline`).
"""

__version__ = "0.1.0"

LETTERS = "abcdeghlmnopqrsuvwyz"
"""The 20 characters; label k (0..19) is ``LETTERS[k]``."""
