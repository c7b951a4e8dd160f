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
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import store
from ..activation_files import open_activations
from ..contracts import KIND_RSA, SEED_STREAM_RSA_RDM, SEED_STREAM_RSA_SPLIT, SEED_STREAM_RSA_TSNE
from ..errors import DeepDrawError
from ..names import identify
from ..settings import Config, RsaConfig
from . import cka as ckam
from . import decoding as dec
from . import rdm as rdmm
from .tsne import plot_tsne_grid, tsne_embedding

log = logging.getLogger(__name__)

RESULTS_NAME = "rsa_results.h5"
INPUT_NAMES = {
    "endeffector_coords": "hand",
    "joint_coords": "joints",
    "muscle_coords": "muscles",
    "spindle_info": "spindle_info",
    "spindle_firing": "spindle_firing",
}


# --------------------------------------------------------------------------------------------- models
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


# ------------------------------------------------------------------------------------------- helpers
def check_rsa_config(c: RsaConfig) -> None:
    """Range and choice checks of the [rsa] section (run by :func:`deepdraw.config.load_config`)."""
    for key in ("per_class", "pca_components", "tsne_per_class"):
        if getattr(c, key) < 1:
            raise DeepDrawError(f"key 'rsa.{key}' is {getattr(c, key)}; expected a positive integer")
    if c.gram_dtype not in ("float32", "float64"):
        raise DeepDrawError(f"key 'rsa.gram_dtype' is '{c.gram_dtype}'; expected float32 or float64")
    if c.device not in ("cpu", "cuda", "auto"):
        raise DeepDrawError(f"key 'rsa.device' is '{c.device}'; expected cpu, cuda or auto")
    if not 0 < c.decoding_test_fraction < 1:
        raise DeepDrawError(
            f"key 'rsa.decoding_test_fraction' is {c.decoding_test_fraction}; expected 0 < x < 1"
        )
    if c.tsne_perplexity <= 0 or c.ridge_alpha < 0:
        raise DeepDrawError(
            f"key 'rsa.tsne_perplexity' is {c.tsne_perplexity} and 'rsa.ridge_alpha' {c.ridge_alpha}; "
            "expected a perplexity > 0 and an alpha >= 0"
        )
    for k in c.inputs:
        if k not in INPUT_NAMES:
            raise DeepDrawError(f"key 'rsa.inputs' holds '{k}'; expected some of {', '.join(INPUT_NAMES)}")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (any order, unique) of a dataset, read in increasing order."""
    order = np.argsort(rows)
    out = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
    out[order] = ds[np.sort(rows)]
    return out


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    tmp = store.tmp_path_for(path)
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)
    return path


def _write_table(h5: h5py.File, name: str, df: pd.DataFrame) -> None:
    g = h5.create_group(f"tables/{name}")
    g.attrs["columns"] = list(df.columns)
    for col in df.columns:
        v = df[col].to_numpy()
        if v.dtype.kind in "OUS":
            v = np.array([str(x).encode() for x in v], dtype="S")
        g.create_dataset(col, data=v)


def _summary(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    g = df.groupby(keys, sort=False, dropna=False)[values]
    out = g.agg(["mean", "std", "min", "max", "count"])
    out.columns = [f"{v}_{s}" for v, s in out.columns]
    return out.reset_index()


# ------------------------------------------------------------------------------------------- figures
def _figure(nrow: int, ncol: int, w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncol, h * nrow), layout="constrained")
    return fig, fig.subplots(nrow, ncol, squeeze=False)


def plot_rdms(images: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Percentile RDM of every layer (name -> square image), one panel each."""
    names = list(images)
    ncol = min(5, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = _figure(nrow, ncol, 2.4, 2.5)
    im = None
    for ax, name in zip(axes.ravel(), names):
        im = ax.imshow(images[name], cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="percentile", shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def _group_lines(df: pd.DataFrame, x: str, y: str):
    """(label, x, mean, std) per (family, task, trained) over seeds."""
    for (fam, task, trained), g in df.groupby(["family", "task", "trained"], sort=True):
        s = g.groupby(x, sort=True)[y].agg(["mean", "std"]).reset_index()
        yield (
            f"{fam} {task} {'trained' if trained else 'untrained'}",
            bool(trained),
            s[x].to_numpy(),
            s["mean"].to_numpy(),
            s["std"].fillna(0).to_numpy(),
        )


def plot_oracle(df: pd.DataFrame, inputs: pd.DataFrame, path: Path) -> Path:
    """Similarity to the category oracle (Pearson r, Kendall tau-b) vs relative depth."""
    fig, axes = _figure(1, 2, 5.0, 3.8)
    for ax, col, lab in zip(
        axes[0], ("oracle_r", "oracle_tau_b"), ("Pearson r with oracle", "Kendall tau-b with oracle")
    ):
        for name, trained, x, m, s in _group_lines(df, "relative_depth", col):
            ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, ls="-" if trained else "--", label=name)
        for (_, r), mk in zip(inputs.iterrows(), "xP*D^v<>"):
            ax.scatter([0.0], [r[col]], marker=mk, s=30, zorder=5, color="k", label=f"input: {r['layer']}")
        ax.set_xlabel("relative depth (layer / n layers)")
        ax.set_ylabel(lab)
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def plot_cka(df: pd.DataFrame, kind: str, path: Path) -> Path:
    """CKA per layer, one panel per family: mean over seeds, band = min..max, thin lines = seeds."""
    fams = sorted(df["family"].unique())
    fig, axes = _figure(1, len(fams), 4.2, 3.4)
    for ax, fam in zip(axes[0], fams):
        d = df[df["family"] == fam]
        for task, g in d.groupby("task_a"):
            s = g.groupby("layer_index")["cka"].agg(["mean", "min", "max"]).reset_index()
            x = s["layer_index"].to_numpy()
            (line,) = ax.plot(x, s["mean"], marker="o", ms=3, label=f"{task} (n={g['seed'].nunique()})")
            ax.fill_between(x, s["min"], s["max"], alpha=0.2, color=line.get_color())
            for _, sg in g.groupby("seed"):
                sg = sg.sort_values("layer_index")
                ax.plot(sg["layer_index"], sg["cka"], lw=0.5, alpha=0.5, color=line.get_color())
        ticks = d.drop_duplicates("layer_index").sort_values("layer_index")
        ax.set_xticks(ticks["layer_index"].to_numpy())
        ax.set_xticklabels(ticks["layer"].to_list(), rotation=60, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(fam, fontsize=9)
        ax.set_ylabel(f"linear CKA, {kind.replace('_', ' ')}")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def plot_decoding(df: pd.DataFrame, path: Path) -> Path:
    """Test errors of the population decoders vs relative depth."""
    cols = [
        ("position_error_cm", "position error (cm)"),
        ("direction_error_deg", "direction error (deg)"),
        ("speed_rmse", "speed RMSE (cm/s)"),
    ]
    fig, axes = _figure(1, 3, 4.0, 3.4)
    for ax, (col, lab) in zip(axes[0], cols):
        for name, trained, x, m, s in _group_lines(df, "relative_depth", col):
            ax.errorbar(x, m, yerr=s, marker="o", ms=3, capsize=2, ls="-" if trained else "--", label=name)
        ax.set_xlabel("relative depth")
        ax.set_ylabel(lab)
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# --------------------------------------------------------------------------------------------- stage
def _load_layer(m: ModelInfo, layer: str) -> tuple[np.ndarray, np.ndarray | None]:
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
    kind, ``decoding``, ``rdms/{model}`` and ``tsne/{model}`` per model (and ``rdms/inputs``,
    ``tsne/inputs``).
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
    models, sample_index, labels = _load_models(activation_paths, rc)
    plan = _plan_rsa(models, sample_index, labels, rc, seed, dt)
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
        _write_plan(h5, plan)
        acc = _Results({m.name: {} for m in models}, {m.name: {} for m in models})
        if test_path is not None and rc.inputs:
            _input_representations(h5, Path(test_path), plan, acc, quiet)
        _layers(h5, models, plan, acc, quiet)
        odf, cdf, ddf = _tables(h5, out, acc)
    figures = _figures(out, models, plan, acc, odf, cdf, ddf)
    log.info("RSA: wrote %s, CSV tables and %d figures to %s", RESULTS_NAME, len(figures), out)
    return figures


@dataclass
class _RsaPlan:
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
class _Results:
    """Rows and images collected over the inputs and the layers."""

    rdm_images: dict[str, dict[str, np.ndarray]]
    tsne_embs: dict[str, dict[str, np.ndarray]]
    oracle_rows: list[dict] = field(default_factory=list)
    cka_rows: list[dict] = field(default_factory=list)
    dec_rows: list[dict] = field(default_factory=list)
    input_images: dict[str, np.ndarray] = field(default_factory=dict)
    input_tsne: dict[str, np.ndarray] = field(default_factory=dict)


def _load_models(
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


def _plan_rsa(
    models: list[ModelInfo], sample_index: np.ndarray, labels: np.ndarray, rc: RsaConfig, seed: int, dt: float
) -> _RsaPlan:
    n = sample_index.size
    sub = rdmm.balanced_subset(labels, rc.per_class, _rng(seed, SEED_STREAM_RSA_RDM))
    sub_labels = labels[sub]
    tsne_sub = (
        rdmm.balanced_subset(labels, rc.tsne_per_class, _rng(seed, SEED_STREAM_RSA_TSNE)) if rc.tsne else None
    )
    pairs = pair_models(models)
    plan = _RsaPlan(
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


def _write_plan(h5: h5py.File, plan: _RsaPlan) -> None:
    h5.create_dataset("subset/positions", data=plan.sub)
    h5.create_dataset("subset/sample_index", data=plan.sample_index[plan.sub])
    h5.create_dataset("subset/label", data=plan.sub_labels)
    if plan.tsne_sub is not None:
        h5.create_dataset("tsne/positions", data=plan.tsne_sub)
        h5.create_dataset("tsne/label", data=plan.labels[plan.tsne_sub])
    if plan.test_mask is not None:
        h5.create_dataset("decoding/test_mask", data=plan.test_mask)


def _open_test_file(f: h5py.File, tp: Path, plan: _RsaPlan) -> int:
    """Check that the PCRT test file holds the activations' samples; its number of rows."""
    for key in [*plan.rc.inputs, "label"]:
        if key not in f:
            raise DeepDrawError(f"{tp}: key '{key}' is missing; expected the PCRT test file (rsa.inputs)")
    N = f["label"].shape[0]
    si = plan.sample_index
    if si.min() < 0 or si.max() >= N:
        raise DeepDrawError(
            f"{tp}: holds {N} samples but key 'sample_index' of the activations reaches {int(si.max())}; expected the test file the activations were extracted from"
        )
    tl = _read_rows(f["label"], si[plan.sub]).astype(np.int64)
    if not (np.array_equal(tl, plan.sub_labels) or np.array_equal(tl - 1, plan.sub_labels)):
        raise DeepDrawError(
            f"{tp}: key 'label' at the activations' sample_index differs from the activations' labels; expected the test file the activations were extracted from"
        )
    return N


def _input_representations(h5: h5py.File, tp: Path, plan: _RsaPlan, acc: _Results, quiet: bool) -> None:
    """RDMs, oracle similarity and t-SNE of the input representations (``rsa.inputs``) of the test file."""
    rc, si, sub = plan.rc, plan.sample_index, plan.sub
    with store.open_artifact(tp) as f:
        N = _open_test_file(f, tp, plan)
        for key in tqdm(rc.inputs, desc="RSA inputs", disable=quiet):
            if f[key].shape[0] != N:
                raise DeepDrawError(
                    f"{tp}: key '{key}' has {f[key].shape[0]} rows; expected {N} as key 'label'"
                )
            name = INPUT_NAMES[key]
            X = _read_rows(f[key], si[sub]).astype(np.float32)
            store.check_finite(X, tp, key)
            r = rdmm.layer_gram(X, rc.gram_dtype, rc.device).rdm()
            st = rdmm.oracle_similarity(r, plan.sub_labels, plan.oracle)
            acc.oracle_rows.append(
                {"model": "input", "family": "input", "arch": "input", "seed": "", "task": "", "trained": False,
                 "layer": name, "layer_index": 0, "relative_depth": 0.0, **st}
            )  # fmt: skip
            acc.input_images[name] = rdmm.percentile_image(r, sub.size)
            if rc.save_rdms:
                h5.create_dataset(f"rdms/input/{name}", data=r.astype(np.float32))
            if plan.tsne_sub is not None:
                Xt = _read_rows(f[key], si[plan.tsne_sub])
                acc.input_tsne[name] = tsne_embedding(
                    Xt, rc.pca_components, rc.tsne_perplexity, rc.tsne_iter, plan.seed
                )
                h5.create_dataset(f"tsne/input/{name}", data=acc.input_tsne[name])


def _layers(h5: h5py.File, models: list[ModelInfo], plan: _RsaPlan, acc: _Results, quiet: bool) -> None:
    """Every layer, one name at a time over all models that have it: RDM and oracle similarity, the
    Gram matrices of the CKA pairs, decoding, t-SNE; then the CKA of the pairs at that layer."""
    in_pairs = {m.name for _, a, b in plan.pairs for m in (a, b)}
    order: list[str] = []
    for m in models:
        order += [layer for layer in m.layers if layer not in order]
    bar = tqdm(total=sum(len(m.layers) for m in models), desc="RSA layers", disable=quiet)
    for layer in order:
        grams: dict[str, np.ndarray] = {}
        for m in models:
            if layer not in m.layers:
                continue
            bar.set_postfix_str(f"{m.name[:30]} {layer}")
            gram = _model_layer(h5, m, layer, plan, acc, m.name in in_pairs)
            if gram is not None:
                grams[m.name] = gram
            bar.update(1)
        for kind, a, b in plan.pairs:
            if a.name in grams and b.name in grams:
                j, depth = a.depth(layer)
                acc.cka_rows.append(
                    {"comparison": kind, "family": a.family, "arch": a.arch, "seed": a.seed, "model_a": a.name,
                     "model_b": b.name, "task_a": a.task, "task_b": b.task, "trained_b": b.trained,
                     "layer": layer, "layer_index": j, "relative_depth": depth,
                     "cka": ckam.cka_normalised(grams[a.name], grams[b.name]), "n_samples": int(plan.gram_pos.size)}
                )  # fmt: skip
        del grams
    bar.close()


def _model_layer(
    h5: h5py.File, m: ModelInfo, layer: str, plan: _RsaPlan, acc: _Results, need_gram: bool
) -> np.ndarray | None:
    """One layer of one model: its rows and images in ``acc``; its normalised Gram matrix when the CKA
    pairs need it (else None)."""
    rc = plan.rc
    X, centres = _load_layer(m, layer)
    j, depth = m.depth(layer)
    ident = {"model": m.name, "family": m.family, "arch": m.arch, "seed": m.seed, "task": m.task,
             "trained": m.trained, "layer": layer, "layer_index": j, "relative_depth": depth}  # fmt: skip
    G = rdmm.layer_gram(X if plan.gram_pos.size == plan.n else X[plan.gram_pos], rc.gram_dtype, rc.device)
    r = G.rdm(plan.sub_in_gram)
    acc.oracle_rows.append({**ident, **rdmm.oracle_similarity(r, plan.sub_labels, plan.oracle)})
    acc.rdm_images[m.name][layer] = rdmm.percentile_image(r, plan.sub.size)
    if rc.save_rdms:
        h5.create_dataset(f"rdms/{m.name}/{layer}", data=r.astype(np.float32))
    del r
    gram = ckam.normalised_gram(G) if need_gram else None
    del G
    if rc.decoding:
        kin = plan.kin
        if centres is None:
            raise DeepDrawError(f"{m.path}: key 'centres/{layer}' is missing; expected the centre frames")
        if centres.min() < 0 or centres.max() >= kin.position.shape[2]:
            raise DeepDrawError(
                f"{m.path}: key 'centres/{layer}' holds frames outside 0..{kin.position.shape[2] - 1}"
            )
        assert plan.test_mask is not None  # drawn by the plan when rc.decoding
        res = dec.decode_layer(X, centres, kin, plan.test_mask, rc.ridge_alpha)
        res.pop("weights")
        acc.dec_rows.append({**ident, **res})
    if plan.tsne_sub is not None:
        e = tsne_embedding(X[plan.tsne_sub], rc.pca_components, rc.tsne_perplexity, rc.tsne_iter, plan.seed)
        acc.tsne_embs[m.name][layer] = e
        h5.create_dataset(f"tsne/{m.name}/{layer}", data=e)
    return gram


_CKA_COLUMNS = [
    "comparison", "family", "arch", "seed", "model_a", "model_b", "task_a", "task_b", "trained_b", "layer",
    "layer_index", "relative_depth", "cka", "n_samples",
]  # fmt: skip


def _tables(h5: h5py.File, out: Path, acc: _Results) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tidy tables (HDF5 and CSV): oracle, CKA and decoding rows and their summaries."""
    odf = pd.DataFrame(acc.oracle_rows)
    cdf = pd.DataFrame(acc.cka_rows, columns=_CKA_COLUMNS)
    ddf = pd.DataFrame(acc.dec_rows)
    keys = ["family", "arch", "task", "trained", "layer", "layer_index", "relative_depth"]
    osum = _summary(odf, keys, ["oracle_r", "oracle_tau_b", "oracle_tau_a"])
    otab = pd.DataFrame()
    if not odf.empty:
        o2 = odf.assign(
            condition=[
                ("input" if f == "input" else f"{t}_{'trained' if tr else 'untrained'}")
                for f, t, tr in zip(odf["family"], odf["task"], odf["trained"])
            ]
        )
        otab = o2.pivot_table(
            index=["family", "arch", "layer_index", "layer"],
            columns="condition",
            values="oracle_r",
            aggfunc="mean",
        ).reset_index()
        otab.columns.name = None
    csum = _summary(
        cdf,
        ["comparison", "family", "arch", "task_a", "task_b", "layer", "layer_index", "relative_depth"],
        ["cka"],
    )
    dsum = _summary(ddf, keys, list(dec.DECODING_METRICS)) if not ddf.empty else ddf
    for name, df in (
        ("oracle", odf),
        ("oracle_summary", osum),
        ("oracle_table", otab),
        ("cka", cdf),
        ("cka_summary", csum),
        ("decoding", ddf),
        ("decoding_summary", dsum),
    ):
        if not df.empty:
            _write_table(h5, name, df)
            _write_csv(df, out / f"rsa_{name}.csv")
    return odf, cdf, ddf


def _figures(
    out: Path,
    models: list[ModelInfo],
    plan: _RsaPlan,
    acc: _Results,
    odf: pd.DataFrame,
    cdf: pd.DataFrame,
    ddf: pd.DataFrame,
) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    if not odf.empty:
        layers_df = odf[odf["family"] != "input"]
        figures["oracle_similarity"] = plot_oracle(
            layers_df, odf[odf["family"] == "input"], out / "oracle_similarity.png"
        )
    for kind, g in cdf.groupby("comparison"):
        figures[f"cka_{kind}"] = plot_cka(g, kind, out / f"cka_{kind}.png")
    if not ddf.empty:
        figures["decoding"] = plot_decoding(ddf, out / "decoding.png")
    if acc.input_images:
        figures["rdms/inputs"] = plot_rdms(
            acc.input_images, "input representations (percentile RDMs)", out / "rdms_inputs.png"
        )
    tsne_labels = plan.labels[plan.tsne_sub] if plan.tsne_sub is not None else None
    if acc.input_tsne and tsne_labels is not None:
        plot_tsne_grid(acc.input_tsne, tsne_labels, "input representations (t-SNE)", out / "tsne_inputs.png")
        figures["tsne/inputs"] = out / "tsne_inputs.png"
    for m in models:
        if acc.rdm_images[m.name]:
            figures[f"rdms/{m.name}"] = plot_rdms(
                acc.rdm_images[m.name], f"{m.name} ({m.label})", out / f"rdms_{_safe(m.name)}.png"
            )
        if acc.tsne_embs[m.name] and tsne_labels is not None:
            p = out / f"tsne_{_safe(m.name)}.png"
            plot_tsne_grid(acc.tsne_embs[m.name], tsne_labels, f"{m.name} ({m.label})", p)
            figures[f"tsne/{m.name}"] = p
    return figures
