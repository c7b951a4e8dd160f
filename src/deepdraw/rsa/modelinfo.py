"""The models of an RSA run: identity and layout of each activations file (:func:`read_model_info`), the
check that all files hold the same samples, the CKA pairs (:func:`pair_models`) and reading one layer."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import store
from ..activation_files import open_activations
from ..errors import DeepDrawError
from ..names import identify
from ..settings import RsaConfig
from . import cka as ckam


@dataclass
class ModelInfo:
    """Identity and layout of one activations file."""

    path: Path
    name: str
    family: str
    arch: str  # family + architecture tokens: the key shared by trained/untrained/ART/TDT variants
    seed: str
    task: str
    trained: bool
    layer_names: list[str]  # every layer of the file, in order, first "input"
    layers: list[str] = field(default_factory=list)  # the ones analysed

    @property
    def n_layers(self) -> int:
        """Hidden layers (the input is layer 0)."""
        return max(1, len(self.layer_names) - 1)

    def depth(self, layer: str) -> tuple[int, float]:
        j = self.layer_names.index(layer)
        return j, j / self.n_layers

    @property
    def label(self) -> str:
        return f"{self.family} {self.task} {'trained' if self.trained else 'untrained'} seed {self.seed}"


def parse_model_name(name: str) -> tuple[str, str, str]:
    """(family, arch, seed) of a model directory name such as ``spatial_temporal_r_4_..._7293_1r``
    (:func:`deepdraw.names.split_model_name`; seed ``""`` when the name has none).

    The TDT marker ``_r_`` after the family and the untrained suffix ``r`` are dropped from ``arch``, so
    the trained, untrained, ART and TDT variants of one architecture and seed share (arch, seed). A name
    outside the grammar is its own arch, with the text before its first ``_<digit>`` as family.
    """
    parts = identify(name)
    if parts is None:
        return re.split(r"_\d", name, maxsplit=1)[0], name, ""
    return parts.family, parts.arch, "" if parts.seed is None else str(parts.seed)


def _attr(f: h5py.File, path: Path, key: str) -> Any:
    if key not in f.attrs:
        raise DeepDrawError(f"{path}: root attribute '{key}' is missing; expected an activations file")
    v = f.attrs[key]
    if isinstance(v, bytes):
        v = v.decode()
    return v


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        import json

        try:
            v = json.loads(v)
        except ValueError:
            v = [v]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(v)]


RSA_KEYS = ("sample_index", "label")
"""Keys of :data:`deepdraw.contracts.ACTIVATIONS_SCHEMA` the RSA stage reads (layers are checked separately)."""
DECODING_KEYS = ("kinematics/endeffector_coords", "plane", "start_id", "end_id")
"""Keys it reads too when population decoding is on."""


def read_model_info(path: str | os.PathLike, layers: Sequence[str], decoding: bool) -> ModelInfo:
    """Identity of an activations file; checks that every requested layer (all if empty) is present."""
    p = Path(path)
    with open_activations(p, RSA_KEYS + DECODING_KEYS if decoding else RSA_KEYS) as f:
        name = str(_attr(f, p, "model_name"))
        task = str(_attr(f, p, "task"))
        trained = bool(_attr(f, p, "trained"))
        names = _str_list(_attr(f, p, "layer_names"))
        want = list(layers) if layers else names
        n = f["sample_index"].shape[0]
        for layer in want:
            if layer not in names:
                raise DeepDrawError(
                    f"{p}: layer '{layer}' (requested in rsa.layers) is not in attribute 'layer_names'; "
                    f"expected one of {', '.join(names)}"
                )
            key = f"layers/{layer}"
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise DeepDrawError(
                    f"{p}: key '{key}' is missing; expected the activations of layer '{layer}'"
                )
            shp = f[key].shape
            if len(shp) != 4 or shp[0] != n:
                raise DeepDrawError(
                    f"{p}: key '{key}' has shape {shp}; expected ({n}, rows, frames, channels)"
                )
            if decoding:
                ck = f"centres/{layer}"
                if ck not in f:
                    raise DeepDrawError(
                        f"{p}: key '{ck}' is missing; expected the centre frame of each output frame"
                    )
                if f[ck].shape != (shp[2],):
                    raise DeepDrawError(f"{p}: key '{ck}' has shape {f[ck].shape}; expected ({shp[2]},)")
    family, arch, seed = parse_model_name(name)
    return ModelInfo(p, name, family, arch, seed, task, trained, names, want)


def pair_models(models: Sequence[ModelInfo]) -> list[tuple[str, ModelInfo, ModelInfo]]:
    """CKA comparisons: (kind, a, b) with kind "trained_vs_untrained" or "art_vs_{task}".

    Trained vs untrained: same arch and seed, preferably the same task. ART vs TDT (and TDT-PV): trained
    models of the same arch and seed.
    """
    pairs: list[tuple[str, ModelInfo, ModelInfo]] = []
    untrained = [m for m in models if not m.trained]
    trained = [m for m in models if m.trained]
    for m in trained:
        same = [u for u in untrained if (u.arch, u.seed) == (m.arch, m.seed)]
        cand = [u for u in same if u.task == m.task] or same
        if cand:
            pairs.append(("trained_vs_untrained", m, cand[0]))
    for a in trained:
        if a.task != "art":
            continue
        for b in trained:
            if b.task != "art" and (b.arch, b.seed) == (a.arch, a.seed):
                pairs.append((f"art_vs_{b.task}", a, b))
    return pairs


def load_layer(m: ModelInfo, layer: str) -> tuple[np.ndarray, np.ndarray | None]:
    with store.open_artifact(m.path) as f:
        key = f"layers/{layer}"
        try:
            X = f[key][()]
        except OSError as e:
            raise DeepDrawError(f"{m.path}: key '{key}' cannot be read (corrupt file?): {e}") from None
        centres = f[f"centres/{layer}"][()] if f"centres/{layer}" in f else None
    X = np.asarray(X, dtype=np.float32)
    store.check_finite(X, m.path, f"layers/{layer}")
    return X, centres


def load_models(
    activation_paths: Sequence[str | os.PathLike], rc: RsaConfig
) -> tuple[list[ModelInfo], np.ndarray, np.ndarray]:
    """The models' infos, one file per model, all of the same samples: (models, sample_index, labels)."""
    models = [read_model_info(p, rc.layers, rc.decoding) for p in activation_paths]
    seen: dict[str, Path] = {}
    for m in models:
        if m.name in seen:
            raise DeepDrawError(
                f"{m.path}: attribute 'model_name' is '{m.name}', as in {seen[m.name]}; expected one file per model"
            )
        seen[m.name] = m.path
    ref = store.read_arrays(models[0].path, ["sample_index", "label"])
    sample_index, labels = ref["sample_index"].astype(np.int64), ref["label"].astype(np.int64)
    for m in models[1:]:
        other = store.read_arrays(m.path, ["sample_index", "label"])
        ckam.check_same_samples(sample_index, other["sample_index"], str(models[0].path), str(m.path))
        if not np.array_equal(labels, other["label"]):
            raise DeepDrawError(
                f"{m.path}: key 'label' differs from that of {models[0].path}; expected the same samples"
            )
    return models, sample_index, labels
