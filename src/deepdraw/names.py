"""The model-name grammar, torch-free: one definition used by every stage.

Names are the original's identity keys (docs/training.md, *Model names*)::

    {family}[_r]_{body}[_{seed}][r]

- ``family``: ``spatial_temporal``, ``temporal_spatial``, ``spatiotemporal``, ``lstm`` (more can be
  registered with :func:`register_name_rule`);
- ``_r`` after the family: a regression (TDT / TDT-PV) model;
- ``body``: a fixed number of fields per family (conv: ``{n}_{kernels}[_{kernels}]_{sK}{sS}{tK}{tS}``;
  lstm: ``{n}_{filters}_{units}``), then optional fields a family allows (lstm: ``k{sK}s{sS}``, letters
  keeping it apart from the seed);
- ``_{seed}``: digits; a trailing ``r`` marks the untrained control.

:func:`split_model_name` cuts a name into :class:`NameParts` (or raises); :func:`identify` is the same
returning ``None`` for a string that is not a model name. The architecture key
(:attr:`NameParts.arch`) drops the regression marker, the seed and the untrained suffix, so the ART, TDT,
trained and untrained variants of one architecture share it. :mod:`deepdraw.nn.models` turns the body
fields into a :class:`~deepdraw.nn.models.ModelSpec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deepdraw.errors import DeepDrawError, did_you_mean

__all__ = ["NameParts", "NAME_RULES", "register_name_rule", "split_model_name", "identify"]


@dataclass(frozen=True)
class _Rule:
    fixed: int  # body fields every name of the family has
    optional: tuple[str, ...] = ()  # regexes of optional body fields, in order, after the fixed ones


NAME_RULES: dict[str, _Rule] = {
    "spatial_temporal": _Rule(4),
    "temporal_spatial": _Rule(4),
    "spatiotemporal": _Rule(3),
    "lstm": _Rule(3, (r"k\d+s\d+",)),
}
"""Body layout per family."""


def register_name_rule(family: str, fixed: int, optional: tuple[str, ...] = ()) -> None:
    """Declare the body layout of a new family's names (``fixed`` fields, then ``optional`` regexes)."""
    NAME_RULES[family] = _Rule(int(fixed), tuple(optional))


@dataclass(frozen=True)
class NameParts:
    """A model name cut into its parts."""

    family: str
    regression: bool
    body: tuple[str, ...]
    seed: int | None
    untrained: bool

    @property
    def arch(self) -> str:
        """The architecture key: family and body (no regression marker, seed or untrained suffix)."""
        return "_".join([self.family, *self.body])

    @property
    def name(self) -> str:
        """The name again."""
        parts = [self.family, *(["r"] if self.regression else []), *self.body]
        if self.seed is not None:
            parts.append(str(self.seed))
        return "_".join(parts) + ("r" if self.untrained else "")


def _family_of(name: str) -> str | None:
    return next((f for f in sorted(NAME_RULES, key=len, reverse=True) if name.startswith(f + "_")), None)


def split_model_name(name: str) -> NameParts:
    """Cut ``name`` into :class:`NameParts`; a name that does not follow the grammar raises
    :class:`DeepDrawError` naming what is wrong."""
    name = str(name).strip()
    family = _family_of(name)
    if family is None:
        guess = re.split(r"_(?:r_)?\d", name, maxsplit=1)[0]
        hint = did_you_mean(guess, NAME_RULES)
        raise DeepDrawError(f"Unknown model family '{guess}' in model name '{name}'{hint}")
    rule = NAME_RULES[family]
    tokens = name[len(family) + 1 :].split("_")
    regression = bool(tokens) and tokens[0] == "r"
    if regression:
        tokens = tokens[1:]
    untrained = bool(tokens) and len(tokens[-1]) > 1 and tokens[-1].endswith("r")
    if untrained:
        tokens[-1] = tokens[-1][:-1]
    if len(tokens) < rule.fixed or any(t == "" for t in tokens):
        raise DeepDrawError(
            f"Model name '{name}' is malformed: {len(tokens)} fields after the family, expected at least "
            f"{rule.fixed}"
        )
    body, rest = list(tokens[: rule.fixed]), tokens[rule.fixed :]
    for pattern in rule.optional:
        if rest and re.fullmatch(pattern, rest[0]):
            body.append(rest.pop(0))
    seed = None
    if rest:
        if len(rest) > 1 or not rest[0].isdigit():
            raise DeepDrawError(
                f"Model name '{name}' is malformed at '{'_'.join(rest)}'; expected a seed (digits)"
            )
        seed = int(rest[0])
    return NameParts(family, regression, tuple(body), seed, untrained)


def identify(name: str) -> NameParts | None:
    """:func:`split_model_name`, or ``None`` when ``name`` is not a model name."""
    try:
        return split_model_name(name)
    except DeepDrawError:
        return None
