"""``deepdraw predict``: which model and which layer best predict recorded neurons.

Inputs: the folder ``deepdraw encode`` wrote (``encoded.h5`` and ``activations/*.h5``) and the neural
data of the same movements (:mod:`.neural`). Rows of the regression: every frame of every encoded
movement. A frame covered by several windows (long recordings, ``encode.overlap``) takes its features
from the window where it lies farthest from the window's edges; frames only in masked windows
(``encode.jumps = "mask"``) or rejected ones are left out. A layer's features at a frame: all its units
(rows x channels) at the layer frame whose receptive-field centre (``centres/<layer>``) is nearest.

Per model and layer, :func:`deepdraw.encode.ridge.cv_explained_variance` (PCA on the training folds,
ridge with inner-CV penalties, K-fold explained variance per neuron). Outputs in ``--out``:
``predict.h5`` (kind ``predict``: ``ev`` and ``alpha`` (models, layers, neurons)), ``predict.csv`` (one
row per model, layer and neuron), ``summary.csv`` (per model and layer: median, mean, 90th percentile of
the EV), ``best_layers.csv`` (per neuron and model: best layer), the figures of :mod:`.figures` and
``index.html``, the HTML report of the folder (:mod:`deepdraw.report.predict`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import store
from ..activation_files import open_activations
from ..contracts import ENCODED_SCHEMA, KIND_ENCODED, KIND_PREDICT, schema_subset
from ..errors import DeepDrawError
from ..settings import Config
from .neural import read_neurons, read_repeats, split_half_ceiling
from .ridge import block_folds, cv_explained_variance

log = logging.getLogger(__name__)


def frame_map(enc: h5py.File) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per movement frame (movements one after the other): (window, window frame, movement, frame);
    window = -1 where no usable window covers it."""
    frames = enc["movement_frames"][()]
    mov, first = enc["movement"][()], enc["first_frame"][()]
    start, end, masked = enc["start_id"][()], enc["end_id"][()], enc["masked"][()]
    offs = np.concatenate([[0], np.cumsum(frames)])
    win = np.full(offs[-1], -1, dtype=np.int64)
    pos = np.zeros(offs[-1], dtype=np.int64)
    best = np.full(offs[-1], -1.0)
    for w in np.flatnonzero(masked == 0):
        p = np.arange(start[w], end[w])
        rows = offs[mov[w]] + first[w] + (p - start[w])
        margin = np.minimum(p - start[w], end[w] - 1 - p).astype(float)
        better = margin > best[rows]
        win[rows[better]], pos[rows[better]], best[rows[better]] = w, p[better], margin[better]
    m = np.repeat(np.arange(len(frames)), frames)
    return win, pos, m, np.arange(offs[-1]) - offs[m]


def layer_features(f: h5py.File, layer: str, win: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(rows, units) float32: the layer's units at the frame nearest each row's window frame."""
    ds = f[f"layers/{layer}"]
    c = f[f"centres/{layer}"][()]
    n_in = int(f["centres/input"].shape[0])
    k = np.argmin(np.abs(c[None, :] - np.arange(n_in)[:, None]), axis=1)  # input frame -> nearest layer frame
    out = np.empty((len(win), ds.shape[1] * ds.shape[3]), dtype=np.float32)
    for w in np.unique(win):
        rows = np.flatnonzero(win == w)
        a = ds[int(w)]  # (rows, frames, channels)
        out[rows] = a[:, k[pos[rows]], :].transpose(1, 0, 2).reshape(len(rows), -1)
    return out


def activation_files(folder: Path) -> list[Path]:
    files = sorted((folder / "activations").glob("*.h5"))
    if not files:
        raise DeepDrawError(
            f"{folder / 'activations'}: no activation files; run `deepdraw encode` with models"
        )
    return files


def run_predict(encode_dir: str | os.PathLike, neural: str | os.PathLike, cfg: Config, out: Path,
                overwrite: bool = False) -> Path:  # fmt: skip
    """Every model and layer vs the neurons of ``neural``; writes the outputs; returns ``predict.h5``."""
    pc = cfg.predict
    folder = Path(encode_dir)
    enc_path = folder / "encoded.h5"
    schema = schema_subset(ENCODED_SCHEMA, ("movement", "first_frame", "start_id", "end_id", "masked",
                                            "movement_frames", "movement_t0"))  # fmt: skip
    with store.open_artifact(enc_path, kind=KIND_ENCODED, schema=schema) as enc:
        names = json.loads(enc.attrs["movement_names"])
        frames, t0, dt = enc["movement_frames"][()], enc["movement_t0"][()], float(enc.attrs["dt"])
        win, pos, mov, fr = frame_map(enc)
    y, neuron_ids = read_neurons(neural, names, frames, t0, dt)
    keep = win >= 0
    if keep.sum() < len(keep):
        log.info("predict: %d of %d frames left out (masked or rejected windows)", (~keep).sum(), len(keep))
    win, pos, y = win[keep], pos[keep], y[keep]
    rep = read_repeats(neural)
    ceiling = split_half_ceiling(rep[:, keep]) if rep is not None else np.full(y.shape[1], np.nan)
    fold = block_folds(mov[keep], fr[keep], pc.block_frames, pc.folds, pc.seed)
    results = []  # (model, trained, layer, ev, alpha)
    models = {}  # file stem -> what the report shows of the model
    for path in activation_files(folder):
        with open_activations(path, ()) as f:
            model, trained = str(f.attrs["model_name"]), bool(f.attrs["trained"])
            models[path.stem] = _model_info(f, model, trained)
            layers = [str(s) for s in f.attrs["layer_names"]]
            use = [la for la in layers if not pc.layers or la in pc.layers]
            for layer in tqdm(use, desc=f"predict {path.stem}", disable=cfg.run.quiet):
                x = layer_features(f, layer, win, pos)
                ev, alpha = cv_explained_variance(x, y, fold, pc.n_components, pc.alphas)
                results.append((path.stem, model, trained, layer, ev, np.median(alpha, axis=0)))
    meta = {"encode_dir": str(folder.resolve()), "neural_file": str(Path(neural).resolve()),
            "n_frames": int(keep.sum()), "n_frames_left_out": int((~keep).sum()), "model_info": json.dumps(models)}  # fmt: skip
    return write_results(results, neuron_ids, ceiling, cfg, out, overwrite, {enc_path.name: store.file_sha256(enc_path),
                         Path(neural).name: store.file_sha256(neural)}, meta)  # fmt: skip


def _model_info(f: h5py.File, model: str, trained: bool) -> dict:
    """Model name, trained flag, zoo entry or checkpoint, and checkpoint sha256 of an activation file."""
    info: dict = {"model_name": model, "trained": trained}
    entry = f.attrs.get("model_entry")
    if entry is not None:
        info["entry"] = entry.decode() if isinstance(entry, bytes) else str(entry)
    raw = f.attrs.get("inputs")
    if raw is not None:
        try:
            ins = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            info["inputs"] = {k: v for k, v in ins.items() if not k.endswith("encoded.h5")}
        except (ValueError, AttributeError):
            pass
    return info


def write_results(
    results,
    neuron_ids,
    ceiling,
    cfg: Config,
    out: Path,
    overwrite: bool,
    inputs: dict,
    meta: dict | None = None,
) -> Path:
    """``predict.h5``, the CSV tables, the figures and ``index.html`` (module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(r[0] for r in results))
    layers = {k: [r[3] for r in results if r[0] == k] for k in keys}
    L = max(len(v) for v in layers.values())
    ev = np.full((len(keys), L, len(neuron_ids)), np.nan, np.float32)
    alpha = np.full_like(ev, np.nan)
    rows = []
    for key, model, trained, layer, e, a in results:
        i, j = keys.index(key), layers[key].index(layer)
        ev[i, j], alpha[i, j] = e, a
        rows += [(key, model, trained, layer, j, n, float(v), float(b), float(c))
                 for n, v, b, c in zip(neuron_ids, e, a, ceiling)]  # fmt: skip
    cols = [
        "model",
        "model_name",
        "trained",
        "layer",
        "layer_index",
        "neuron",
        "ev",
        "alpha",
        "noise_ceiling",
    ]
    df = pd.DataFrame(rows, columns=cols)
    summary = df.groupby(["model", "trained", "layer_index", "layer"], sort=False)["ev"].agg(
        median="median", mean="mean", q90=lambda s: s.quantile(0.9), n="count").reset_index()  # fmt: skip
    best = df.loc[df.groupby(["model", "neuron"], sort=False)["ev"].idxmax().dropna()]
    attrs = {"models": json.dumps(keys), "layers": json.dumps(layers), "neurons": json.dumps(neuron_ids),
             "trained": json.dumps([bool(next(r[2] for r in results if r[0] == k)) for k in keys]),
             "model_names": json.dumps([str(next(r[1] for r in results if r[0] == k)) for k in keys]),
             **(meta or {})}  # fmt: skip
    h5 = store.write_artifact(out / "predict.h5", {"ev": ev, "alpha": alpha, "noise_ceiling": ceiling}, KIND_PREDICT,
                              config=cfg.to_dict(["predict"]), inputs=inputs, attrs=attrs, overwrite=overwrite)  # fmt: skip
    for name, table in (("predict.csv", df), ("summary.csv", summary), ("best_layers.csv", best)):
        with store.atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False)
    from ..report.predict import build_predict_report

    if cfg.predict.figures:
        from .figures import draw_figures
        from .results import load_results

        draw_figures(load_results(out), out, overwrite=True)
    build_predict_report(out)
    log.info("predict: %d model file(s), %d neurons -> %s", len(keys), len(neuron_ids), out)
    return h5
