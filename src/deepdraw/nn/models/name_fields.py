"""The body fields of each family's model name: written from a :class:`~.spec.ModelSpec`, read back
into its fields, and the spec normalised to what the name can hold.

- conv families: ``{n}_{kernels}_{sK}{sS}{tK}{tS}`` (:func:`conv_encoder`, :func:`conv_parser`);
  ``spatiotemporal`` has one kernel list and repeats (sK, sS) (:func:`normalise_spatiotemporal`).
- lstm: ``{n}_{filters}_{units}[_k{sK}s{sS}]`` (:func:`lstm_encode`, :func:`lstm_parse`); the spatial
  kernel size and stride appear only when they differ from :data:`LSTM_DEFAULT_SPATIAL`.

The patterns (:data:`S_PAT`, :data:`T_PAT`, :data:`ST_PAT`, :data:`LSTM_PATTERN`) are quoted in the
errors that a malformed name raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from deepdraw.errors import DeepDrawError

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "S_PAT",
    "T_PAT",
    "ST_PAT",
    "LSTM_PATTERN",
    "LSTM_DEFAULT_SPATIAL",
    "conv_encoder",
    "conv_parser",
    "normalise_spatiotemporal",
    "normalise_lstm",
    "lstm_encode",
    "lstm_parse",
]

S_PAT = "spatial_temporal[_r]_{n}_{spatial kernels}_{temporal kernels}_{sK}{sS}{tK}{tS}[_{seed}][r]"
T_PAT = "temporal_spatial[_r]_{n}_{temporal kernels}_{spatial kernels}_{sK}{sS}{tK}{tS}[_{seed}][r]"
ST_PAT = "spatiotemporal[_r]_{n}_{kernels}_{sK}{sS}{sK}{sS}[_{seed}][r]"


def _klist(ks: Sequence[int]) -> str:
    return "-".join(str(int(k)) for k in ks)


def _ints(token: str, name: str, pattern: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in token.split("-"))
    except ValueError:
        raise DeepDrawError(f"Model name '{name}' is malformed at '{token}'; expected '{pattern}'.") from None


def _int(token: str, name: str, pattern: str) -> int:
    if not token.isdigit():
        raise DeepDrawError(f"Model name '{name}' is malformed at '{token}'; expected '{pattern}'.")
    return int(token)


def _code(token: str, name: str, pattern: str) -> tuple[int, int, int, int]:
    if len(token) != 4 or not token.isdigit():
        raise DeepDrawError(
            f"Model name '{name}' is malformed at '{token}'; expected four digits sK sS tK tS in '{pattern}'."
        )
    return tuple(int(c) for c in token)  # type: ignore[return-value]


def conv_encoder(order: str) -> Callable[[ModelSpec], list[str]]:
    def encode(spec: ModelSpec) -> list[str]:
        code = f"{spec.s_kernel_size}{spec.s_stride}{spec.t_kernel_size}{spec.t_stride}"
        if order == "st":
            kernels = [_klist(spec.s_kernels), _klist(spec.t_kernels)]
        elif order == "ts":
            kernels = [_klist(spec.t_kernels), _klist(spec.s_kernels)]
        else:
            kernels = [_klist(spec.s_kernels)]
        return [str(spec.n_layers), *kernels, code]

    return encode


def conv_parser(order: str, pattern: str) -> Callable[[list[str], str], dict]:
    nk = 1 if order == "joint" else 2

    def parse(tokens: list[str], name: str) -> dict:
        if len(tokens) not in (2 + nk, 3 + nk):
            raise DeepDrawError(
                f"Model name '{name}' has {len(tokens)} fields after the family; expected '{pattern}'."
            )
        n = _int(tokens[0], name, pattern)
        lists = [_ints(t, name, pattern) for t in tokens[1 : 1 + nk]]
        sk, ss, tk, ts = _code(tokens[1 + nk], name, pattern)
        seed = _int(tokens[2 + nk], name, pattern) if len(tokens) == 3 + nk else None
        if order == "st":
            s, t = lists
        elif order == "ts":
            t, s = lists
        else:
            s = t = lists[0]
            if (sk, ss) != (tk, ts):
                raise DeepDrawError(
                    f"Model name '{name}': a spatiotemporal code must repeat (sK, sS), e.g. 7272, got '{tokens[1 + nk]}'."
                )
        return dict(
            n_layers=n,
            s_kernels=s,
            t_kernels=t,
            s_kernel_size=sk,
            s_stride=ss,
            t_kernel_size=tk,
            t_stride=ts,
            seed=seed,
        )

    return parse


def normalise_spatiotemporal(spec: ModelSpec) -> None:
    object.__setattr__(spec, "t_kernels", tuple(spec.s_kernels))
    object.__setattr__(spec, "t_kernel_size", spec.s_kernel_size)
    object.__setattr__(spec, "t_stride", spec.s_stride)


LSTM_DEFAULT_SPATIAL = (5, 1)
"""(sK, sS) of the original's analysed LSTM (RecurrentSearchResults: s_kernelsize 5, s_stride 1); not in its name."""

_KS_RE = re.compile(r"^k(\d)s(\d)$")


def normalise_lstm(spec: ModelSpec) -> None:
    if spec.s_kernel_size is None:
        object.__setattr__(spec, "s_kernel_size", LSTM_DEFAULT_SPATIAL[0])
    object.__setattr__(spec, "t_kernels", ())
    object.__setattr__(spec, "t_kernel_size", 1)
    object.__setattr__(spec, "t_stride", 1)


def lstm_encode(spec: ModelSpec) -> list[str]:
    parts = [str(spec.n_layers), _klist(spec.s_kernels), str(spec.n_units)]
    if (spec.s_kernel_size, spec.s_stride) != LSTM_DEFAULT_SPATIAL:
        parts.append(f"k{spec.s_kernel_size}s{spec.s_stride}")
    return parts


LSTM_PATTERN = "lstm[_r]_{n}_{filters}_{units}[_k{sK}s{sS}][_{seed}][r]"


def lstm_parse(tokens: list[str], name: str) -> dict:
    if not 3 <= len(tokens) <= 5:
        raise DeepDrawError(
            f"Model name '{name}' has {len(tokens)} fields after the family; expected '{LSTM_PATTERN}'."
        )
    n = _int(tokens[0], name, LSTM_PATTERN)
    filters = _ints(tokens[1], name, LSTM_PATTERN)
    units = _int(tokens[2], name, LSTM_PATTERN)
    sk, ss = LSTM_DEFAULT_SPATIAL
    rest = tokens[3:]
    if rest and (m := _KS_RE.match(rest[0])):
        sk, ss = int(m.group(1)), int(m.group(2))
        rest = rest[1:]
    if len(rest) > 1:
        raise DeepDrawError(f"Model name '{name}' has extra fields {rest}; expected '{LSTM_PATTERN}'.")
    seed = _int(rest[0], name, LSTM_PATTERN) if rest else None
    return dict(n_layers=n, s_kernels=filters, n_units=units, s_kernel_size=sk, s_stride=ss, seed=seed)
