"""Stage 5: single-unit tuning of every model's activations (original: single_cell/).

:func:`run_tuning` reads one activations file per model (see :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA`), fits every
tuning model of :mod:`deepdraw.tuning.models` to every unit of every layer, summarises (fractions of
tuned units, quantiles, preferred directions, uniformity, invariance across planes, paired t-tests over
seeds) and writes ``tuning_results.h5`` (per-unit arrays), tidy CSV tables and PNG figures to
``out_dir``. :func:`analyse_model` does the work for one model and is what ``benchmarks/tuning.py``
times. Formats, formulas and the deliberate departures from the original are in ``docs/tuning.md``.

Each layer is read once, in blocks of ``tuning.chunk`` trajectories; from every block the sufficient
statistics (X^T X, X^T Y, sum y^2) of all units are accumulated per (plane, train/test), for the four
feature sets, so that every model, the all-plane fits and the per-plane fits come out of one pass and
one small solve per model (all units at once).

The work is split by job: :mod:`~deepdraw.tuning.checks` (the config section),
:mod:`~deepdraw.tuning.activations` (reading activations), :mod:`~deepdraw.tuning.fitting` (one layer),
:mod:`~deepdraw.tuning.analysis` (one model), :mod:`~deepdraw.tuning.results` (result types),
:mod:`~deepdraw.tuning.tables` (tables and headline numbers); this module runs them and writes the outputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..contracts import KIND_TUNING
from ..errors import DeepDrawError
from ..settings import Config, TuningConfig
from ..store import ArtifactWriter, atomic_path, file_sha256
from .activations import TUNING_KEYS, Activations, ActivationsFile, ArrayActivations
from .analysis import analyse_model
from .checks import check_tuning_config, tuning_config
from .features import FSETS
from .figures import write_figures
from .models import MODEL_NAMES, TUNING_TYPES
from .results import METRICS, SPLITS, LayerFit, ModelResult, OrientationFit
from .summary import group_summary, paired_tests
from .tables import build_tables, headline

__all__ = [
    "METRICS", "RESULTS_NAME", "SPLITS", "TABLES", "TUNING_KEYS", "Activations", "ActivationsFile",
    "ArrayActivations", "LayerFit", "ModelResult", "OrientationFit", "analyse_model", "build_tables",
    "check_tuning_config", "headline", "run_tuning", "tuning_config",
]  # fmt: skip

log = logging.getLogger(__name__)

RESULTS_NAME = "tuning_results.h5"
TABLES = ("units", "summary", "directions", "planes", "metrics", "stats", "groups")
"""Tidy CSV tables written as ``tuning_{name}.csv``."""


def _write_results(
    path: Path,
    results: Sequence[ModelResult],
    cfg: Mapping[str, Any],
    t: TuningConfig,
    inputs: Mapping[str, str],
    overwrite: bool,
) -> None:
    attrs = {
        "model_names": json.dumps([r.name for r in results]),
        "tuning_models": json.dumps(list(MODEL_NAMES)),
        "tuning_types": json.dumps(TUNING_TYPES),
        "metrics": json.dumps(list(METRICS)),
        "splits": json.dumps(list(SPLITS)),
        "fsets": json.dumps(list(FSETS)),
    }
    with ArtifactWriter(
        path,
        KIND_TUNING,
        config=cfg,
        seeds={"split_seed": t.split_seed},
        inputs=inputs,
        attrs=attrs,
        overwrite=overwrite,
    ) as f:
        for r in results:
            g = f.create_group(f"models/{r.name}")
            g.attrs.update(
                {"task": r.task, "trained": r.trained, "arch": r.arch, "seed": r.seed, "source": Path(r.source).name,
                 "layer_names": json.dumps([lf.name for lf in r.layers])}
            )  # fmt: skip
            for lf in r.layers:
                gl = g.create_group(lf.name)
                gl.attrs.update({"rows": lf.rows, "channels": lf.channels, "index": lf.index})
                gl.create_dataset("centres", data=lf.centres)
                gl.create_dataset("label_auc", data=lf.label_auc)
                gl.create_dataset("label_selectivity", data=lf.label_macro)
                gl.create_dataset("label_selectivity_max", data=lf.label_max)
                gl.create_dataset("label_dead", data=lf.label_dead)
                for o, of in lf.orient.items():
                    go = gl.create_group(o)
                    for k in ("dead", "coef", "metrics", "n_points", "n_traj", "levels", "plane_r2", "plane_pd",
                              "plane_n", "curve_sum", "curve_n"):  # fmt: skip
                        arr = getattr(of, k)
                        go.create_dataset(k, data=arr, compression="gzip" if arr.size > 4096 else None)
                    go.create_dataset("pd", data=of.preferred_directions())


def _write_csv(df: pd.DataFrame, path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise DeepDrawError(
            f"{path}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
        )
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def run_tuning(
    cfg: Config | TuningConfig,
    activation_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Single-unit tuning analyses of one or more models.

    Args:
        cfg: the run config (its ``[tuning]`` section is used) or a :class:`TuningConfig`.
        activation_paths: one activations HDF5 file per model.
        out_dir: folder for ``tuning_results.h5``, ``tuning_*.csv`` and ``figures/*.png``.
        quiet: no progress bars.
        overwrite: replace existing outputs.

    Returns:
        summary numbers (see :func:`headline`) plus ``results`` (path), ``csv`` (name -> path),
        ``figures`` (paths) and ``n_models``.
    """
    t = tuning_config(cfg)
    paths = [Path(p) for p in activation_paths]
    if not paths:
        raise DeepDrawError("run_tuning: activation_paths is empty; expected at least one activations file")
    out = Path(out_dir)
    res_path = out / RESULTS_NAME
    for existing in (res_path, *(out / f"tuning_{k}.csv" for k in TABLES)):
        if existing.exists() and not overwrite:
            raise DeepDrawError(
                f"{existing}: output exists; refusing to overwrite it (delete it first, or pass overwrite=True)"
            )
    results: list[ModelResult] = []
    inputs: dict[str, str] = {}
    for p in tqdm(paths, desc="tuning models", disable=quiet, unit="model"):
        with ActivationsFile(p) as act:
            log.info(
                "tuning %s (%s, %s, %d samples)",
                act.model_name,
                act.task,
                "trained" if act.trained else "untrained",
                act.n,
            )
            r = analyse_model(act, t, quiet)
        if any(x.name == r.name for x in results):
            raise DeepDrawError(
                f"{p}: attribute 'model_name' is '{r.name}', already given by another file; expected one file per model"
            )
        results.append(r)
        inputs[p.name] = file_sha256(p)
    tables = build_tables(results, t)
    tables["stats"] = paired_tests(tables["metrics"])
    tables["groups"] = group_summary(tables["metrics"])
    cfg_dict = (
        cfg.to_dict(["run", "tuning"]) if isinstance(cfg, Config) else {"tuning": dataclasses.asdict(t)}
    )
    out.mkdir(parents=True, exist_ok=True)
    _write_results(res_path, results, cfg_dict, t, inputs, overwrite)
    csv = {k: _write_csv(v, out / f"tuning_{k}.csv", overwrite) for k, v in tables.items()}
    figs: list[Path] = []
    if t.figures:
        figs = write_figures(results, tables, t, out / "figures", quiet)
    summary = headline(results, t)
    summary.update({"results": res_path, "csv": csv, "figures": figs, "n_models": len(results)})
    for k in ("spindle_length_position_median", "spindle_velocity_direction_median", "spindle_velocity_dirspeed_median",
              "spindle_pd_invariance_horizontal", "spindle_pd_invariance_vertical"):  # fmt: skip
        log.info("%s = %.3f", k, summary[k])
    return summary
