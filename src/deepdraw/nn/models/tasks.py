"""Training objectives of the networks: the registry :data:`TASKS` and :func:`get_task`.

``art`` is action recognition (20 character logits); ``tdt`` and ``tdt_pv`` are trajectory decoding
(hand position in cm, or position and velocity min-max scaled, per output frame). :func:`suggest` words
the "did you mean" of an unknown registry name (tasks here, families in :mod:`.families`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from deepdraw.errors import DeepDrawError

__all__ = ["Task", "TASKS", "get_task", "suggest"]


@dataclass(frozen=True)
class Task:
    """A training objective: ``n_outputs`` per sample (``art``) or per output frame (regression)."""

    name: str
    n_outputs: int
    regression: bool
    description: str


TASKS: dict[str, Task] = {
    "art": Task("art", 20, False, "action recognition: 20 character logits, cross-entropy"),
    "tdt": Task("tdt", 3, True, "trajectory decoding: hand position (cm) per output frame, MSE"),
    "tdt_pv": Task("tdt_pv", 6, True, "trajectory decoding: hand position and velocity, min-max scaled, MSE"),
}


def suggest(word: str, options: Sequence[str]) -> str:
    """The tail of an unknown-name message: ``; did you mean 'x'?`` (the closest of ``options``), else all."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.4)
    return f"; did you mean '{close[0]}'?" if close else f"; expected one of {', '.join(options)}."


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise :class:`DeepDrawError` with a suggestion."""
    if name not in TASKS:
        raise DeepDrawError(f"Unknown task '{name}'{suggest(str(name), sorted(TASKS))}")
    return TASKS[name]
