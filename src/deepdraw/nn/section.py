"""The checks of the ``[train]`` and ``[activations]`` config sections (run by
:func:`deepdraw.config.load_config`, and again when training starts)."""

from __future__ import annotations

from deepdraw.errors import DeepDrawError
from deepdraw.nn.runio import check_device_name
from deepdraw.settings import Config
from deepdraw.value_checks import check_choice, check_count, check_fraction, check_positive

__all__ = ["check_train_section", "check_activations_section"]


def check_train_section(cfg: Config) -> None:
    """Checks of ``[train]`` (run by :func:`deepdraw.config.load_config`): choices, ranges, the device
    name (whether CUDA exists is checked when training starts), tasks, seeds and model names."""
    from deepdraw.nn.models.spec import parse_model_name
    from deepdraw.nn.models.tasks import TASKS
    from deepdraw.nn.precision import check_precision

    t = cfg.train
    check_choice("train.schedule", t.schedule, ("paper", "constant"))
    check_choice("train.target_alignment", t.target_alignment, ("centre", "original"))
    check_choice("train.group", t.group, ("none", "seeds"))
    check_choice("train.source", t.source, ("train", "zoo", "auto"))
    check_precision(t.precision, "key 'train.precision'")
    for key, v in (
        ("train.max_epochs", t.max_epochs),
        ("train.patience", t.patience),
        ("train.batch_size", t.batch_size),
        ("train.lstm_batch_size", t.lstm_batch_size),
    ):
        check_count(key, v)
    if t.min_epochs < 0:
        raise DeepDrawError(f"key 'train.min_epochs' is {t.min_epochs}; expected 0 (off) or more")
    for key, rate in (("train.lr", t.lr), ("train.lstm_lr", t.lstm_lr)):
        check_positive(key, rate, "a positive learning rate")
    check_fraction("train.val_fraction", t.val_fraction)
    if t.num_threads < 0:
        raise DeepDrawError(
            f"key 'train.num_threads' is {t.num_threads}; expected 0 (default) or a positive integer"
        )
    check_device_name("train.device", t.device)
    if isinstance(t.models, str):
        if t.models != "search":
            raise DeepDrawError(
                f"key 'train.models' is '{t.models}'; expected a list of model names or \"search\" (the "
                "winners of the architecture search)"
            )
        if cfg.search.n_per_family < 1:
            raise DeepDrawError(
                "key 'train.models' is \"search\" but search.n_per_family is 0 (no search); expected "
                "search.n_per_family > 0, or a list of model names"
            )
    elif not t.models:
        raise DeepDrawError("key 'train.models' is empty; expected at least one model name")
    if not t.tasks:
        raise DeepDrawError(f"key 'train.tasks' is empty; expected some of {', '.join(TASKS)}")
    for task in t.tasks:
        if task not in TASKS:
            raise DeepDrawError(f"key 'train.tasks' holds '{task}'; expected some of {', '.join(TASKS)}")
    if not t.seeds:
        raise DeepDrawError("key 'train.seeds' is empty; expected at least one seed (the paper: 1..5)")
    for s in t.seeds:
        if s < 0:
            raise DeepDrawError(f"key 'train.seeds' holds {s}; expected non-negative integers")
    for raw in [] if isinstance(t.models, str) else t.models:
        try:
            parse_model_name(raw)
        except DeepDrawError as e:
            raise DeepDrawError(f"key 'train.models' holds '{raw}': {e}") from None


def check_activations_section(cfg: Config) -> None:
    """Checks of ``[activations]``."""
    for key in ("n_samples", "batch_size"):
        check_count(f"activations.{key}", getattr(cfg.activations, key))
