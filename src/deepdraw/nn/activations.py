"""Activation extraction: every layer of a network on rows of a PCRT file, into one HDF5 artifact.

Activations (:func:`extract_activations`), one HDF5 per model, written through
:class:`deepdraw.store.ArtifactWriter` (kind ``activations``, see :mod:`deepdraw.contracts`)::

    layers/{input, <layer>...}  (n, rows, frames, channels) float32 (recurrent_out: (n, 1, 320, units))
    centres/{input, <layer>...} (frames,) int64: input frame at the receptive-field centre of each frame
    outputs                     (n, 20) logits, or (n, frames', 3|6) regression outputs (TDT-PV scaled)
    kinematics/endeffector_coords, kinematics/joint_coords    copied rows (when present in the source)
    label, plane, start_id, end_id, size, rot, shear_x, shear_y, speed   copied rows (when present)
    sample_index                (n,) int64 rows of the source file, in the order given
    attrs: model_name, spec (the architecture, JSON), task, trained, layer_names (input first), source,
           checkpoint_sha256, torch_version, and the provenance of :func:`deepdraw.store.provenance`
           (kind, deepdraw_version, git_commit, config, seeds, inputs, versions)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from deepdraw.contracts import KIND_ACTIVATIONS
from deepdraw.errors import DeepDrawError
from deepdraw.nn.checkpoints import load_checkpoint, resolve_device
from deepdraw.nn.data import INPUT_KEY, check_pcrt, open_pcrt
from deepdraw.nn.models.networks import DeepDrawNet
from deepdraw.nn.targets import layer_centres
from deepdraw.store import ArtifactWriter, file_sha256

__all__ = ["extract_activations"]

_KINEMATICS = {
    "endeffector_coords": "kinematics/endeffector_coords",
    "joint_coords": "kinematics/joint_coords",
}
_COPY = ("label", "plane", "start_id", "end_id", "size", "rot", "shear_x", "shear_y", "speed")


def extract_activations(
    checkpoint_or_model: DeepDrawNet | str | os.PathLike,
    test_path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    out_path: str | os.PathLike,
    batch: int = 100,
    *,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    expected: str | None = None,
    kind: str = KIND_ACTIVATIONS,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Run rows ``indices`` of ``test_path`` through a model and write every layer to one HDF5 file.

    Layout in the module docstring. The file is written by :class:`~deepdraw.store.ArtifactWriter`
    (temporary name, then rename; provenance attributes with ``kind``, ``config``, ``seeds`` and
    ``inputs``, the checkpoint's sha256 added to ``inputs``); ``attrs`` are extra root attributes (they
    may override the identity ones). An existing ``out_path`` is an error unless ``overwrite``. With
    ``expected`` (a model name), a checkpoint holding another model is an error (a file copied into the
    wrong run folder would otherwise give activations labelled with the wrong model).
    """
    dev = resolve_device(device)
    model, name, trained, ck_inputs = _load_model(checkpoint_or_model, dev, expected)
    n_rows = check_pcrt(test_path, None, model.input_shape)
    idx = _check_indices(indices, n_rows, test_path)
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise DeepDrawError(f"Activation file {out_path} already exists; pass overwrite=True to replace it.")
    meta = {
        "model_name": name,
        "spec": json.dumps(model.spec.to_dict(), sort_keys=True),
        "task": model.task,
        "trained": trained,
        "layer_names": ["input", *model.layer_names],
        "source": str(test_path),
        "checkpoint_sha256": next(iter(ck_inputs.values()), ""),  # "" for an in-memory model
        "torch_version": str(torch.__version__),
        **(attrs or {}),
    }
    ins = {**ck_inputs, **(inputs or {})}
    with (
        open_pcrt(test_path) as src,
        ArtifactWriter(out_path, kind, config, seeds, ins, meta, overwrite) as dst,
    ):
        _create_datasets(model, src, dst, idx, n_rows)
        _write_batches(model, src, dst, idx, max(int(batch), 1), dev, desc=f"activations {name}", quiet=quiet)
    return out_path


def _load_model(
    checkpoint_or_model: DeepDrawNet | str | os.PathLike, dev: torch.device, expected: str | None
) -> tuple[DeepDrawNet, str, bool, dict[str, str]]:
    """``(model in eval mode on dev, model name, trained, {checkpoint file name: sha256})``."""
    if isinstance(checkpoint_or_model, DeepDrawNet):
        model = checkpoint_or_model.to(dev).eval()
        return model, model.spec.name, not model.spec.untrained, {}
    model, ck = load_checkpoint(checkpoint_or_model, device=dev)
    name = str(ck["model_name"])
    if expected is not None and name != expected:
        raise DeepDrawError(
            f"{checkpoint_or_model}: field 'model_name' is '{name}'; expected '{expected}' (the run this "
            "checkpoint's folder belongs to): a checkpoint of another model was copied here"
        )
    sha = file_sha256(checkpoint_or_model)
    return model, name, bool(ck["trained"]), {Path(checkpoint_or_model).name: sha}


def _check_indices(
    indices: Sequence[int] | np.ndarray, n_rows: int, test_path: str | os.PathLike
) -> np.ndarray:
    """``indices`` as an int64 vector, checked non-empty and inside ``0..n_rows-1``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise DeepDrawError("extract_activations got no sample indices; expected at least one row index.")
    if idx.min() < 0 or idx.max() >= n_rows:
        raise DeepDrawError(
            f"Sample indices for {test_path} span {int(idx.min())}..{int(idx.max())}; expected 0..{n_rows - 1}."
        )
    return idx


def _copies(src: h5py.File, n_rows: int) -> dict[str, str]:
    """Per-sample keys of the source copied to the activations file: source key -> destination key."""
    copies = {k: v for k, v in _KINEMATICS.items() if k in src}
    copies.update({k: k for k in _COPY if k in src})
    return {k: d for k, d in copies.items() if src[k].shape[:1] == (n_rows,)}


def _create_datasets(
    model: DeepDrawNet, src: h5py.File, dst: h5py.File, idx: np.ndarray, n_rows: int
) -> None:
    """The copied per-sample keys (empty, filled batch by batch), ``sample_index`` and ``centres/*``."""
    n = len(idx)
    for k, dname in _copies(src, n_rows).items():
        dst.create_dataset(dname, shape=(n,) + src[k].shape[1:], dtype=src[k].dtype)
    dst.create_dataset("sample_index", data=idx)
    dst.create_dataset("centres/input", data=np.arange(model.input_shape[1], dtype=np.int64))
    for lname, c in layer_centres(model).items():
        dst.create_dataset(f"centres/{lname}", data=c)


def _write_batches(
    model: DeepDrawNet,
    src: h5py.File,
    dst: h5py.File,
    idx: np.ndarray,
    batch: int,
    dev: torch.device,
    desc: str,
    quiet: bool,
) -> None:
    """Run the rows ``idx`` of ``src`` through ``model`` in batches; write layers, outputs and copies."""
    n = len(idx)
    copies = {k: d for k, d in _copies(src, src[INPUT_KEY].shape[0]).items() if d in dst}
    created = False
    with torch.no_grad():
        for a in tqdm(range(0, n, batch), desc=desc, disable=quiet):
            bidx = idx[a : a + batch]
            uniq, inv = np.unique(bidx, return_inverse=True)
            x = np.asarray(src[INPUT_KEY][uniq], dtype=np.float32)[inv]
            out, layers = model(torch.from_numpy(x).to(dev), return_layers=True)
            arrays = {"input": x}
            for lname, t in layers.items():
                t = t.float().cpu().numpy()
                arrays[lname] = t[:, None] if t.ndim == 3 else t
            if not created:
                for lname, arr in arrays.items():
                    dst.create_dataset(
                        f"layers/{lname}",
                        shape=(n,) + arr.shape[1:],
                        dtype=np.float32,
                        chunks=(min(batch, n),) + arr.shape[1:],
                        compression="lzf",  # ReLU maps compress ~4x at no read cost
                    )
                dst.create_dataset("outputs", shape=(n,) + tuple(out.shape[1:]), dtype=np.float32)
                created = True
            s = slice(a, a + len(bidx))
            for lname, arr in arrays.items():
                dst[f"layers/{lname}"][s] = arr
            dst["outputs"][s] = out.float().cpu().numpy()
            for k, dname in copies.items():
                dst[dname][s] = src[k][uniq][inv]
