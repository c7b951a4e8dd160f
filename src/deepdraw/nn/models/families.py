"""The registry of network families: :class:`Family` (how one family is named, parsed, validated and
built), :data:`FAMILIES`, :func:`register_family` and :func:`get_family`.

The paper's four families are registered by :mod:`.build`; a family's name must first have a rule in
:data:`deepdraw.names.NAME_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deepdraw.errors import DeepDrawError, did_you_mean
from deepdraw.names import NAME_RULES

if TYPE_CHECKING:
    from .networks import DeepDrawNet
    from .spec import ModelSpec

__all__ = ["Family", "FAMILIES", "register_family", "get_family"]


@dataclass(frozen=True)
class Family:
    """One registered network family: how it is named, parsed, validated and built."""

    name: str
    short: str
    recurrent: bool
    encode_body: Callable[[ModelSpec], list[str]]
    parse_body: Callable[[list[str], str], dict]
    build: Callable[..., DeepDrawNet]
    default_lr: float
    default_batch_size: int
    pattern: str
    normalise: Callable[[ModelSpec], None] = field(default=lambda spec: None)

    def validate(self, spec: ModelSpec) -> None:
        where = f"model spec {spec.family} (n_layers={spec.n_layers})"
        if spec.s_kernel_size is None or spec.t_kernel_size is None:
            raise DeepDrawError(f"In {where}, s_kernel_size and t_kernel_size must be given.")
        if spec.n_layers < 1:
            raise DeepDrawError(f"In {where}, n_layers must be >= 1.")
        if len(spec.s_kernels) != spec.n_layers:
            raise DeepDrawError(f"In {where}, s_kernels {list(spec.s_kernels)} must have n_layers entries.")
        if not self.recurrent and len(spec.t_kernels) != spec.n_layers:
            raise DeepDrawError(f"In {where}, t_kernels {list(spec.t_kernels)} must have n_layers entries.")
        sizes = [spec.s_kernel_size, spec.s_stride] + (
            [] if self.recurrent else [spec.t_kernel_size, spec.t_stride]
        )
        if any(not 1 <= v <= 9 for v in sizes):
            raise DeepDrawError(
                f"In {where}, kernel sizes and strides must be single digits 1..9, got {sizes}."
            )
        if any(k < 1 for k in spec.s_kernels + spec.t_kernels):
            raise DeepDrawError(f"In {where}, channel counts must be positive.")
        if self.recurrent and spec.n_units < 1:
            raise DeepDrawError(f"In {where}, n_units must be a positive LSTM size.")


FAMILIES: dict[str, Family] = {}
"""Registry of network families by name."""


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (its name must be new)."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    if family.name not in NAME_RULES:
        raise ValueError(
            f"family {family.name!r} has no name rule; declare it with deepdraw.names.register_name_rule first"
        )
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The registered :class:`Family` called ``name``; unknown names raise with a suggestion."""
    if name not in FAMILIES:
        raise DeepDrawError(f"Unknown model family '{name}'{did_you_mean(name, FAMILIES)}")
    return FAMILIES[name]
