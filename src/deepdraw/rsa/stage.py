"""The RSA stage: RDMs vs the category oracle, CKA, t-SNE and population decoding of every layer.

:func:`run_rsa` reads one activations file per model (written by ``deepdraw activations``) and the PCRT
test file, and writes into ``out_dir``:

* ``rsa_results.h5`` (kind ``rsa``, with provenance): the RDM subset, every condensed RDM, t-SNE
  embeddings, the decoding split and all result tables (``docs/rsa.md`` lists the keys);
* tidy CSVs: ``rsa_oracle.csv``, ``rsa_oracle_summary.csv``, ``rsa_oracle_table.csv``, ``rsa_cka.csv``,
  ``rsa_cka_summary.csv``, ``rsa_decoding.csv``, ``rsa_decoding_summary.csv``;
* PNG figures (returned as a dict name -> path).

Work is organised layer by layer: each layer of each model is read once, its Gram matrix computed once
and used for the RDM and for CKA; only one layer's normalised Gram matrices (one per model) are held
at a time.

The work is split by job: :mod:`~deepdraw.rsa.checks` (the config section), :mod:`~deepdraw.rsa.modelinfo`
(the activations files and the CKA pairs), :mod:`~deepdraw.rsa.plan` (subsets, split and targets drawn
from the seed), :mod:`~deepdraw.rsa.layers` (the analyses of each representation), :mod:`~deepdraw.rsa.tables`
and :mod:`~deepdraw.rsa.figures` (the outputs); this module runs them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from .. import store
from ..contracts import KIND_RSA, SEED_STREAM_RSA_RDM, SEED_STREAM_RSA_SPLIT, SEED_STREAM_RSA_TSNE
from ..errors import DeepDrawError
from ..settings import Config, RsaConfig
from .checks import INPUT_NAMES, check_rsa_config
from .figures import plot_cka, plot_decoding, plot_oracle, plot_rdms, write_figures
from .layers import analyse_layers, input_representations
from .modelinfo import (
    DECODING_KEYS,
    RSA_KEYS,
    ModelInfo,
    load_models,
    pair_models,
    parse_model_name,
    read_model_info,
)
from .plan import Results, plan_rsa, write_plan
from .tables import write_tables
from .tsne import tsne_embedding, tsne_wanted

__all__ = [
    "DECODING_KEYS", "INPUT_NAMES", "RESULTS_NAME", "RSA_KEYS", "ModelInfo", "check_rsa_config", "pair_models",
    "parse_model_name", "plot_cka", "plot_decoding", "plot_oracle", "plot_rdms", "read_model_info", "run_rsa",
    "tsne_embedding",
]  # fmt: skip

log = logging.getLogger(__name__)

RESULTS_NAME = "rsa_results.h5"


def run_rsa(
    cfg: Config | RsaConfig,
    activation_paths: Sequence[str | os.PathLike],
    test_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """RDMs, oracle similarity, CKA, t-SNE and decoding of every layer of every model.

    Parameters
    ----------
    cfg : the run :class:`~deepdraw.config.Config` (its ``rsa`` section, ``run.seed`` and
        ``assembly.dt`` are used) or a bare :class:`RsaConfig` (seed 0, dt 0.015 s).
    activation_paths : one activations file per model, all of the same test samples.
    test_path : the PCRT test file for the input representations (``rsa.inputs``); None to skip them.
    out_dir : folder for ``rsa_results.h5``, CSVs and figures.
    quiet : no progress bars.
    overwrite : replace an existing ``rsa_results.h5``.

    Returns the figures written, name -> PNG path: ``oracle_similarity``, ``cka_{kind}`` per comparison
    kind, ``decoding``, ``rdms/{model}`` per model, ``tsne/{model}`` per model of ``rsa.tsne_seeds``
    (every model when it is empty), and ``rdms/inputs``, ``tsne/inputs``.
    """
    if isinstance(cfg, RsaConfig):
        rc, seed, dt, cfg_dict = cfg, 0, 0.015, {"rsa": vars(cfg)}
    else:
        rc, seed, dt, cfg_dict = (
            cfg.rsa,
            cfg.run.seed,
            cfg.assembly.dt,
            cfg.to_dict(["run", "assembly", "rsa"]),
        )
    check_rsa_config(rc)
    if not activation_paths:
        raise DeepDrawError("run_rsa: no activations files given; expected at least one")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models, sample_index, labels = load_models(activation_paths, rc)
    if rc.tsne and rc.tsne_seeds and not any(tsne_wanted(rc, m.seed) for m in models):
        log.warning(
            "rsa.tsne_seeds = %s matches no model's seed (%s): no layer is embedded",
            rc.tsne_seeds,
            ", ".join(sorted({m.seed or "none" for m in models})),
        )
    plan = plan_rsa(models, sample_index, labels, rc, seed, dt)
    inputs = {m.path.name: store.file_sha256(m.path) for m in models}
    if test_path is not None:
        inputs[Path(test_path).name] = store.file_sha256(test_path)
    seeds = {
        "run": seed,
        "rdm_subset": [seed, SEED_STREAM_RSA_RDM],
        "tsne_subset": [seed, SEED_STREAM_RSA_TSNE],
        "decoding_split": [seed, SEED_STREAM_RSA_SPLIT],
        "tsne_random_state": seed,
    }
    with store.ArtifactWriter(
        out / RESULTS_NAME,
        kind=KIND_RSA,
        config=cfg_dict,
        seeds=seeds,
        inputs=inputs,
        attrs={"models": [m.name for m in models], "units": "position cm, speed cm/s, direction deg"},
        overwrite=overwrite,
    ) as h5:
        write_plan(h5, plan)
        acc = Results({m.name: {} for m in models}, {m.name: {} for m in models})
        if test_path is not None and rc.inputs:
            input_representations(h5, Path(test_path), plan, acc, quiet)
        analyse_layers(h5, models, plan, acc, quiet)
        odf, cdf, ddf = write_tables(h5, out, acc)
    figures = write_figures(out, models, plan, acc, odf, cdf, ddf)
    log.info("RSA: wrote %s, CSV tables and %d figures to %s", RESULTS_NAME, len(figures), out)
    return figures
