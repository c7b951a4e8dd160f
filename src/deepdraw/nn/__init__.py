"""Stage 3: the networks of the paper (PyTorch), their training, evaluation and activations.

- :mod:`deepdraw.nn.layers`: TF-slim-equivalent blocks ('SAME' conv, layer norm over (rows, frames,
  channels), Glorot init).
- :mod:`deepdraw.nn.models`: family registry, model-name grammar, networks and task heads (a package,
  one module each).
- :mod:`deepdraw.nn.targets`: receptive-field centres and TDT / TDT-PV targets.
- :mod:`deepdraw.nn.data`: streaming mini-batches from PCRT HDF5 files.
- :mod:`deepdraw.nn.train`: training loop, schedule, checkpoints, evaluation, activation extraction.
- :mod:`deepdraw.nn.search`: random samples from the architecture grid.
- :mod:`deepdraw.nn.stage`: the train, activations and evaluate entry points, re-exported from
  :mod:`deepdraw.nn.section` (config checks), :mod:`deepdraw.nn.plan` (the planned runs),
  :mod:`deepdraw.nn.train_stage`, :mod:`deepdraw.nn.summary` (``models/summary.csv``) and
  :mod:`deepdraw.nn.activations_stage`; :mod:`deepdraw.nn.search_stage`: the architecture search stage;
  :mod:`deepdraw.nn.search_figures`: its figures (Fig. 3D, Fig. 3—S1).
"""

from deepdraw.nn.models import (
    FAMILIES,
    TASKS,
    DeepDrawNet,
    ModelSpec,
    build_model,
    conv_weight_count,
    model_name,
    parse_model_name,
)
from deepdraw.nn.search import sample_architectures
from deepdraw.nn.targets import TargetSpec, layer_centres, output_centres
from deepdraw.nn.train import (
    PlateauSchedule,
    TrainConfig,
    TrainResult,
    evaluate,
    extract_activations,
    load_checkpoint,
    load_into,
    save_checkpoint,
    train_model,
)

__all__ = [
    "FAMILIES",
    "TASKS",
    "DeepDrawNet",
    "ModelSpec",
    "build_model",
    "conv_weight_count",
    "model_name",
    "parse_model_name",
    "sample_architectures",
    "TargetSpec",
    "layer_centres",
    "output_centres",
    "PlateauSchedule",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "extract_activations",
    "load_checkpoint",
    "load_into",
    "save_checkpoint",
    "train_model",
]
