"""Artifact contracts: every artifact kind, every schema and the shared constants, each defined once.

A stage that writes or reads an HDF5 artifact takes its ``kind`` string (the root attribute ``kind``
that :func:`deepdraw.store.open_artifact` checks) and its :data:`~deepdraw.store.Schema` (the keys,
shapes and dtypes checked on read) from here; the numbers shared across stages (20 characters, 320
frames, 25 muscles, 4 joints and their limits, the ids of the seeded random streams) too. The layout
of each artifact is described in ``docs/formats.md``; ``tests/test_contracts.py`` checks that none of
these names is assigned anywhere else in the package.

Torch-free, and imports nothing of deepdraw but :mod:`deepdraw.store` (so any module may import it).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from .store import Field, Schema

# --------------------------------------------------------------------------------------------------
# shared constants
# --------------------------------------------------------------------------------------------------
LETTERS = "abcdeghlmnopqrsuvwyz"
"""The 20 characters; label k (0..19) is ``LETTERS[k]``."""
N_CLASSES = len(LETTERS)
"""Number of character classes (labels 0..19)."""
N_FRAMES = 320
"""Frames of every PCRT sample (``assembly.n_frames``; the networks' input length)."""
MUSCLES: tuple[str, ...] = (
    "CORB", "DELT1", "DELT2", "DELT3", "INFSP", "LAT1", "LAT2", "LAT3", "PECM1", "PECM2", "PECM3",
    "SUBSC", "SUPSP", "TMAJ", "TMIN", "ANC", "BIClong", "BICshort", "BRA", "BRD", "ECRL", "PT",
    "TRIlat", "TRIlong", "TRImed",
)  # fmt: skip
"""The 25 muscles kept, in the dataset's order (15 shoulder, then 10 elbow muscles; spec section 0)."""
N_MUSCLES = len(MUSCLES)
"""Number of muscles (25): the second axis of ``muscle_coords`` and ``spindle_info``."""
JOINTS: tuple[str, ...] = ("elv_angle", "shoulder_elv", "shoulder_rot", "elbow_flexion")
"""The 4 joint angles (OpenSim coordinates, degrees), in the order of ``joint_coords``."""
Q_MIN = np.array([-90.0, 0.0, -90.0, 0.0])
"""Lower joint limits of the arm (a, b, c, d) = :data:`JOINTS`, degrees."""
Q_MAX = np.array([130.0, 180.0, 20.0, 130.0])
"""Upper joint limits of the arm (a, b, c, d) = :data:`JOINTS`, degrees."""
LATENT_KEYS: tuple[str, ...] = ("size", "rot", "shear_x", "shear_y", "speed", "noise")
"""Augmentation latents recorded per candidate and per PCRT sample."""

# --------------------------------------------------------------------------------------------------
# seed streams: np.random.SeedSequence(run.seed, spawn_key=(STREAM, ...)) / default_rng([seed, STREAM])
# --------------------------------------------------------------------------------------------------
SEED_STREAM_CANDIDATES = 1
"""Latents of candidate shard k: ``SeedSequence(seed, spawn_key=(1, k))``."""
SEED_STREAM_CHARPERM = 2
"""Per-character permutation of the UCI samples: ``SeedSequence(seed, spawn_key=(2,))``."""
SEED_STREAM_SAMPLE = 3
"""Spindle noise of one PCRT sample: ``SeedSequence(seed, spawn_key=(3, candidate_id))``."""
SEED_STREAM_SPLIT = 4
"""Train/test split of the PCRT samples: ``SeedSequence(seed, spawn_key=(4,))``."""
SEED_STREAM_ACTIVATIONS = 6
"""Test rows whose activations are extracted: ``SeedSequence(seed, spawn_key=(6,))``."""
SEED_STREAM_SEARCH = 7
"""Architecture-search draws of family f: ``SeedSequence(seed, spawn_key=(7, crc32(f)))``."""
SEED_STREAM_RSA_RDM = 101
"""Class-balanced RDM subset: ``default_rng([seed, 101])``."""
SEED_STREAM_RSA_TSNE = 102
"""Class-balanced t-SNE subset: ``default_rng([seed, 102])``."""
SEED_STREAM_RSA_SPLIT = 103
"""Trajectory train/test split of population decoding: ``default_rng([seed, 103])``."""

# --------------------------------------------------------------------------------------------------
# artifact kinds (the root attribute ``kind``)
# --------------------------------------------------------------------------------------------------
KIND_CHARACTERS = "characters"
"""``dataset/characters.h5``: the UCI pen paths, cm."""
KIND_STARTPOINTS = "startpoints"
"""``dataset/startpoints.h5``: reachable start points per plane, cm."""
KIND_CANDIDATES = "candidates"
"""``dataset/candidates/shard_*.h5``: candidate movements, their scores and latents."""
KIND_JERK_CHUNK = "jerk_chunk"
"""Temporary chunk of exact muscle jerks written by the assembly screening."""
KIND_PCRT_CHUNK = "pcrt_chunk"
"""Temporary chunk of PCRT rows, concatenated into the final PCRT file."""
KIND_PCRT = "pcrt"
"""``dataset/pcrt_{train,test}.h5``: the proprioceptive dataset (:data:`PCRT_SCHEMA`)."""
KIND_MUSCLE_ENGINE = "muscle_fast_engine"
"""``data/muscles/fast_engine.h5``: the tabulated fast muscle-length engine (:data:`ENGINE_SCHEMA`)."""
KIND_SVM = "svm"
"""``svm/svm_results.h5`` (:data:`SVM_SCHEMA`)."""
KIND_ACTIVATIONS = "activations"
"""``activations/<model>.h5``: every layer of one network on the test subset (:data:`ACTIVATIONS_SCHEMA`)."""
KIND_ENCODE_ACTIVATIONS = "encode_activations"
"""``<encode>/activations/<model>.h5``: every layer of one network on the windows of ``encoded.h5``."""
KIND_RSA = "rsa"
"""``rsa/rsa_results.h5``: RDMs, CKA, t-SNE and decoding tables."""
KIND_TUNING = "tuning"
"""``tuning/tuning_results.h5``: per-unit tuning scores."""
KIND_ENCODED = "encoded"
"""``<encode>/encoded.h5``: a user's movements as network inputs (:data:`ENCODED_SCHEMA`)."""
KIND_PREDICT = "predict"
"""``<predict>/predict.h5``: explained variance per model, layer and neuron (:data:`PREDICT_SCHEMA`)."""

ACTIVATION_KINDS: tuple[str, ...] = (KIND_ACTIVATIONS, KIND_ENCODE_ACTIVATIONS)
"""Kinds a reader of activations accepts (files written before activations carried provenance have none)."""

# --------------------------------------------------------------------------------------------------
# schemas (read-only mappings: key -> Field)
# --------------------------------------------------------------------------------------------------


def _schema(fields: dict[str, Field]) -> Schema:
    return MappingProxyType(fields)


CHARACTERS_SCHEMA = _schema(
    {
        "trajectories": Field(("n", 2, "T"), "f", doc="pen paths (cm), NaN-padded"),
        "lengths": Field(("n",), "iu", doc="frames per pen path"),
        "labels": Field(("n",), "iu", doc="0..19, letter = LETTERS[label]"),
    }
)
"""Schema of ``characters.h5`` (kind :data:`KIND_CHARACTERS`)."""

STARTPOINTS_SCHEMA = _schema(
    {
        "horizontal": Field((None, 3), "f", doc="start points of horizontal planes (cm, {W})"),
        "vertical": Field((None, 3), "f", doc="start points of vertical planes (cm, {W})"),
    }
)
"""Schema of ``startpoints.h5`` (kind :data:`KIND_STARTPOINTS`)."""

PCRT_SCHEMA = _schema(
    {
        "endeffector_coords": Field(("n", 3, N_FRAMES), "f", doc="hand position, cm, world frame"),
        "joint_coords": Field(
            ("n", len(JOINTS), N_FRAMES), "f", doc="elv_angle, shoulder_elv, shoulder_rot, elbow_flexion, deg"
        ),
        "muscle_coords": Field(("n", N_MUSCLES, N_FRAMES), "f", doc="fiber length, mm"),
        "spindle_info": Field(("n", N_MUSCLES, N_FRAMES, 2), "f", doc="length mm, velocity mm/s"),
        "spindle_firing": Field(("n", N_MUSCLES, N_FRAMES), "f", doc="noisy spindle rate"),
        "label": Field(("n",), "iu", doc="0..19"),
        "plane": Field(("n",), "S", doc="b'horizontal' / b'vertical'"),
        "startpt": Field(("n", 3), "f"),
        "start_id": Field(("n",), "iu", doc="movement onset frame"),
        "end_id": Field(("n",), "iu", doc="movement end frame (exclusive)"),
        **{k: Field(("n",), "f") for k in LATENT_KEYS},
    }
)
"""Schema of ``pcrt_train.h5`` / ``pcrt_test.h5`` (kind :data:`KIND_PCRT`)."""

ENGINE_SCHEMA = _schema(
    {
        "muscles": Field((N_MUSCLES,), "S", doc="muscle names, dataset order"),
        "coupling": Field((N_MUSCLES,), "iu", doc="bit 0: depends on the shoulder, bit 1: on the elbow"),
        "offset": Field((N_MUSCLES,), "f", doc="mm subtracted from shoulder part + elbow part"),
        "shoulder_index": Field(("ms",), "iu", doc="muscles with a shoulder table"),
        "shoulder_grid": Field((2, 3), "f", doc="origin (deg) and step (deg) per axis"),
        "shoulder_table_diff": Field(
            ("ms", None, None, None),
            "i",
            doc="path length at the nodes in 1e-4 mm, differenced along the last axis",
        ),
        "shoulder_table_nan": Field(("ms", None, None, None), "b", doc="nodes not computed"),
        "shoulder_code": Field(("ms", None, None, None), "u", doc="stencil code per cell (255: exact)"),
        "elbow_index": Field(("me",), "iu", doc="muscles with an elbow table"),
        "elbow_grid": Field((2,), "f", doc="origin and step, deg"),
        "elbow_table": Field(("me", None), "f", doc="path length at the nodes, mm"),
        "elbow_code": Field(("me", None), "u", doc="stencil code per cell (255: exact)"),
        "fiber_map_path": Field((None,), "f", doc="path lengths, mm, sorted per muscle"),
        "fiber_map_fiber": Field((None,), "f", doc="fiber lengths at those path lengths, mm"),
        "fiber_map_start": Field((N_MUSCLES + 1,), "iu", doc="start of each muscle's map in the two arrays"),
        # level 2 (optional): finer tables for (cell, muscle) pairs without a trusted stencil
        "refine_ratio": Field((1,), "iu", required=False, doc="fine steps per shoulder cell (r)"),
        "refine_key": Field(
            ("P",), "iu", required=False, doc="sorted pair keys: shoulder muscle * cells + flat cell"
        ),
        "refine_table_diff": Field(
            ("P", None, None, None),
            "i",
            required=False,
            doc="path length at the r+3 fine nodes per axis (-1..r+1) of each pair, 1e-4 mm, differenced",
        ),
        "refine_table_nan": Field(("P", None, None, None), "b", required=False, doc="nodes not computed"),
        "refine_code": Field(
            ("P", None, None, None), "u", required=False, doc="stencil code per fine cell (255: exact)"
        ),
    }
)
"""Schema of the fast muscle engine (kind :data:`KIND_MUSCLE_ENGINE`)."""

SVM_SCHEMA = _schema(
    {
        "inputs": Field(("i",), "S", doc="input keys"),
        "subsets": Field(("s",), "S", doc="subset names"),
        "c_grid": Field(("c",), "f", doc="C values"),
        "pair_i": Field(("p",), "iu", doc="first class of each pair (negative class)"),
        "pair_j": Field(("p",), "iu", doc="second class of each pair (positive class)"),
        "val_acc": Field(("i", "s", "p", "c"), "f", doc="validation accuracy per C (NaN: pair not fitted)"),
        "train_acc": Field(("i", "s", "p", "c"), "f"),
        "converged": Field(("i", "s", "p", "c"), "b"),
        "n_iter": Field(("i", "s", "p", "c"), "iu"),
        "best_c": Field(("i", "s", "p"), "f", doc="C of the chosen model"),
        "pair_test_acc": Field(("i", "s", "p"), "f", doc="binary test accuracy of the chosen model"),
        "n_train": Field(("i", "s", "p"), "iu"),
        "n_val": Field(("i", "s", "p"), "iu"),
        "val_acc_matrix": Field(("i", "s", N_CLASSES, N_CLASSES), "f", doc="best validation accuracy"),
        "test_acc_matrix": Field(("i", "s", N_CLASSES, N_CLASSES), "f"),
        "multiclass_acc": Field(("i", "s"), "f", doc="one-vs-one test accuracy"),
        "confusion": Field(("i", "s", N_CLASSES, N_CLASSES), "iu", doc="rows: true, columns: predicted"),
        "n_test": Field(("s",), "iu", doc="test samples per subset"),
    }
)
"""Datasets of ``svm_results.h5`` (kind :data:`KIND_SVM`); see ``docs/svm.md`` for the optional ones."""

ACTIVATIONS_SCHEMA = _schema(
    {
        "sample_index": Field(("n",), "iu", doc="row of the source file of every sample"),
        "label": Field(("n",), "iu", doc="character label 0..19 per sample"),
        "kinematics/endeffector_coords": Field(
            ("n", 3, "t"), "f", doc="hand position (n, 3, frames), cm in {W}"
        ),
        "plane": Field(("n",), "SOU", doc="b'horizontal' or b'vertical' per sample"),
        "start_id": Field(("n",), "iu", doc="movement onset frame per sample"),
        "end_id": Field(("n",), "iu", doc="movement offset frame per sample"),
    }
)
"""Per-sample keys of an activations file (kind :data:`KIND_ACTIVATIONS`); ``layers/{name}`` (n, rows,
frames, channels) and ``centres/{name}`` (frames,) are checked per name of the root attribute
``layer_names``. A reader takes the keys it needs (:func:`schema_subset`)."""

ACTIVATION_ATTRS: tuple[str, ...] = ("model_name", "task", "trained", "layer_names")
"""Root attributes every activations file carries besides the provenance of :func:`deepdraw.store.provenance`."""

ENCODED_SCHEMA = _schema(
    {
        "spindle_info": Field(("n", N_MUSCLES, None, 2), "f", doc="network input: length mm, velocity mm/s"),
        "muscle_coords": Field(("n", N_MUSCLES, None), "f", doc="fiber length, mm"),
        "joint_coords": Field(("n", len(JOINTS), None), "f", doc="deg; NaN for muscle-length input"),
        "endeffector_coords": Field(("n", 3, None), "f", doc="cm, world frame; NaN for muscle input"),
        "movement": Field(("n",), "iu", doc="index into attrs movement_names"),
        "first_frame": Field(("n",), "iu", doc="movement frame at window frame start_id"),
        "start_id": Field(("n",), "iu", doc="window frame of the movement's first frame in it"),
        "end_id": Field(("n",), "iu", doc="window frame after its last"),
        "jump": Field(("n",), "iu", doc="1: the window holds a muscle-length jump"),
        "masked": Field(("n",), "iu", doc="1: jump with encode.jumps = 'mask' (predict leaves it out)"),
        "movement_frames": Field(("m",), "iu", doc="frames of each movement on the 15 ms grid"),
        "movement_t0": Field(("m",), "f", doc="time of each movement's first sample, s (file clock)"),
    }
)
"""Keys of ``encoded.h5`` (kind :data:`KIND_ENCODED`; ``jumps/movement``, ``jumps/muscle``,
``jumps/frame``, ``jumps/step_mm`` too)."""

PREDICT_SCHEMA = _schema(
    {
        "ev": Field(("models", "layers", "neurons"), "f", doc="cross-validated explained variance"),
        "alpha": Field(("models", "layers", "neurons"), "f", doc="median chosen relative ridge penalty"),
        "noise_ceiling": Field(("neurons",), "f", doc="split-half noise ceiling; NaN without repeats"),
    }
)
"""Datasets of ``predict.h5`` (kind :data:`KIND_PREDICT`; docs/formats.md, "predict/")."""


def schema_subset(schema: Schema, keys: tuple[str, ...] | list[str]) -> Schema:
    """The fields of ``schema`` named in ``keys`` (a reader that needs only some keys checks only those)."""
    missing = [k for k in keys if k not in schema]
    if missing:
        raise KeyError(f"schema has no keys {missing}; it has {sorted(schema)}")
    return _schema({k: schema[k] for k in keys})


SCHEMAS: Mapping[str, Schema] = MappingProxyType(
    {
        KIND_CHARACTERS: CHARACTERS_SCHEMA,
        KIND_STARTPOINTS: STARTPOINTS_SCHEMA,
        KIND_PCRT: PCRT_SCHEMA,
        KIND_MUSCLE_ENGINE: ENGINE_SCHEMA,
        KIND_SVM: SVM_SCHEMA,
        KIND_ACTIVATIONS: ACTIVATIONS_SCHEMA,
        KIND_ENCODED: ENCODED_SCHEMA,
        KIND_PREDICT: PREDICT_SCHEMA,
    }
)
"""Kind -> schema of every artifact that has one (candidate shards, temporary chunks and the RSA and
tuning results are checked key by key by their readers)."""
