"""The networks: :class:`DeepDrawNet` (input checks, conv trunk, layer shapes, seeded initialisation)
and its two kinds, :class:`ConvNet` (``spatial_temporal``, ``temporal_spatial``, ``spatiotemporal``) and
:class:`RecurrentNet` (``lstm``), each with its task head; :func:`conv_weight_count`.

Every conv layer is conv ('SAME', no bias, Glorot uniform) → LayerNorm over (rows, frames, channels) →
ReLU. Heads: ``art`` = flatten → dropout 0.3 (TF keep_prob 0.7) → linear to 20 logits (LSTM: the last
time step); ``tdt`` / ``tdt_pv`` = no dropout, ``[B, rows', frames', C] → [B, frames', rows'·C]`` →
linear to 3 / 6 per output frame. Module attribute names (``blocks``, ``lstm``, ``readout``) are the
keys of the checkpoints' state dicts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from deepdraw.contracts import N_FRAMES, N_MUSCLES
from deepdraw.errors import DeepDrawError
from deepdraw.nn.layers import ConvBlock, glorot_uniform_, same_output_size

from .tasks import TASKS, get_task

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = ["INPUT_SHAPE", "DeepDrawNet", "ConvNet", "RecurrentNet", "conv_weight_count"]

INPUT_SHAPE: tuple[int, int, int] = (N_MUSCLES, N_FRAMES, 2)
"""(muscles, frames, channels) of the network input; channel 0 length (mm), 1 velocity (mm/s)."""


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


def conv_weight_count(model: DeepDrawNet) -> int:
    """Number of conv kernel weights (no LayerNorm, LSTM or readout parameters), as the paper counts."""
    return sum(b.conv.weight.numel() for b in model.conv_blocks())
