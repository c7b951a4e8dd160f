"""The analyses of an RSA run, one representation at a time: RDM and oracle similarity, the Gram matrices
of the CKA pairs and their CKA, population decoding of every layer of every model, and its t-SNE for the
models of ``rsa.tsne_seeds`` (:func:`analyse_layers`); RDMs, oracle similarity and t-SNE of the input
representations of the test file (:func:`input_representations`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from .. import store
from ..errors import DeepDrawError
from . import cka as ckam
from . import decoding as dec
from . import rdm as rdmm
from .checks import INPUT_NAMES
from .modelinfo import ModelInfo, load_layer
from .plan import Results, RsaPlan
from .tsne import tsne_embedding, tsne_wanted


def _read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (any order, unique) of a dataset, read in increasing order."""
    order = np.argsort(rows)
    out = np.empty((rows.size, *ds.shape[1:]), dtype=ds.dtype)
    out[order] = ds[np.sort(rows)]
    return out


def _open_test_file(f: h5py.File, tp: Path, plan: RsaPlan) -> int:
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


def input_representations(h5: h5py.File, tp: Path, plan: RsaPlan, acc: Results, quiet: bool) -> None:
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


def analyse_layers(h5: h5py.File, models: list[ModelInfo], plan: RsaPlan, acc: Results, quiet: bool) -> None:
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
    h5: h5py.File, m: ModelInfo, layer: str, plan: RsaPlan, acc: Results, need_gram: bool
) -> np.ndarray | None:
    """One layer of one model: its rows and images in ``acc``; its normalised Gram matrix when the CKA
    pairs need it (else None)."""
    rc = plan.rc
    X, centres = load_layer(m, layer)
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
    if plan.tsne_sub is not None and tsne_wanted(rc, m.seed):
        e = tsne_embedding(X[plan.tsne_sub], rc.pca_components, rc.tsne_perplexity, rc.tsne_iter, plan.seed)
        acc.tsne_embs[m.name][layer] = e
        h5.create_dataset(f"tsne/{m.name}/{layer}", data=e)
    return gram
