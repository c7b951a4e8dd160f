"""Training: configuration, the paper's schedule, evaluation and the training loop.

Training (:func:`train_model`, configured by :class:`TrainConfig`; one model's state is a
:class:`Trainer`, which :func:`deepdraw.nn.group.train_group` drives for several models at once):

- Adam (β 0.9/0.999, eps 1e-8); ``art``: softmax cross-entropy, ``tdt``/``tdt_pv``: MSE. Defaults as the
  original: lr 5e-4 and batch 256 for conv families; lr 1e-3 and batch 128 for the LSTM (the original's
  recurrent search, ``train_networks.py``; the paper says "same settings").
- Precision (``precision``, :mod:`deepdraw.nn.precision`): ``fp32`` is the reference path (the model's
  own NCHW convolutions); the default ``auto`` trains with the fast path (:mod:`deepdraw.nn.lowered`,
  bfloat16 where the hardware has it). Validation uses the training path; the final test metrics use
  the reference float32 forward, i.e. the model as every later stage sees it.
- Validation = the last ``val_fraction`` (10 %) of the training file, in file order, as the original.
  Validated once per epoch (the original every 100 steps).
- Schedule (paper, :class:`PlateauSchedule`): when the validation loss has not improved for ``patience``
  epochs, divide the lr by ``lr_divisor`` (4) and reload the best weights (and their optimizer state);
  stop at the second plateau or at ``max_epochs``. The original computed the plateau threshold in steps
  but counted validations, so with 144k samples it never fired: its effective schedule was a constant lr
  for ``num_epochs`` keeping the best-validation snapshot. ``schedule='constant'`` reproduces that.
- Randomness: the weights come from ``seed`` (a private generator); the batch order from ``data_seed``
  (default: ``seed``); dropout from the global torch RNG seeded with ``seed`` on the reference path, and
  from a generator of the model's own seeded with ``seed`` on the fast paths (so that models trained
  together keep their own streams). All of it is saved in ``last.pt``.
- Regression (TDT, TDT-PV) models get the original's ``_r_`` name marker
  (``spatial_temporal_r_4_..._7293_1``).
- Files in ``out_dir``: ``untrained.pt`` (exact initial weights, written before the first step: the
  untrained control, name suffix ``r``), ``best.pt`` (best validation loss), ``last.pt`` (end of every
  epoch, with optimizer, schedule, RNG state and history: a killed run resumes from it and ends with the
  same weights as an uninterrupted one on CPU), ``metrics.json``. Every file is written to a temporary
  name and renamed. Checkpoint layout: :mod:`deepdraw.nn.checkpoints`.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from deepdraw.nn.activations import extract_activations
from deepdraw.nn.checkpoints import load_checkpoint, load_into, resolve_device, save_checkpoint
from deepdraw.nn.evaluation import evaluate
from deepdraw.nn.schedule import PlateauSchedule
from deepdraw.nn.train_config import TrainConfig, TrainResult, resolve_batch_size
from deepdraw.nn.trainer import Trainer

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PlateauSchedule",
    "Trainer",
    "train_model",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "load_into",
    "extract_activations",
    "resolve_device",
    "resolve_batch_size",
]


def train_model(config: TrainConfig) -> TrainResult:
    """Train one network (see module docstring); resumes from ``out_dir/last.pt`` when present."""
    t = Trainer(config)
    quiet = config.quiet
    bar = tqdm(
        total=config.max_epochs, initial=min(t.epoch, config.max_epochs), desc=t.spec.name, disable=quiet
    )
    while not t.done:
        t.begin_epoch()
        batches = t.train_stream.epoch(t.epoch)
        for x, y in tqdm(
            batches, total=len(t.train_stream), desc=f"epoch {t.epoch}", disable=quiet, leave=False
        ):
            t.step(x, y)
        row = t.end_epoch()
        bar.update(1)
        bar.set_postfix(val_loss=f"{row['val_loss']:.4g}")
    bar.close()
    return t.finish()
