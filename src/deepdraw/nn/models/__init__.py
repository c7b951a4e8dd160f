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

Modules: :mod:`.tasks` (the task registry), :mod:`.families` (the family registry), :mod:`.spec`
(:class:`ModelSpec` and the model name both ways), :mod:`.name_fields` (each family's body fields in a
name), :mod:`.networks` (the networks and their heads), :mod:`.build` (the paper's four families
registered, :func:`build_model`). Every public name is re-exported here
(``from deepdraw.nn.models import build_model``).
"""

from __future__ import annotations

from .build import build_model
from .families import FAMILIES, Family, get_family, register_family
from .name_fields import LSTM_DEFAULT_SPATIAL as LSTM_DEFAULT_SPATIAL  # public, outside __all__ as before
from .networks import INPUT_SHAPE, ConvNet, DeepDrawNet, RecurrentNet, conv_weight_count
from .spec import ModelSpec, model_name, parse_model_name
from .tasks import TASKS, Task, get_task

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
