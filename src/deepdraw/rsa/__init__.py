"""Stage 4 (the original's ``repr-analysis/`` and the population parts of ``single_cell/``).

Representational analyses of every layer of every model:

* :mod:`.rdm` — correlation-distance RDMs on a class-balanced subset and their similarity to the
  category oracle (Pearson r, Kendall tau);
* :mod:`.cka` — linear CKA between trained and untrained, ART and TDT models;
* :mod:`.tsne` — PCA + t-SNE embeddings;
* :mod:`.decoding` — ridge decoding of hand position, direction and speed, split by trajectory;
* :mod:`.stage` — :func:`run_rsa`, which runs them all and writes ``rsa_results.h5``, CSVs and figures
  (with :mod:`.checks`, :mod:`.modelinfo`, :mod:`.plan`, :mod:`.layers`, :mod:`.tables`, :mod:`.figures`).

See ``docs/rsa.md``.
"""

from .cka import check_same_samples, cka_normalised, linear_cka, normalised_gram
from .decoding import Kinematics, decode_layer, kinematic_targets, trajectory_split
from .modelinfo import ModelInfo, pair_models, parse_model_name, read_model_info
from .rdm import (
    LayerGram,
    balanced_subset,
    correlation_rdm,
    kendall_tau_binary,
    layer_gram,
    oracle_rdm,
    oracle_similarity,
    pearson_binary,
    percentile_image,
    to_rsatoolbox,
)
from .stage import RESULTS_NAME, run_rsa
from .tsne import tsne_embedding

__all__ = [
    "RESULTS_NAME",
    "Kinematics",
    "LayerGram",
    "ModelInfo",
    "balanced_subset",
    "check_same_samples",
    "cka_normalised",
    "correlation_rdm",
    "decode_layer",
    "kendall_tau_binary",
    "kinematic_targets",
    "layer_gram",
    "linear_cka",
    "normalised_gram",
    "oracle_rdm",
    "oracle_similarity",
    "pair_models",
    "parse_model_name",
    "pearson_binary",
    "percentile_image",
    "read_model_info",
    "run_rsa",
    "to_rsatoolbox",
    "trajectory_split",
    "tsne_embedding",
]
