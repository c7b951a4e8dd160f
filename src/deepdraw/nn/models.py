"""Network families of the paper, registered by name, and the original's model-name grammar.

Families (one registry, :data:`FAMILIES`):

- ``spatial_temporal`` (S): ``n`` spatial convs (kernel ``[sK, 1]``, stride ``[sS, 1]``, keys ``spatial{i}``)
  then ``n`` temporal convs (kernel ``[1, tK]``, stride ``[1, tS]``, keys ``temporal{i}``).
- ``temporal_spatial`` (T-S): the temporal block first.
- ``spatiotemporal`` (ST): ``n`` 2-D convs, kernel ``[sK, sK]``, stride ``[sS, sS]`` (keys ``spatiotemporal{i}``).
- ``lstm``: ``n`` spatial convs, then ``[B, frames, rows·channels]`` → one-layer LSTM (key ``recurrent_out``).

Every conv layer is conv ('SAME', no bias, Glorot uniform) → LayerNorm over (rows, frames, channels) → ReLU.

Heads (:data:`TASKS`): ``art`` = flatten → dropout 0.3 (TF keep_prob 0.7) → linear to 20 logits (LSTM: the
last time step); ``tdt`` / ``tdt_pv`` = no dropout, ``[B, rows', frames', C] → [B, frames', rows'·C]`` →
linear to 3 (hand xyz, cm) / 6 (position and velocity, min-max scaled) per output frame.

Model names (identity keys, as the original):

- conv: ``{family}[_r]_{n}_{kernels}_{sK}{sS}{tK}{tS}[_{seed}][r]``; ``kernels`` is ``spatial_temporal``:
  ``"8-16-16-32_32-32-64-64"`` (spatial then temporal), ``temporal_spatial``: temporal then spatial,
  ``spatiotemporal``: one list (and ``tK = sK``, ``tS = sS``, e.g. ``spatiotemporal_4_8-8-32-64_7272``).
- lstm: ``lstm[_r]_{n}_{filters}_{units}[_k{sK}s{sS}][_{seed}][r]``. The original's LSTM name has no
  field for the spatial kernel size / stride; its analysed model used sK = 5, sS = 1, which is this
  package's default. A non-default (sK, sS) adds the token ``k{sK}s{sS}`` after the units (letters keep it
  distinct from the seed), so ``lstm_3_8-16-16_256`` is exactly the original's name.
- ``_r_`` after the family marks a regression (TDT) model as in the original; a trailing ``r`` marks an
  untrained control.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from deepdraw.contracts import N_FRAMES, N_MUSCLES
from deepdraw.errors import DeepDrawError
from deepdraw.names import NAME_RULES, split_model_name
from deepdraw.nn.layers import ConvBlock, glorot_uniform_, same_output_size

__all__ = [
    "INPUT_SHAPE",
    "FAMILIES",
    "TASKS",
    "Family",
    "Task",
    "ModelSpec",
    "DeepDrawNet",
    "ConvNet",
    "RecurrentNet",
    "register_family",
    "get_family",
    "get_task",
    "parse_model_name",
    "model_name",
    "build_model",
    "conv_weight_count",
]

INPUT_SHAPE: tuple[int, int, int] = (N_MUSCLES, N_FRAMES, 2)
"""(muscles, frames, channels) of the network input; channel 0 length (mm), 1 velocity (mm/s)."""


# --------------------------------------------------------------------------------------------- tasks
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


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.4)
    return f"; did you mean '{close[0]}'?" if close else f"; expected one of {', '.join(options)}."


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise :class:`DeepDrawError` with a suggestion."""
    if name not in TASKS:
        raise DeepDrawError(f"Unknown task '{name}'{_suggest(str(name), sorted(TASKS))}")
    return TASKS[name]


# -------------------------------------------------------------------------------------------- spec
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
        """The model name (see module docstring)."""
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


# ------------------------------------------------------------------------------------------ families
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
        raise DeepDrawError(f"Unknown model family '{name}'{_suggest(str(name), sorted(FAMILIES))}")
    return FAMILIES[name]


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


def _conv_encoder(order: str) -> Callable[[ModelSpec], list[str]]:
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


def _conv_parser(order: str, pattern: str) -> Callable[[list[str], str], dict]:
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


def _normalise_spatiotemporal(spec: ModelSpec) -> None:
    object.__setattr__(spec, "t_kernels", tuple(spec.s_kernels))
    object.__setattr__(spec, "t_kernel_size", spec.s_kernel_size)
    object.__setattr__(spec, "t_stride", spec.s_stride)


LSTM_DEFAULT_SPATIAL = (5, 1)
"""(sK, sS) of the original's analysed LSTM (RecurrentSearchResults: s_kernelsize 5, s_stride 1); not in its name."""

_KS_RE = re.compile(r"^k(\d)s(\d)$")


def _normalise_lstm(spec: ModelSpec) -> None:
    if spec.s_kernel_size is None:
        object.__setattr__(spec, "s_kernel_size", LSTM_DEFAULT_SPATIAL[0])
    object.__setattr__(spec, "t_kernels", ())
    object.__setattr__(spec, "t_kernel_size", 1)
    object.__setattr__(spec, "t_stride", 1)


def _lstm_encode(spec: ModelSpec) -> list[str]:
    parts = [str(spec.n_layers), _klist(spec.s_kernels), str(spec.n_units)]
    if (spec.s_kernel_size, spec.s_stride) != LSTM_DEFAULT_SPATIAL:
        parts.append(f"k{spec.s_kernel_size}s{spec.s_stride}")
    return parts


_LSTM_PATTERN = "lstm[_r]_{n}_{filters}_{units}[_k{sK}s{sS}][_{seed}][r]"


def _lstm_parse(tokens: list[str], name: str) -> dict:
    if not 3 <= len(tokens) <= 5:
        raise DeepDrawError(
            f"Model name '{name}' has {len(tokens)} fields after the family; expected '{_LSTM_PATTERN}'."
        )
    n = _int(tokens[0], name, _LSTM_PATTERN)
    filters = _ints(tokens[1], name, _LSTM_PATTERN)
    units = _int(tokens[2], name, _LSTM_PATTERN)
    sk, ss = LSTM_DEFAULT_SPATIAL
    rest = tokens[3:]
    if rest and (m := _KS_RE.match(rest[0])):
        sk, ss = int(m.group(1)), int(m.group(2))
        rest = rest[1:]
    if len(rest) > 1:
        raise DeepDrawError(f"Model name '{name}' has extra fields {rest}; expected '{_LSTM_PATTERN}'.")
    seed = _int(rest[0], name, _LSTM_PATTERN) if rest else None
    return dict(n_layers=n, s_kernels=filters, n_units=units, s_kernel_size=sk, s_stride=ss, seed=seed)


def model_name(spec: ModelSpec) -> str:
    """Encode ``spec`` as the original's model name (see module docstring)."""
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


def _as_spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else parse_model_name(spec)


# ---------------------------------------------------------------------------------------------- nets
class DeepDrawNet(nn.Module):
    """Base class: input ``[B, 25 muscles, 320 frames, 2 channels]`` (the file layout, NHWC);
    convs run in NCHW internally; layer outputs are reported as ``[B, rows, frames, channels]``.

    ``forward(x)`` returns the output (``art``: logits ``[B, 20]``; ``tdt``/``tdt_pv``:
    ``[B, frames', 3 or 6]``); ``forward(x, return_layers=True)`` returns ``(output, layers)`` with
    ``layers`` an ordered dict of every hidden layer's output (keys ``spatial0``…, ``temporal0``…,
    ``spatiotemporal0``…, ``recurrent_out`` ``[B, frames, units]``).
    """

    # set by the subclasses (attribute types for the type checker; nn.Module keeps the modules)
    dropout: nn.Dropout | None
    readout: nn.Linear

    def __init__(self, spec: ModelSpec, task: str, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> None:
        super().__init__()
        self.spec = spec
        self.task = get_task(task).name
        self.n_outputs = TASKS[self.task].n_outputs
        self.regression = TASKS[self.task].regression
        rows, frames, channels = input_shape
        self.input_shape = (int(rows), int(frames), int(channels))
        self.blocks = nn.ModuleDict()

    def conv_blocks(self) -> list[ConvBlock]:
        """The conv blocks of ``self.blocks``, in order."""
        return [cast(ConvBlock, b) for b in self.blocks.values()]  # _add_blocks adds ConvBlocks only

    # ---- helpers for subclasses
    def _add_blocks(
        self, layers: list[tuple[str, int, tuple[int, int], tuple[int, int]]]
    ) -> tuple[int, int, int]:
        rows, frames, ch = self.input_shape
        self._shapes: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        self._time_ops: OrderedDict[str, tuple[int, int]] = OrderedDict()
        for lname, out_ch, kernel, stride in layers:
            block = ConvBlock(ch, out_ch, kernel, stride)
            self.blocks[lname] = block
            rows, frames, ch = same_output_size(rows, stride[0]), same_output_size(frames, stride[1]), out_ch
            self._shapes[lname] = (rows, frames, ch)
            self._time_ops[lname] = (kernel[1], stride[1])
        return rows, frames, ch

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise DeepDrawError(
                f"Input to model {self.spec.name} has shape {tuple(x.shape)}; expected "
                f"[batch, {', '.join(str(v) for v in self.input_shape)}] (muscles, frames, channels)."
            )

    def _trunk(self, x: torch.Tensor, layers: OrderedDict | None) -> torch.Tensor:
        h = x.permute(0, 3, 1, 2)
        for lname, block in self.blocks.items():
            h = block(h)
            if layers is not None:
                layers[lname] = h.permute(0, 2, 3, 1)
        return h

    # ---- public
    def layer_shapes(self) -> OrderedDict[str, tuple[int, int, int]]:
        """(rows, frames, channels) per layer for one sample (``recurrent_out``: (1, frames, units))."""
        return OrderedDict(self._shapes)

    def layer_time_ops(self) -> OrderedDict[str, tuple[int, int]]:
        """(temporal kernel, temporal stride) per layer, in order; used for receptive-field centres."""
        return OrderedDict(self._time_ops)

    @property
    def layer_names(self) -> list[str]:
        return list(self._shapes)

    @property
    def output_frames(self) -> int:
        """Number of output frames of a regression head (frames of the last layer)."""
        return next(reversed(self._shapes.values()))[1]

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialise every weight in a fixed order from ``seed`` (a private generator; the global
        torch RNG is untouched), or from the global RNG when ``seed`` is None."""
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if module is self:
                continue
            init = getattr(module, "_deepdraw_init", None)
            if init is not None:
                init(module, gen)

    def extra_repr(self) -> str:
        return f"name={self.spec.name}, task={self.task}"


def _init_conv(module, gen) -> None:
    area = module.kernel[0] * module.kernel[1]
    _glorot(module.weight, module.in_channels * area, module.out_channels * area, gen)


def _init_norm(module, gen) -> None:
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.bias.fill_(0.0)


def _init_linear(module, gen) -> None:
    _glorot(module.weight, module.in_features, module.out_features, gen)
    with torch.no_grad():
        module.bias.zero_()


def _init_lstm(module, gen) -> None:
    # cuDNN canonical layout: each gate's input and recurrent matrix initialised on its own
    # (TF CudnnLSTM: glorot_uniform per canonical weight, zero biases, no forget-gate bias).
    u = module.hidden_size
    for pname, p in module.named_parameters():
        if pname.startswith("weight"):
            for g in range(4):
                _glorot(p[g * u : (g + 1) * u], p.shape[1], u, gen)
        else:
            with torch.no_grad():
                p.zero_()


def _glorot(w: torch.Tensor, fan_in: int, fan_out: int, gen) -> None:
    if gen is None:
        glorot_uniform_(w, fan_in, fan_out)
        return
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    with torch.no_grad():
        w.copy_(torch.rand(w.shape, generator=gen, dtype=w.dtype) * (2 * bound) - bound)


def _tag(module: nn.Module, init) -> nn.Module:
    module._deepdraw_init = init
    return module


class ConvNet(DeepDrawNet):
    """spatial_temporal / temporal_spatial / spatiotemporal network."""

    def __init__(
        self, spec: ModelSpec, task: str = "art", input_shape: tuple[int, int, int] = INPUT_SHAPE
    ) -> None:
        super().__init__(spec, task, input_shape)
        sk, tk = spec.s_kernel_size, spec.t_kernel_size
        assert sk is not None and tk is not None  # the conv families require both (Family.validate)
        s = [(f"spatial{i}", spec.s_kernels[i], (sk, 1), (spec.s_stride, 1)) for i in range(spec.n_layers)]
        t = [(f"temporal{i}", spec.t_kernels[i], (1, tk), (1, spec.t_stride)) for i in range(spec.n_layers)]
        if spec.family == "spatial_temporal":
            plan = s + t
        elif spec.family == "temporal_spatial":
            plan = t + s
        else:
            st = spec.s_stride
            plan = [
                (f"spatiotemporal{i}", spec.s_kernels[i], (sk, sk), (st, st)) for i in range(spec.n_layers)
            ]
        rows, frames, ch = self._add_blocks(plan)
        if self.regression:
            self.dropout = None
            self.readout = nn.Linear(rows * ch, self.n_outputs)
        else:
            self.dropout = nn.Dropout(0.3)
            self.readout = nn.Linear(rows * frames * ch, self.n_outputs)
        self.flat_features = rows * frames * ch
        for b in self.conv_blocks():
            _tag(b.conv, _init_conv)
            _tag(b.norm, _init_norm)
        _tag(self.readout, _init_linear)
        self.reset_parameters(None)

    def forward(self, x: torch.Tensor, return_layers: bool = False):
        self._check_input(x)
        layers: OrderedDict | None = OrderedDict() if return_layers else None
        h = self._trunk(x, layers)  # [B, C, H, T]
        b, c, hh, t = h.shape
        if self.regression:
            out = self.readout(h.permute(0, 3, 2, 1).reshape(b, t, hh * c))  # [B, T', H'·C] → [B, T', d]
        else:
            assert self.dropout is not None  # set for classification heads
            out = self.readout(self.dropout(h.permute(0, 2, 3, 1).reshape(b, -1)))  # flatten (H, W, C) as TF
        return (out, layers) if return_layers else out


class RecurrentNet(DeepDrawNet):
    """Spatial convs → ``[B, frames, rows·channels]`` → one-layer LSTM → (dropout) → linear per step."""

    def __init__(
        self, spec: ModelSpec, task: str = "art", input_shape: tuple[int, int, int] = INPUT_SHAPE
    ) -> None:
        super().__init__(spec, task, input_shape)
        sk = spec.s_kernel_size
        assert sk is not None  # the LSTM family's normalise sets its default
        plan = [(f"spatial{i}", spec.s_kernels[i], (sk, 1), (spec.s_stride, 1)) for i in range(spec.n_layers)]
        rows, frames, ch = self._add_blocks(plan)
        self.lstm_input_size = rows * ch
        self.lstm = nn.LSTM(self.lstm_input_size, spec.n_units, num_layers=1, batch_first=True)
        self._shapes["recurrent_out"] = (1, frames, spec.n_units)
        self._time_ops["recurrent_out"] = (1, 1)
        self.dropout = None if self.regression else nn.Dropout(0.3)
        self.readout = nn.Linear(spec.n_units, self.n_outputs)
        for b in self.conv_blocks():
            _tag(b.conv, _init_conv)
            _tag(b.norm, _init_norm)
        _tag(self.lstm, _init_lstm)
        _tag(self.readout, _init_linear)
        self.reset_parameters(None)

    def forward(self, x: torch.Tensor, return_layers: bool = False):
        self._check_input(x)
        layers: OrderedDict | None = OrderedDict() if return_layers else None
        h = self._trunk(x, layers)  # [B, C, H, T]
        b, c, hh, t = h.shape
        seq = h.permute(0, 3, 2, 1).reshape(b, t, hh * c)
        if seq.is_cuda:
            self.lstm.flatten_parameters()
        r, _ = self.lstm(seq)  # [B, T, U]
        if layers is not None:
            layers["recurrent_out"] = r
        if self.regression:
            out = self.readout(r)
        else:
            # dropout and the readout act per step; the logits are those of the last step
            assert self.dropout is not None  # set for classification heads
            out = self.readout(self.dropout(r[:, -1]))
        return (out, layers) if return_layers else out


# ------------------------------------------------------------------------------------- registration
_S_PAT = "spatial_temporal[_r]_{n}_{spatial kernels}_{temporal kernels}_{sK}{sS}{tK}{tS}[_{seed}][r]"
_T_PAT = "temporal_spatial[_r]_{n}_{temporal kernels}_{spatial kernels}_{sK}{sS}{tK}{tS}[_{seed}][r]"
_ST_PAT = "spatiotemporal[_r]_{n}_{kernels}_{sK}{sS}{sK}{sS}[_{seed}][r]"

register_family(
    Family(
        "spatial_temporal",
        "S",
        False,
        _conv_encoder("st"),
        _conv_parser("st", _S_PAT),
        ConvNet,
        5e-4,
        256,
        _S_PAT,
    )
)
register_family(
    Family(
        "temporal_spatial",
        "TS",
        False,
        _conv_encoder("ts"),
        _conv_parser("ts", _T_PAT),
        ConvNet,
        5e-4,
        256,
        _T_PAT,
    )
)
register_family(
    Family(
        "spatiotemporal",
        "ST",
        False,
        _conv_encoder("joint"),
        _conv_parser("joint", _ST_PAT),
        ConvNet,
        5e-4,
        256,
        _ST_PAT,
        _normalise_spatiotemporal,
    )
)
# The original's LSTM search trained with lr 1e-3 and batch 128 (train_networks.py, train_initializations.py).
register_family(
    Family(
        "lstm",
        "LSTM",
        True,
        _lstm_encode,
        _lstm_parse,
        RecurrentNet,
        1e-3,
        128,
        _LSTM_PATTERN,
        _normalise_lstm,
    )
)


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


def conv_weight_count(model: DeepDrawNet) -> int:
    """Number of conv kernel weights (no LayerNorm, LSTM or readout parameters), as the paper counts."""
    return sum(b.conv.weight.numel() for b in model.conv_blocks())
