"""The results of ``deepdraw predict``, read back from ``predict.h5``: tables per model and layer.

:func:`load_results` reads and checks ``<folder>/predict.h5`` (kind ``predict``, the datasets of
:data:`deepdraw.contracts.PREDICT_SCHEMA`, the attributes ``models``, ``layers``, ``neurons``, ``trained``) into a
:class:`PredictResults`; its methods give the tables the figures (:mod:`.figures`) and the HTML
report (:mod:`deepdraw.report.predict`) show. Every failure is one
:class:`~deepdraw.errors.DeepDrawError` naming the file and the dataset or attribute.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import store
from ..contracts import KIND_PREDICT, PREDICT_SCHEMA
from ..errors import DeepDrawError

_ATTRS = ("models", "layers", "neurons", "trained")


def untrained_pairs(
    keys: list[str], trained: list[bool], names: list[str] | None = None
) -> list[tuple[str, str]]:
    """(trained, untrained) model files of one model: ``X`` and ``X_untrained`` (the names
    ``deepdraw encode`` gives them), else the trained and the untrained file of a ``model_name`` that
    has exactly one of each."""
    untrained = {k for k, t in zip(keys, trained) if not t}
    pairs: list[tuple[str, str]] = []
    for i, (k, t) in enumerate(zip(keys, trained)):
        if not t:
            continue
        if f"{k}_untrained" in untrained:
            pairs.append((k, f"{k}_untrained"))
        elif names is not None:
            same = [j for j, n in enumerate(names) if n == names[i]]
            tr = [keys[j] for j in same if trained[j]]
            un = [keys[j] for j in same if not trained[j]]
            if len(tr) == 1 and len(un) == 1 and all(un[0] != u for _, u in pairs):
                pairs.append((k, un[0]))
    return pairs


@dataclasses.dataclass
class PredictResults:
    """``predict.h5`` in memory. ``ev``, ``alpha``: (model files, layers, neurons), NaN past a model's
    last layer; ``ceiling``: (neurons,), NaN without repeated trials."""

    path: Path
    models: list[str]  # activation file stems ("A", "A_untrained")
    layers: dict[str, list[str]]  # per model file, input first
    neurons: list[str]
    trained: list[bool]
    model_names: list[str]
    ev: np.ndarray
    alpha: np.ndarray
    ceiling: np.ndarray
    attrs: dict[str, Any]  # every other root attribute (provenance; JSON fields decoded)

    @property
    def has_ceiling(self) -> bool:
        return bool(np.isfinite(self.ceiling).any())

    def pairs(self) -> list[tuple[str, str]]:
        """(trained, untrained) model files (:func:`untrained_pairs`)."""
        return untrained_pairs(self.models, self.trained, self.model_names)

    def layer_ev(self, model: str, layer: str) -> np.ndarray:
        """(neurons,) explained variance of one model file's layer."""
        i = self.models.index(model)
        return self.ev[i, self.layers[model].index(layer)].astype(np.float64)

    def summary(self, threshold: float) -> pd.DataFrame:
        """One row per model file and layer: ``model, model_name, trained, layer_index, layer, median,
        mean, q90, frac_above, n``. Statistics over the neurons with a finite EV (``n`` of them);
        ``frac_above``: the share of those whose EV exceeds ``threshold``."""
        rows = []
        for i, m in enumerate(self.models):
            for j, la in enumerate(self.layers[m]):
                e = self.ev[i, j].astype(np.float64)
                e = e[np.isfinite(e)]
                stats = (
                    (float(np.median(e)), float(e.mean()), float(np.quantile(e, 0.9)), float((e > threshold).mean()))
                    if e.size
                    else (np.nan,) * 4
                )  # fmt: skip
                rows.append((m, self.model_names[i], self.trained[i], j, la, *stats, int(e.size)))
        cols = [
            "model",
            "model_name",
            "trained",
            "layer_index",
            "layer",
            "median",
            "mean",
            "q90",
            "frac_above",
            "n",
        ]
        return pd.DataFrame(rows, columns=cols)

    def best(self) -> pd.DataFrame:
        """Each neuron's best layer per model file: ``model, neuron, layer_index, layer, ev``."""
        rows = []
        for i, m in enumerate(self.models):
            e = self.ev[i, : len(self.layers[m])].astype(np.float64)
            for n, name in enumerate(self.neurons):
                col = e[:, n]
                if np.isfinite(col).any():
                    j = int(np.nanargmax(col))
                    rows.append((m, name, j, self.layers[m][j], float(col[j])))
        return pd.DataFrame(rows, columns=["model", "neuron", "layer_index", "layer", "ev"])


def _bad(path: Path, what: str) -> DeepDrawError:
    return DeepDrawError(f"{path}: {what}")


def load_results(folder: str | os.PathLike) -> PredictResults:
    """Read and check ``<folder>/predict.h5`` (``folder`` may also be the file itself)."""
    p = Path(folder)
    path = p if p.suffix == ".h5" else p / "predict.h5"
    if not path.is_file():
        raise _bad(
            path, "file not found; expected the output folder of `deepdraw predict` (predict.h5, CSVs)"
        )
    with store.open_artifact(path, kind=KIND_PREDICT, schema=PREDICT_SCHEMA) as f:
        try:
            ev, alpha, ceiling = (f[k][()] for k in ("ev", "alpha", "noise_ceiling"))
        except OSError as e:
            raise _bad(path, f"a dataset cannot be read (truncated or corrupt?): {e}") from None
        attrs: dict[str, Any] = {}
        for k, v in f.attrs.items():
            attrs[k] = v.decode() if isinstance(v, bytes) else v
    decoded: dict[str, Any] = {}
    for k in (*_ATTRS, "model_names", "model_info", "config", "inputs", "versions", "seeds"):
        if k not in attrs:
            if k in _ATTRS:
                raise _bad(path, f"attribute '{k}' is missing; expected JSON written by `deepdraw predict`")
            continue
        try:
            decoded[k] = json.loads(str(attrs[k]))
        except ValueError:
            raise _bad(path, f"attribute '{k}' is not valid JSON") from None
    models, layers, neurons = decoded["models"], decoded["layers"], decoded["neurons"]
    trained = [bool(t) for t in decoded["trained"]]
    names = [str(n) for n in decoded.get("model_names", models)]
    M, L, N = ev.shape
    if not (len(models) == len(trained) == len(names) == M):
        raise _bad(path, f"attributes 'models'/'trained' name {len(models)} model files; 'ev' has {M}")
    if set(layers) != set(models) or any(len(layers[m]) > L for m in models):
        raise _bad(path, f"attribute 'layers' does not match 'models' and the {L} layers of 'ev'")
    if len(neurons) != N:
        raise _bad(path, f"attribute 'neurons' names {len(neurons)} neurons; 'ev' has {N}")
    attrs.update(decoded)
    return PredictResults(
        path=path,
        models=[str(m) for m in models],
        layers={str(m): [str(x) for x in v] for m, v in layers.items()},
        neurons=[str(n) for n in neurons],
        trained=trained,
        model_names=names,
        ev=ev,
        alpha=alpha,
        ceiling=ceiling.astype(np.float64),
        attrs=attrs,
    )
