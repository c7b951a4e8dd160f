"""Activation extraction: every layer of a network on rows of a PCRT file, into one HDF5 file.

Activations (:func:`extract_activations`), one HDF5 per model::

    layers/{input, <layer>...}  (n, rows, frames, channels) float32 (recurrent_out: (n, 1, 320, units))
    centres/{input, <layer>...} (frames,) int64: input frame at the receptive-field centre of each frame
    outputs                     (n, 20) logits, or (n, frames', 3|6) regression outputs (TDT-PV scaled)
    kinematics/endeffector_coords, kinematics/joint_coords    copied rows (when present in the source)
    label, plane, start_id, end_id, size, rot, shear_x, shear_y, speed   copied rows (when present)
    sample_index                (n,) int64 rows of the source file, in the order given
    attrs: model_name, task, trained, layer_names (input first), source, deepdraw_version, torch_version
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

import deepdraw
from deepdraw.errors import DeepDrawError
from deepdraw.nn.checkpoints import load_checkpoint, resolve_device
from deepdraw.nn.data import INPUT_KEY, check_pcrt, open_pcrt
from deepdraw.nn.models import DeepDrawNet
from deepdraw.nn.targets import layer_centres
from deepdraw.store import file_sha256, tmp_path_for

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
) -> Path:
    """Run rows ``indices`` of ``test_path`` through a model and write every layer to one HDF5 file.

    Layout in the module docstring. The file is written to ``.<name>.tmp-<pid>`` and renamed, so a killed
    run never leaves a complete-looking file. An existing ``out_path`` is an error unless ``overwrite``.
    With ``expected`` (a model name), a checkpoint holding another model is an error (a file copied into
    the wrong run folder would otherwise give activations labelled with the wrong model).
    """
    dev = resolve_device(device)
    if isinstance(checkpoint_or_model, DeepDrawNet):
        model = checkpoint_or_model.to(dev).eval()
        name, trained = model.spec.name, not model.spec.untrained
    else:
        model, ck = load_checkpoint(checkpoint_or_model, device=dev)
        name, trained = ck["model_name"], bool(ck["trained"])
        if expected is not None and name != expected:
            raise DeepDrawError(
                f"{checkpoint_or_model}: field 'model_name' is '{name}'; expected '{expected}' (the run this "
                "checkpoint's folder belongs to): a checkpoint of another model was copied here"
            )
    ck_sha = "" if isinstance(checkpoint_or_model, DeepDrawNet) else file_sha256(checkpoint_or_model)
    n_rows = check_pcrt(test_path, None, model.input_shape)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise DeepDrawError("extract_activations got no sample indices; expected at least one row index.")
    if idx.min() < 0 or idx.max() >= n_rows:
        raise DeepDrawError(
            f"Sample indices for {test_path} span {int(idx.min())}..{int(idx.max())}; expected 0..{n_rows - 1}."
        )
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise DeepDrawError(f"Activation file {out_path} already exists; pass overwrite=True to replace it.")
    tmp = tmp_path_for(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n, batch = len(idx), max(int(batch), 1)
    centres = layer_centres(model)
    ok = False
    try:
        with open_pcrt(test_path) as src, h5py.File(tmp, "w") as dst:
            copies = {k: v for k, v in _KINEMATICS.items() if k in src}
            copies.update({k: k for k in _COPY if k in src})
            for k, dname in copies.items():
                d = src[k]
                if d.shape[:1] != (n_rows,):
                    continue
                dst.create_dataset(dname, shape=(n,) + d.shape[1:], dtype=d.dtype)
            dst.create_dataset("sample_index", data=idx)
            dst.create_dataset("centres/input", data=np.arange(model.input_shape[1], dtype=np.int64))
            for lname, c in centres.items():
                dst.create_dataset(f"centres/{lname}", data=c)
            created = False
            with torch.no_grad():
                for a in tqdm(range(0, n, batch), desc=f"activations {name}", disable=quiet):
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
                        if dname in dst:
                            dst[dname][s] = src[k][uniq][inv]
            dst.attrs["model_name"] = name
            dst.attrs["task"] = model.task
            dst.attrs["trained"] = bool(trained)
            dst.attrs["layer_names"] = ["input", *model.layer_names]
            dst.attrs["source"] = str(test_path)
            dst.attrs["checkpoint_sha256"] = ck_sha  # "" for an in-memory model
            dst.attrs["deepdraw_version"] = deepdraw.__version__
            dst.attrs["torch_version"] = str(torch.__version__)
        os.replace(tmp, out_path)
        ok = True
    finally:
        if not ok and tmp.exists():
            tmp.unlink()
    return out_path
