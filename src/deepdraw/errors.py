"""The one exception type users see: a sentence naming the file, the field and what was expected; and the
one wording of "did you mean" for an unknown name (:func:`did_you_mean`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepDrawError(Exception):
    """An error caused by input (a file, a config key, an argument), reported without a traceback."""


def did_you_mean(
    word: str, options: Iterable[str], *, n: int = 1, cutoff: float = 0.4, list_all: bool = True
) -> str:
    """The tail of an unknown-name message: ``; did you mean 'x'?`` with the ``n`` closest ``options``
    (difflib ratio >= ``cutoff``); when none is close, ``; expected one of a, b, c.`` (every option,
    sorted) or, with ``list_all=False`` (long lists), nothing."""
    opts = sorted(set(options))
    close = difflib.get_close_matches(str(word), opts, n=n, cutoff=cutoff)
    if close:
        return "; did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
    return f"; expected one of {', '.join(opts)}." if list_all else ""
