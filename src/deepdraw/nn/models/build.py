"""The paper's four families registered in :data:`~.families.FAMILIES` (``spatial_temporal``,
``temporal_spatial``, ``spatiotemporal``, ``lstm``), with their default learning rate and batch size,
and :func:`build_model`, which builds the network of a spec or model name.
"""

from __future__ import annotations

from .families import Family, get_family, register_family
from .name_fields import (
    LSTM_PATTERN,
    S_PAT,
    ST_PAT,
    T_PAT,
    conv_encoder,
    conv_parser,
    lstm_encode,
    lstm_parse,
    normalise_lstm,
    normalise_spatiotemporal,
)
from .networks import INPUT_SHAPE, ConvNet, DeepDrawNet, RecurrentNet
from .spec import ModelSpec, parse_model_name

__all__ = ["build_model"]

register_family(
    Family(
        "spatial_temporal",
        "S",
        False,
        conv_encoder("st"),
        conv_parser("st", S_PAT),
        ConvNet,
        5e-4,
        256,
        S_PAT,
    )
)
register_family(
    Family(
        "temporal_spatial",
        "TS",
        False,
        conv_encoder("ts"),
        conv_parser("ts", T_PAT),
        ConvNet,
        5e-4,
        256,
        T_PAT,
    )
)
register_family(
    Family(
        "spatiotemporal",
        "ST",
        False,
        conv_encoder("joint"),
        conv_parser("joint", ST_PAT),
        ConvNet,
        5e-4,
        256,
        ST_PAT,
        normalise_spatiotemporal,
    )
)
# The original's LSTM search trained with lr 1e-3 and batch 128 (train_networks.py, train_initializations.py).
register_family(
    Family(
        "lstm",
        "LSTM",
        True,
        lstm_encode,
        lstm_parse,
        RecurrentNet,
        1e-3,
        128,
        LSTM_PATTERN,
        normalise_lstm,
    )
)


def _as_spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else parse_model_name(spec)


def build_model(
    spec: ModelSpec | str,
    task: str = "art",
    *,
    seed: int | None = None,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> DeepDrawNet:
    """Build the network for ``spec`` (a :class:`ModelSpec` or a model name) and ``task``.

    With ``seed`` the weights come from a private generator seeded with it (identical on every device;
    build on CPU, then ``.to(device)``); without, from the global torch RNG.
    """
    spec = _as_spec(spec)
    model = get_family(spec.family).build(spec, task, input_shape)
    if seed is not None:
        model.reset_parameters(seed)
    return model
