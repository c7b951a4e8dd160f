"""What every part of one RSA run shares (:class:`RsaPlan`: samples, subsets, oracle, CKA pairs, decoding
targets), drawn from the run seed, and what the parts collect (:class:`Results`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from .. import store
from ..contracts import SEED_STREAM_RSA_RDM, SEED_STREAM_RSA_SPLIT, SEED_STREAM_RSA_TSNE
from ..settings import RsaConfig
from . import decoding as dec
from . import rdm as rdmm
from .modelinfo import ModelInfo, pair_models

log = logging.getLogger(__name__)


@dataclass
class RsaPlan:
    """What every part of one RSA run shares: samples, subsets, oracle, CKA pairs, decoding targets."""

    rc: RsaConfig
    seed: int
    n: int
    sample_index: np.ndarray
    labels: np.ndarray
    sub: np.ndarray  # RDM subset (positions), class-balanced
    sub_labels: np.ndarray
    oracle: np.ndarray
    tsne_sub: np.ndarray | None
    pairs: list[tuple[str, ModelInfo, ModelInfo]]
    gram_pos: np.ndarray  # samples of the Gram matrices: all when CKA is needed, else the RDM subset
    sub_in_gram: np.ndarray
    kin: Any = None
    test_mask: np.ndarray | None = None


@dataclass
class Results:
    """Rows and images collected over the inputs and the layers."""

    rdm_images: dict[str, dict[str, np.ndarray]]
    tsne_embs: dict[str, dict[str, np.ndarray]]
    oracle_rows: list[dict] = field(default_factory=list)
    cka_rows: list[dict] = field(default_factory=list)
    dec_rows: list[dict] = field(default_factory=list)
    input_images: dict[str, np.ndarray] = field(default_factory=dict)
    input_tsne: dict[str, np.ndarray] = field(default_factory=dict)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def plan_rsa(
    models: list[ModelInfo], sample_index: np.ndarray, labels: np.ndarray, rc: RsaConfig, seed: int, dt: float
) -> RsaPlan:
    n = sample_index.size
    sub = rdmm.balanced_subset(labels, rc.per_class, _rng(seed, SEED_STREAM_RSA_RDM))
    sub_labels = labels[sub]
    tsne_sub = (
        rdmm.balanced_subset(labels, rc.tsne_per_class, _rng(seed, SEED_STREAM_RSA_TSNE)) if rc.tsne else None
    )
    pairs = pair_models(models)
    plan = RsaPlan(
        rc, seed, n, sample_index, labels, sub, sub_labels, rdmm.oracle_rdm(sub_labels), tsne_sub, pairs,
        np.arange(n) if pairs else sub, sub if pairs else np.arange(sub.size),
    )  # fmt: skip
    log.info(
        "RSA: %d models, %d samples, RDM subset %d (%d per class), %d CKA pairs",
        len(models),
        n,
        sub.size,
        sub.size // max(1, np.unique(sub_labels).size),
        len(pairs),
    )
    if rc.decoding:
        with store.open_artifact(models[0].path) as f:
            plan.kin = dec.kinematic_targets(
                f["kinematics/endeffector_coords"][()], f["plane"][()], f["start_id"][()], f["end_id"][()], dt
            )
        plan.test_mask = dec.trajectory_split(n, rc.decoding_test_fraction, _rng(seed, SEED_STREAM_RSA_SPLIT))
    return plan


def write_plan(h5: h5py.File, plan: RsaPlan) -> None:
    h5.create_dataset("subset/positions", data=plan.sub)
    h5.create_dataset("subset/sample_index", data=plan.sample_index[plan.sub])
    h5.create_dataset("subset/label", data=plan.sub_labels)
    if plan.tsne_sub is not None:
        h5.create_dataset("tsne/positions", data=plan.tsne_sub)
        h5.create_dataset("tsne/label", data=plan.labels[plan.tsne_sub])
    if plan.test_mask is not None:
        h5.create_dataset("decoding/test_mask", data=plan.test_mask)
