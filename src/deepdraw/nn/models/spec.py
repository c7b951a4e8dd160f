"""One network's architecture and identity, :class:`ModelSpec`, and its model name both ways:
:func:`model_name` writes it, :func:`parse_model_name` reads it back.

The name's grammar (family, regression marker, body fields, seed, untrained suffix) is
:mod:`deepdraw.names`; each registered family (:mod:`.families`) writes and reads its own body fields
(:mod:`.name_fields`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepdraw.names import split_model_name

from .families import get_family

__all__ = ["ModelSpec", "model_name", "parse_model_name"]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and identity of one network (what the model name encodes).

    ``s_*`` fields describe the spatial convs (over the 25 muscle rows), ``t_*`` the temporal convs (over
    the 320 frames). For ``spatiotemporal`` the temporal fields are forced equal to the spatial ones, as
    in the original constructor. For ``lstm`` ``s_kernels`` are the conv filters and ``n_units`` the
    LSTM size (``s_kernel_size`` defaults to 5 for the LSTM, as the original's analysed model; conv
    families need it explicitly).
    """

    family: str
    n_layers: int
    s_kernels: tuple[int, ...] = ()
    t_kernels: tuple[int, ...] = ()
    s_kernel_size: int | None = None
    s_stride: int = 1
    t_kernel_size: int | None = None
    t_stride: int = 1
    n_units: int = 0
    seed: int | None = None
    untrained: bool = False
    regression: bool = False

    def __post_init__(self) -> None:
        fam = get_family(self.family)
        object.__setattr__(self, "s_kernels", tuple(int(k) for k in self.s_kernels))
        object.__setattr__(self, "t_kernels", tuple(int(k) for k in self.t_kernels))
        fam.normalise(self)
        fam.validate(self)

    # ---- identity
    @property
    def name(self) -> str:
        """The model name (see the package docstring, :mod:`deepdraw.nn.models`)."""
        return model_name(self)

    @property
    def architecture(self) -> ModelSpec:
        """This spec without seed, untrained and regression markers: what a checkpoint's weights fit."""
        return dataclasses.replace(self, seed=None, untrained=False, regression=False)

    def replace(self, **changes) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["s_kernels"] = list(self.s_kernels)
        d["t_kernels"] = list(self.t_kernels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def parse(cls, name: str) -> ModelSpec:
        return parse_model_name(name)

    def __str__(self) -> str:
        return self.name


def model_name(spec: ModelSpec) -> str:
    """Encode ``spec`` as the original's model name (see the package docstring, :mod:`deepdraw.nn.models`)."""
    fam = get_family(spec.family)
    parts = [spec.family] + (["r"] if spec.regression else []) + fam.encode_body(spec)
    if spec.seed is not None:
        parts.append(str(int(spec.seed)))
    return "_".join(parts) + ("r" if spec.untrained else "")


def parse_model_name(name: str | ModelSpec) -> ModelSpec:
    """Parse a model name back to a :class:`ModelSpec` (inverse of :func:`model_name`).

    Examples: ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``, ``spatiotemporal_4_8-8-32-64_7272_3r``,
    ``spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1``, ``lstm_3_8-16-16_256``. The grammar (family,
    regression marker, body fields, seed, untrained suffix) is :mod:`deepdraw.names`; the family turns
    the body fields into the spec's fields.
    """
    if isinstance(name, ModelSpec):
        return name
    name = str(name).strip()
    parts = split_model_name(name)
    fam = get_family(parts.family)
    tokens = [*parts.body, *([str(parts.seed)] if parts.seed is not None else [])]
    fields = fam.parse_body(tokens, name)
    return ModelSpec(family=parts.family, untrained=parts.untrained, regression=parts.regression, **fields)
