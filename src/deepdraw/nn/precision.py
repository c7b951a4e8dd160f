"""Numerical precision of training: the exact reference path and the fast paths.

``[train] precision`` (and :class:`~deepdraw.nn.train.TrainConfig` ``precision``):

- ``"fp32"``: the reference. The model's own forward (NCHW ``F.conv2d``) in float32, exactly as
  before the fast paths existed; every comparison is made against it.
- ``"fast32"``: the same function computed as large matrix products
  (:class:`~deepdraw.nn.lowered.LoweredForward`) in float32: equal to the reference up to rounding.
- ``"bf16"``: the matrix products and activations in bfloat16 (first layer, layer-norm statistics,
  head and weights in float32: mixed precision with float32 master weights).
- ``"auto"`` (default): for ART, ``"bf16"`` where the device computes bfloat16 natively (a CPU with
  AVX512-BF16 or AMX, a CUDA GPU with bfloat16 support), else ``"fast32"``; for the regression tasks
  (TDT, TDT-PV) ``"fast32"``: bfloat16's rounding of the hidden units is ~0.1 cm of hand position, and
  continuing the shipped TDT models in bfloat16 left their test error 7-8 % above the same continuation
  in float32 (``benchmarks/tdt_precision.py``; docs/training.md, "Hand position needs float32").

On CUDA the bf16 path also allows TF32 matrix products for its float32 parts; ``fast32`` and ``fp32`` keep
full float32 (TF32 off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from deepdraw.errors import DeepDrawError

if TYPE_CHECKING:  # torch-free at import: the config checks use this module
    import torch

__all__ = [
    "PRECISIONS",
    "FAST_PATHS",
    "check_precision",
    "resolve_precision",
    "bf16_native",
    "training_forward",
]

logger = logging.getLogger("deepdraw.nn.precision")
_WARNED: set[str] = set()
"""Device types already warned about an emulated bf16 (once per process)."""

PRECISIONS = ("auto", "bf16", "fast32", "fp32")
"""Accepted values of ``[train] precision``."""
FAST_PATHS = frozenset({"bf16", "fast32"})
"""The resolved precisions of the fast path (:class:`~deepdraw.nn.lowered.LoweredForward`)."""


def check_precision(value: str, where: str = "train.precision") -> str:
    """``value`` if it is a known precision, else a :class:`DeepDrawError` naming ``where``."""
    if value not in PRECISIONS:
        raise DeepDrawError(
            f"{where} is '{value}'; expected one of {', '.join(PRECISIONS)} "
            "(fp32 = the exact reference path, bf16 / fast32 = the fast paths, auto = bf16 where native)"
        )
    return value


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(value: str, device: torch.device, task: str = "art") -> str:
    """``value`` with ``"auto"`` replaced: ``"fast32"`` for a regression ``task`` (hand position in cm
    needs more than bfloat16), else ``"bf16"`` where ``device`` computes bfloat16 natively and
    ``"fast32"`` where not. An explicit ``"bf16"`` is kept, with a warning where the device emulates
    bfloat16 (many times slower than ``"fast32"``)."""
    from deepdraw.nn.models.tasks import get_task

    check_precision(value)
    if value == "auto":
        return "bf16" if not get_task(task).regression and bf16_native(device) else "fast32"
    if value == "bf16" and device.type not in _WARNED and not bf16_native(device):
        # an emulated bfloat16 product ran 30-40x slower than float32 on an AVX2-only EPYC
        # (docs/training.md, "bfloat16 without hardware support"); said once per device type
        _WARNED.add(device.type)
        which = " (a CPU without AVX512-BF16 or AMX)" if device.type == "cpu" else ""
        logger.warning(
            "precision 'bf16' on %s, which has no native bfloat16 matrix products%s: training runs many "
            "times slower than with 'fast32' or 'auto'",
            device,
            which,
        )
    return value


def training_forward(model: torch.nn.Module, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable computing ``model(x)`` at ``precision`` (resolved: not ``"auto"``).

    ``"fp32"`` returns the model itself; the fast paths a :class:`~deepdraw.nn.lowered.LoweredForward`
    over the same parameters (families it cannot lower fall back to the model, with float32).
    """
    import torch

    from deepdraw.nn.lowered import LoweredForward, supports_lowering

    if precision == "fp32" or not supports_lowering(model):
        return model
    if precision not in ("bf16", "fast32"):
        raise DeepDrawError(f"training_forward needs a resolved precision; got '{precision}'")
    return LoweredForward(model, torch.bfloat16 if precision == "bf16" else torch.float32)
