"""Trajectory-decoding targets and receptive-field centres.

Receptive-field centres. A 'SAME' conv with temporal kernel ``k``, stride ``s`` and ``pad_before = p``
maps output frame ``o`` to input frames ``o·s − p … o·s − p + k − 1``, centred on ``o·s − p + (k − 1)/2``.
Composing these affine maps through the layers gives, for every layer, the input frame at the centre of
each output frame's receptive field (S-7293 final layer: frames 40, 121, 202, 283). Centres are rounded
and clipped to ``[0, n_frames − 1]``.

TDT targets. The hand position (``endeffector_coords``, cm) at the receptive-field centre of each output
frame: ``(N, 3, 320) → (N, frames', 3)``. The original subsampled ``::(320 // (frames' − 1))`` (frames
0, 106, 212, 318 for S-7293), which is not aligned with the output frames; that behaviour is kept as
``alignment='original'``, the default ``'centre'`` fixes it.

TDT-PV targets. Position and velocity ``np.gradient(pos, 0.015 s)`` (cm/s, computed on all 320 frames,
then sampled at the centres), ``(N, frames', 6)``, each dimension min-max scaled to [0, 1] with the
training set's range (the scaler is stored in the checkpoint).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from deepdraw.contracts import N_FRAMES
from deepdraw.nn.layers import same_output_size, same_padding

__all__ = [
    "DT",
    "receptive_fields",
    "layer_centres",
    "output_centres",
    "original_frames",
    "TargetSpec",
]

DT = 0.015
"""Seconds per frame (66.7 Hz) used for velocities."""


def receptive_fields(ops: Iterable[tuple[int, int]], n_frames: int) -> list[tuple[np.ndarray, int]]:
    """Receptive fields along time through a stack of 'SAME' convs.

    Args:
        ops: (temporal kernel, temporal stride) per layer, in order.
        n_frames: input frames (320).

    Returns:
        one ``(centres, size)`` per layer: ``centres`` (frames_out,) float, the input-frame centre of each
        output frame (may lie outside ``[0, n_frames)`` at the edges, in the zero padding); ``size`` the
        receptive-field width in input frames.
    """
    a, b, size, length = 1.0, 0.0, 1, int(n_frames)  # input coordinate = a · x + b
    out = []
    for k, s in ops:
        k, s = int(k), int(s)
        p = same_padding(length, k, s)[0]
        b = a * (-p + (k - 1) / 2.0) + b
        size = size + (k - 1) * int(a)
        a = a * s
        length = same_output_size(length, s)
        out.append((a * np.arange(length) + b, size))
    return out


def _to_int(c: np.ndarray, n_frames: int) -> np.ndarray:
    return np.clip(np.floor(c + 0.5), 0, n_frames - 1).astype(np.int64)


def layer_centres(model_or_ops, n_frames: int | None = None) -> OrderedDict[str, np.ndarray]:
    """Integer centre frame of every output frame of every layer: ``{layer: (frames_out,) int64}``.

    ``model_or_ops`` is a :class:`~deepdraw.nn.models.DeepDrawNet` or a mapping layer → (kernel, stride).
    """
    if isinstance(model_or_ops, Mapping):
        ops = model_or_ops
        n = int(n_frames if n_frames is not None else N_FRAMES)
    else:
        ops = model_or_ops.layer_time_ops()
        n = int(n_frames if n_frames is not None else model_or_ops.input_shape[1])
    fields = receptive_fields(ops.values(), n)
    return OrderedDict((name, _to_int(c, n)) for name, (c, _) in zip(ops, fields))


def output_centres(model) -> np.ndarray:
    """Centre frames (frames',) of the model's last layer, i.e. of a regression head's outputs."""
    return next(reversed(layer_centres(model).values()))


def original_frames(n_out: int, n_frames: int = N_FRAMES) -> np.ndarray:
    """The original's ``set_kin_dimensions`` frames ``::(n_frames // (n_out − 1))`` (first ``n_out``)."""
    if n_out <= 1:
        return np.zeros(max(n_out, 0), dtype=np.int64)
    step = max(n_frames // (n_out - 1), 1)
    return np.arange(0, n_frames, step, dtype=np.int64)[:n_out]


@dataclass
class TargetSpec:
    """How to turn a file's rows into training targets for one task.

    ``art``: ``label`` (N,) int in 0..19 → int64. ``tdt``: ``endeffector_coords`` (N, 3, T) cm →
    (N, frames', 3) at ``frames``. ``tdt_pv``: (N, frames', 6) = position (cm) and velocity (cm/s),
    min-max scaled with ``scale_min``/``scale_max`` (6,) when set.
    """

    task: str
    frames: np.ndarray | None = None
    scale_min: np.ndarray | None = None
    scale_max: np.ndarray | None = None
    dt: float = DT

    @property
    def key(self) -> str:
        return "label" if self.task == "art" else "endeffector_coords"

    def raw(self, data: np.ndarray) -> np.ndarray:
        """Unscaled targets from the rows ``data`` of :attr:`key`."""
        if self.task == "art":
            return np.asarray(data, dtype=np.int64)
        pos = np.asarray(data, dtype=np.float64)  # (n, 3, T)
        parts = [pos]
        if self.task == "tdt_pv":
            parts.append(np.gradient(pos, self.dt, axis=-1))
        full = np.concatenate(parts, axis=1)  # (n, d, T)
        return np.ascontiguousarray(full[:, :, self.frames].transpose(0, 2, 1)).astype(np.float32)

    def __call__(self, data: np.ndarray) -> np.ndarray:
        y = self.raw(data)
        if self.task == "tdt_pv" and self.scale_min is not None:
            y = ((y - self.scale_min) / self._span()).astype(np.float32)
        return y

    def _span(self) -> np.ndarray:
        span = np.asarray(self.scale_max, np.float64) - np.asarray(self.scale_min, np.float64)
        return np.where(span > 0, span, 1.0).astype(np.float32)

    def unscale(self, y):
        """Scaled TDT-PV outputs back to cm and cm/s (identity for other tasks). Works on numpy or torch."""
        if self.task != "tdt_pv" or self.scale_min is None:
            return y
        span, lo = self._span(), np.asarray(self.scale_min, np.float32)
        if hasattr(y, "new_tensor"):
            return y * y.new_tensor(span) + y.new_tensor(lo)
        return y * span + lo

    def fit_scaler(self, blocks: Iterable[np.ndarray]) -> None:
        """Set the min-max scaler from an iterable of raw :attr:`key` blocks (the training rows)."""
        lo = hi = None
        for data in blocks:
            y = self.raw(data).reshape(-1, 6)
            if y.size == 0:
                continue
            bl, bh = y.min(axis=0), y.max(axis=0)
            lo = bl if lo is None else np.minimum(lo, bl)
            hi = bh if hi is None else np.maximum(hi, bh)
        if lo is None or hi is None:
            lo, hi = np.zeros(6, np.float32), np.ones(6, np.float32)
        self.scale_min, self.scale_max = lo.astype(np.float32), hi.astype(np.float32)

    def state(self) -> dict:
        """Plain-Python description (stored in checkpoints)."""
        return {
            "task": self.task,
            "frames": None if self.frames is None else [int(f) for f in self.frames],
            "scale_min": None if self.scale_min is None else [float(v) for v in self.scale_min],
            "scale_max": None if self.scale_max is None else [float(v) for v in self.scale_max],
            "dt": float(self.dt),
        }

    @classmethod
    def from_state(cls, d: dict) -> TargetSpec:
        arr = lambda v, t: None if v is None else np.asarray(v, dtype=t)  # noqa: E731
        return cls(
            d["task"],
            arr(d.get("frames"), np.int64),
            arr(d.get("scale_min"), np.float32),
            arr(d.get("scale_max"), np.float32),
            float(d.get("dt", DT)),
        )

    @classmethod
    def for_model(cls, model, alignment: str = "centre") -> TargetSpec:
        """Targets matching ``model``'s task and output frames (``alignment``: 'centre' or 'original')."""
        if model.task == "art":
            return cls("art")
        if alignment == "centre":
            frames = output_centres(model)
        elif alignment == "original":
            frames = original_frames(model.output_frames, model.input_shape[1])
        else:
            from deepdraw.errors import DeepDrawError

            raise DeepDrawError(f"Unknown target alignment '{alignment}'; expected 'centre' or 'original'.")
        return cls(model.task, frames)
