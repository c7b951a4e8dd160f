"""The one wording of a bad config value: "key 'section.key' is VALUE; expected WHAT".

Every section's check (:mod:`deepdraw.config_checks` and the stage modules' own) raises through these, so
the same mistake reads the same in every section. Torch-free; imports nothing of deepdraw but
:mod:`deepdraw.errors` (any section check may import it without a cycle).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from .errors import DeepDrawError

__all__ = ["check_choice", "check_count", "check_positive", "check_fraction", "check_size"]


def check_count(key: str, value: object) -> None:
    """Raise unless ``value`` is an integer of at least 1 (``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DeepDrawError(f"key '{key}' is {value}; expected a positive integer")


def check_choice(key: str, value: str, options: Sequence[str]) -> None:
    """Raise unless ``value`` is one of ``options`` (``key`` names the config key)."""
    if value not in options:
        raise DeepDrawError(f"key '{key}' is '{value}'; expected one of {', '.join(options)}")


def check_positive(key: str, value: float, what: str) -> None:
    """Raise unless ``value`` is finite and above 0 (``what`` says what was expected, e.g. "a positive
    length in cm"; counts: :func:`check_count`)."""
    if not (math.isfinite(value) and value > 0):
        raise DeepDrawError(f"key '{key}' is {value}; expected {what}")


def check_fraction(key: str, value: float) -> None:
    """Raise unless 0 < ``value`` < 1."""
    if not 0 < value < 1:
        raise DeepDrawError(f"key '{key}' is {value}; expected 0 < x < 1")


def check_size(key: str, value: str, auto: bool = False) -> None:
    """Raise unless ``value`` is a size as Dask reads it ("2GB", "512MiB", bytes; "auto" when ``auto``)."""
    if auto and value == "auto":
        return
    from dask.utils import parse_bytes

    try:
        ok = parse_bytes(value) >= (0 if auto else 1)  # memory_limit 0: no limit, as Dask reads it
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise DeepDrawError(
            f"key '{key}' is {value!r}; expected a size such as '2GB', '512MiB', a number of bytes"
            + (", or 'auto'" if auto else "")
        )
