"""Subcommands of the later stages (muscles, svm, train, search, activations, rsa, tuning).

Each stage adds one function here that registers its subparsers; :mod:`deepdraw.cli` calls them all.
"""

from __future__ import annotations

from .cli import EXTRA_COMMANDS  # noqa: F401
