"""The conv networks computed as a few large matrix products (the fast training path).

The reference forward (:meth:`~deepdraw.nn.models.DeepDrawNet.forward`) runs every block as an NCHW
``F.conv2d``. The layers of these networks have few channels (2..64) and short kernels, which direct
convolution libraries handle poorly: the profiler shows half of a training step of S-7293 in
``convolution_backward`` and layout copies. Here the same function, with the same parameters, is
computed differently:

- Activations are kept as ``[batch, frames, rows, channels]`` (frames outermost), so one frame's
  ``rows x channels`` features are contiguous.
- A conv with a kernel over rows (``kh > 1``: spatial and spatiotemporal layers) becomes one matrix
  product: the input frames a window needs are laid side by side (``im2col`` along frames only), and
  the rows are handled by a *banded* weight matrix ``[(taps, rows_in, channels_in), (rows_out,
  channels_out)]`` gathered from the conv weight, with 'SAME' padding as zero entries. The 25 muscle
  rows are few, so the band costs at most a few times the conv's multiply-adds and runs as one
  large GEMM (e.g. ``[256·320, 50] @ [50, 104]``).
- A conv along frames only (``kh == 1``: temporal layers) is one GEMM per (frame, row) window:
  ``[(taps, channels_in), channels_out]``.
- Windows along frames are made of *blocks of stride frames*: the frames of a sample are viewed as
  ``[frames / stride, stride · features]`` and a window of ``k`` taps is ``q = ceil(k / stride)``
  consecutive blocks (taps past ``k`` get zero weight). The windows are never built: each block is
  multiplied by the ``q`` taps' weight matrices in one GEMM and each window adds the products of its
  ``q`` blocks (the earlier version laid the blocks of every window side by side, a ``q``-fold copy of
  the input whose concatenation, copies and adds took ~40 % of an ST-7272 step).
- Layer norm over ``(frames, rows, channels)`` with the per-channel scale and shift is one
  ``F.layer_norm`` call (the scale expanded over frames and rows), then an in-place ReLU.
- A first layer with a 2-D kernel (the spatiotemporal family) keeps the library's float32
  convolution: on the 2-channel input it is efficient, and its banded matrix would be mostly zeros.

With ``dtype=torch.bfloat16`` the activations and the matrix products run in bfloat16 (the weights stay
float32, cast per step: "mixed precision with fp32 master weights"); layer-norm statistics are
accumulated in float32 by the kernel, and the head (dropout, readout, LSTM) runs in float32. Dropout
draws from :attr:`LoweredForward.generator` when one is set (the trainer gives each model its own),
else from the global RNG as the model's own dropout does.

:class:`LoweredForward` is a callable over a model: ``LoweredForward(model)(x)`` equals ``model(x)``
up to rounding (float32) or within bfloat16 tolerance. It holds index tensors only, no parameters:
the optimizer, checkpoints and every other stage keep using the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F

from deepdraw.nn.layers import ConvBlock, same_output_size, same_padding
from deepdraw.nn.models.networks import ConvNet, DeepDrawNet, RecurrentNet

__all__ = ["LoweredForward", "band_index", "supports_lowering"]


def supports_lowering(model: torch.nn.Module) -> TypeGuard[DeepDrawNet]:
    """Whether :class:`LoweredForward` can compute ``model`` (every registered family can)."""
    return isinstance(model, (ConvNet, RecurrentNet))


def _taps(kernel: int, stride: int) -> int:
    """Blocks of ``stride`` frames that cover a window of ``kernel`` taps."""
    return -(-kernel // stride)


def band_index(block: ConvBlock, rows_in: int) -> tuple[torch.Tensor, int]:
    """Index of the banded weight matrix of ``block`` into ``cat([weight.flatten(), 0])``.

    Rows of the matrix are ``(block j, frame r in the block, input row, input channel)``, columns
    ``(output row, output channel)``; tap ``j·s + r`` of the conv kernel (``s`` = the frame stride), or
    the zero slot where the tap is past the kernel or the input row falls in the 'SAME' padding.
    Returns ``(index [rows, cols] int64, rows_out)``. With ``rows_in = 1`` (a frames-only conv applied
    to one row at a time) it is the ``[(j, r, channel_in), channel_out]`` matrix of the taps alone.
    """
    w = block.conv.weight
    cout, cin, kh, kw = (int(v) for v in w.shape)
    sh = int(block.conv.stride[0])
    s = int(block.conv.stride[1])
    q = _taps(kw, s)
    rows_out = same_output_size(rows_in, sh)
    pad = same_padding(rows_in, kh, sh)[0]
    j = torch.arange(q).view(q, 1, 1, 1, 1, 1)
    r = torch.arange(s).view(1, s, 1, 1, 1, 1)
    hi = torch.arange(rows_in).view(1, 1, rows_in, 1, 1, 1)
    ci = torch.arange(cin).view(1, 1, 1, cin, 1, 1)
    ho = torch.arange(rows_out).view(1, 1, 1, 1, rows_out, 1)
    co = torch.arange(cout).view(1, 1, 1, 1, 1, cout)
    kt = j * s + r
    kr = hi - (ho * sh - pad)
    valid = (kr >= 0) & (kr < kh) & (kt < kw)
    flat = ((co * cin + ci) * kh + kr.clamp(0, kh - 1)) * kw + kt.clamp(0, kw - 1)
    idx = torch.where(valid, flat, torch.full_like(flat, cout * cin * kh * kw))
    return idx.reshape(q * s * rows_in * cin, rows_out * cout), rows_out


class _Gather(torch.autograd.Function):
    """``cat([w.flatten(), 0])[index]`` (a layer's banded matrix) with a scatter-add backward.

    Autograd's backward of an advanced index is an accumulating ``index_put_``, which sorts the index
    every step (2 ms for a 1,024 x 128 band on 2 cores); ``index_add_`` of the same sum is ~7x faster
    and, on one CPU tensor, adds in index order (deterministic).
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.shape, ctx.numel = w.shape, w.numel()
        return torch.cat([w.reshape(-1), w.new_zeros(1)])[index]

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (index,) = ctx.saved_tensors
        n = ctx.numel
        flat = g.new_zeros(n + 1).index_add_(0, index.reshape(-1), g.reshape(-1))
        return flat[:n].view(ctx.shape), None


class _TapSum(torch.autograd.Function):
    """``[B, n + q - 1, q, C] -> [B, n, C]``: ``y[:, t] = sum_j z[:, t + j, j]``.

    The per-tap products of all blocks, summed along the window: block ``t + j`` enters window ``t``
    through tap ``j``. The backward writes the gradient into the ``q`` shifted slices of one buffer
    (autograd's slicing would allocate a full-size zero tensor per slice).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        q = z.shape[2]
        n = z.shape[1] - q + 1
        ctx.shape = z.shape
        y = z[:, 0:n, 0].clone()
        for j in range(1, q):
            y += z[:, j : j + n, j]
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        shape = ctx.shape
        q = shape[2]
        n = shape[1] - q + 1
        grad = g.new_zeros(shape)
        for j in range(q):
            grad[:, j : j + n, j] = g
        return grad


@dataclass
class _Layer:
    block: ConvBlock
    index: torch.Tensor  # into cat([weight.flatten(), 0])
    rows_only: bool  # kernel over frames only: one GEMM per (frame, row) window
    rows_in: int
    rows_out: int
    frames_out: int
    stride: int  # frame stride
    taps: int  # blocks of `stride` frames per window
    pad_before: int
    pad_after: int  # may be negative: trailing frames no window reaches


def _plan(model: DeepDrawNet) -> list[_Layer]:
    rows, frames, _ = model.input_shape
    plan = []
    for block in model.conv_blocks():
        kh, kw = block.conv.kernel
        sh, sw = block.conv.stride
        rows_only = kh == 1 and sh == 1
        if rows_only:
            index, rows_out = band_index(block, 1)[0], rows
        else:
            index, rows_out = band_index(block, rows)
        frames_out = same_output_size(frames, sw)
        q = _taps(kw, sw)
        before = same_padding(frames, kw, sw)[0]
        after = (frames_out + q - 1) * sw - before - frames
        plan.append(_Layer(block, index, rows_only, rows, rows_out, frames_out, sw, q, before, after))
        rows, frames = rows_out, frames_out
    return plan


class LoweredForward:
    """``model``'s forward pass computed with matrix products (see module docs); same parameters.

    Args:
        model: a :class:`~deepdraw.nn.models.ConvNet` or :class:`~deepdraw.nn.models.RecurrentNet`.
        dtype: ``torch.float32`` or ``torch.bfloat16`` for the trunk's activations and products.
    """

    def __init__(self, model: DeepDrawNet, dtype: torch.dtype = torch.float32) -> None:
        if not supports_lowering(model):
            raise TypeError(f"no lowered forward for {type(model).__name__}")
        self.model = model
        self.dtype = dtype
        self.plan = _plan(model)
        self.generator: torch.Generator | None = None  # dropout stream; None: the global RNG
        self._device: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self._device != device:
            for layer in self.plan:
                layer.index = layer.index.to(device)
            self._device = device

    @staticmethod
    def _weight(layer: _Layer, dtype: torch.dtype) -> torch.Tensor:
        return _Gather.apply(layer.block.conv.weight, layer.index).to(dtype)

    def _conv(self, layer: _Layer, h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """One block's conv on ``h`` [B, frames, rows, channels] -> [B, frames', rows', channels'].

        With ``q > 1`` blocks per window, every block is multiplied by the ``q`` taps' matrices at
        once (one GEMM ``[blocks, D] @ [D, q·C']``) and the window sums the products of its blocks
        (:class:`_TapSum`): no input window is materialised, and the product's extra rows are only
        the ``q - 1`` padding blocks.
        """
        b = h.shape[0]
        w = self._weight(layer, dtype)  # [(j, r, rows, c), C']
        s, q, fo = layer.stride, layer.taps, layer.frames_out
        if s == 1 and q == 1:
            blocks = h.reshape(b, fo, -1)
        else:
            if layer.pad_after >= 0:
                hp = F.pad(h, (0, 0, 0, 0, layer.pad_before, layer.pad_after))
            else:
                hp = F.pad(h, (0, 0, 0, 0, layer.pad_before, 0))[:, : (fo + q - 1) * s]
            blocks = hp.reshape(b, fo + q - 1, s, h.shape[2], h.shape[3])
        nb = fo + q - 1
        if layer.rows_only:
            # rows become batch: [B, rows, blocks, (r, c)]
            seq = blocks.reshape(b, nb, s, layer.rows_in, -1).permute(0, 3, 1, 2, 4)
            seq = seq.reshape(b * layer.rows_in, nb, -1)
        else:
            seq = blocks.reshape(b, nb, -1)
        d = seq.shape[-1]
        if q == 1:
            y = seq.reshape(-1, d) @ w
        else:
            taps = w.view(q, d, -1).permute(1, 0, 2).reshape(d, -1)  # [D, (j, C')]
            z = (seq.reshape(-1, d) @ taps).view(seq.shape[0], nb, q, -1)
            y = _TapSum.apply(z)
        if layer.rows_only:
            return y.view(b, layer.rows_in, fo, -1).transpose(1, 2)  # strided; the layer norm copies it once
        return y.view(b, fo, layer.rows_out, -1)

    def _norm_relu(self, layer: _Layer, y: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Layer norm (statistics of ``y``'s dtype), cast to ``dtype`` (default: ``y``'s), in-place ReLU.

        The ReLU after the cast computes the same values (rounding keeps signs and zeros) with its
        backward in ``dtype``: for the float32 first layer, bfloat16's mask is ~8x cheaper.
        """
        norm = layer.block.norm
        b = y.shape[0]
        reps = y.shape[1] * y.shape[2]
        weight = norm.weight.expand(reps, -1).reshape(-1)
        bias = norm.bias.expand(reps, -1).reshape(-1)
        if y.dtype != weight.dtype:
            weight, bias = weight.to(y.dtype), bias.to(y.dtype)
        z = F.layer_norm(y.reshape(b, -1), (weight.numel(),), weight, bias, norm.eps)
        if dtype is not None:
            z = z.to(dtype)
        return torch.relu_(z).view(y.shape)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden state after the last block, ``[B, frames', rows', channels']`` in ``dtype``."""
        self._to(x.device)
        # the first layer runs in float32: the inputs are ~100 mm lengths whose informative variation
        # is a few mm, below bfloat16's resolution there (0.5 mm)
        first = self.plan[0]
        if min(first.block.conv.kernel) > 1:
            # a 2-D kernel on the raw input: the library's float32 convolution is efficient there
            # (few input channels, many frames); its output is brought to [B, frames, rows, C]
            y = first.block.conv(x.permute(0, 3, 1, 2).float()).permute(0, 3, 2, 1)
        else:
            y = self._conv(first, x.permute(0, 2, 1, 3).float(), torch.float32)
        h = self._norm_relu(first, y, self.dtype)
        for layer in self.plan[1:]:
            h = self._norm_relu(layer, self._conv(layer, h, self.dtype))
        return h

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """The head's dropout: the model's module, or the same operation drawn from ``generator``."""
        drop = self.model.dropout
        if drop is None or not drop.training or drop.p == 0 or self.generator is None:
            return h if drop is None else drop(h)
        keep = 1.0 - drop.p
        # a uniform draw below `keep` (3x faster than bernoulli_ on the CPU; the same distribution)
        mask = torch.rand(h.shape, generator=self.generator, device=h.device, dtype=h.dtype) < keep
        return (h * mask).mul_(1.0 / keep)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        m._check_input(x)
        h = self.trunk(x).float()
        b, t, rows, c = h.shape
        if isinstance(m, RecurrentNet):
            seq = h.reshape(b, t, rows * c)
            if seq.is_cuda:
                m.lstm.flatten_parameters()
            r, _ = m.lstm(seq)
            return m.readout(r) if m.regression else m.readout(self._dropout(r[:, -1]))
        if m.regression:
            return m.readout(h.reshape(b, t, rows * c))
        # flatten (rows, frames, channels) as the reference (TF) order
        return m.readout(self._dropout(h.permute(0, 2, 1, 3).reshape(b, -1)))
