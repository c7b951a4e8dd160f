"""Building blocks with TF-slim semantics: 'SAME' convolution without bias, layer normalisation over
(rows, frames, channels) with per-channel scale and shift, Glorot-uniform initialisation.

Tensors inside the blocks are NCHW: ``[batch, channels, rows (muscles), frames (time)]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["same_padding", "glorot_uniform_", "Conv2dSame", "LayerNormHWC", "ConvBlock"]


def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding along one axis.

    ``out = ceil(in / stride)``, ``total = max((out - 1) * stride + kernel - in, 0)``; TF puts the odd
    pixel at the end: ``before = total // 2``, ``after = total - before``.
    """
    out = -(-in_size // stride)
    total = max((out - 1) * stride + kernel - in_size, 0)
    before = total // 2
    return before, total - before


def same_output_size(in_size: int, stride: int) -> int:
    """Output length of a 'SAME' convolution: ``ceil(in / stride)``."""
    return -(-in_size // stride)


def glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    """Fill ``weight`` from U(-a, a), ``a = sqrt(6 / (fan_in + fan_out))`` (TF ``glorot_uniform``, fan_avg)."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class Conv2dSame(nn.Module):
    """2-D cross-correlation with TF 'SAME' padding and no bias (as ``slim.conv2d`` with a normaliser).

    Weight shape ``[out_channels, in_channels, kernel_rows, kernel_frames]``; Glorot uniform with
    ``fan_in = in·kh·kw``, ``fan_out = out·kh·kw`` (as TF for a ``[kh, kw, in, out]`` kernel).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel = (int(kernel[0]), int(kernel[1]))
        self.stride = (int(stride[0]), int(stride[1]))
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *self.kernel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        area = self.kernel[0] * self.kernel[1]
        glorot_uniform_(self.weight, self.in_channels * area, self.out_channels * area)

    def output_size(self, rows: int, frames: int) -> tuple[int, int]:
        return same_output_size(rows, self.stride[0]), same_output_size(frames, self.stride[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = same_padding(x.shape[-2], self.kernel[0], self.stride[0])
        pw = same_padding(x.shape[-1], self.kernel[1], self.stride[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:  # symmetric: let the conv pad (no copy)
            return F.conv2d(x, self.weight, None, self.stride, (ph[0], pw[0]))
        return F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), self.weight, None, self.stride)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel={self.kernel}, stride={self.stride}, padding=SAME, bias=False"


class LayerNormHWC(nn.Module):
    """``slim.layer_norm`` on NHWC data: each sample is normalised over all of (rows, frames, channels)
    (biased variance, ``eps`` inside the square root), then scaled and shifted per channel
    (gamma initialised to 1, beta to 0)."""

    def __init__(self, channels: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.channels = int(channels)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(self.channels))
        self.bias = nn.Parameter(torch.zeros(self.channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, x.shape[1:], None, None, self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, normalised over (rows, frames, channels)"


class ConvBlock(nn.Module):
    """conv ('SAME', no bias) → LayerNorm over (rows, frames, channels) → ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: tuple[int, int], stride: tuple[int, int]
    ) -> None:
        super().__init__()
        self.conv = Conv2dSame(in_channels, out_channels, kernel, stride)
        self.norm = LayerNormHWC(out_channels)

    @property
    def kernel(self) -> tuple[int, int]:
        return self.conv.kernel

    @property
    def stride(self) -> tuple[int, int]:
        return self.conv.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))
