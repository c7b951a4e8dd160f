"""Training objectives of the networks: the registry :data:`TASKS` and :func:`get_task`.

``art`` is action recognition (20 character logits); ``tdt`` and ``tdt_pv`` are trajectory decoding
(hand position in cm, or position and velocity min-max scaled, per output frame).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepdraw.errors import DeepDrawError, did_you_mean

__all__ = ["Task", "TASKS", "get_task"]


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


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise :class:`DeepDrawError` with a suggestion."""
    if name not in TASKS:
        raise DeepDrawError(f"Unknown task '{name}'{did_you_mean(name, TASKS)}")
    return TASKS[name]
