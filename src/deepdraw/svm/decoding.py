"""The linear decoding baseline of the trajectory-decoding task (TDT).

Hand position (``endeffector_coords``, cm) per frame from the proprioceptive inputs (``svm.decode_input``)
at that frame (and ``svm.decode_window`` frames around it), both standard-scaled, by least squares
(streaming normal equations); the mean 3-D error over the test frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import KIND_PCRT, N_FRAMES
from ..errors import DeepDrawError
from ..settings import Config
from ..store import iter_chunks, open_artifact
from .linear_decoder import LinearDecoder

log = logging.getLogger("deepdraw.svm.stage")  # the stage's one logger name, as before the split

__all__ = ["fit_linear_decoder", "frame_features"]


def frame_features(x: np.ndarray, window: int = 1) -> np.ndarray:
    """Per-frame design rows from an input block.

    ``x`` is ``(m, D, T)`` or ``(m, D, T, ch)`` (e.g. spindle_info ``(m, 25, 320, 2)``). Returns
    ``(m * T, D * ch * window)``: for sample s and frame t, the values of all channels at frames
    ``t - window//2 .. t + window//2`` (clamped at the ends), frame-major.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    m, D, T, ch = x.shape
    per_frame = np.transpose(x, (0, 2, 1, 3)).reshape(m, T, D * ch)
    if window == 1:
        return per_frame.reshape(m * T, D * ch)
    h = window // 2
    idx = np.clip(np.arange(T)[:, None] + np.arange(-h, h + 1)[None, :], 0, T - 1)  # (T, window)
    return per_frame[:, idx, :].reshape(m * T, window * D * ch)


def _frame_rows(
    xs: Any, ys: Any, sl: slice, window: int, path: Path, key: str, check: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Design rows and hand positions (cm) of the samples ``sl``; with ``check``, NaN/inf is an error
    naming the file, the keys and the samples."""
    X = frame_features(xs[sl], window)
    Y = np.transpose(ys[sl], (0, 2, 1)).reshape(-1, 3)
    if check and not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise DeepDrawError(
            f"{path}: keys '{key}' / 'endeffector_coords' hold NaN/inf in samples "
            f"{sl.start}..{sl.stop - 1}; expected finite values"
        )
    return X, Y


def fit_linear_decoder(
    cfg: Config, train_path: Path, test_path: Path, n_use: int, quiet: bool
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    sc = cfg.svm
    key, win = sc.decode_input, sc.decode_window
    dec = LinearDecoder()
    chunk = max(1, sc.read_chunk)
    with open_artifact(train_path, kind=KIND_PCRT) as f:
        xs, ys = f[key], f["endeffector_coords"]
        for sl in tqdm(list(iter_chunks(n_use, chunk)), desc="tdt linear fit", disable=quiet, leave=False):
            dec.partial_fit(*_frame_rows(xs, ys, sl, win, train_path, key))
        dec.solve(sc.decode_alpha)
        err_tr, n_tr = 0.0, 0
        for sl in iter_chunks(n_use, chunk):
            X, Y = _frame_rows(xs, ys, sl, win, train_path, key, check=False)  # checked above
            e = np.linalg.norm(dec.predict(X) - Y, axis=1)
            err_tr += float(e.sum())
            n_tr += e.size
    err_sum, sq_axis, n_te = 0.0, np.zeros(3), 0
    hist = np.zeros(60, np.int64)  # 0.1 cm bins up to 6 cm (last bin: beyond)
    per_frame = np.zeros(N_FRAMES)
    per_frame_n = 0
    with open_artifact(test_path, kind=KIND_PCRT) as f:
        xs, ys = f[key], f["endeffector_coords"]
        n = xs.shape[0]
        for sl in tqdm(list(iter_chunks(n, chunk)), desc="tdt linear test", disable=quiet, leave=False):
            X, Y = _frame_rows(xs, ys, sl, win, test_path, key)
            diff = dec.predict(X) - Y
            e = np.linalg.norm(diff, axis=1)
            err_sum += float(e.sum())
            sq_axis += (diff**2).sum(0)
            n_te += e.size
            hist += np.bincount(np.minimum((e / 0.1).astype(np.int64), 59), minlength=60)
            T = xs.shape[2]
            if T == N_FRAMES:
                per_frame += e.reshape(-1, T).sum(0)
                per_frame_n += e.size // T
    error_cm = err_sum / max(n_te, 1)
    log.info("tdt linear decoder (%s, window %d): mean test error %.3f cm", key, win, error_cm)
    return {
        "error_cm": error_cm,
        "error_cm_train": err_tr / max(n_tr, 1),
        "input": key,
        "window": win,
        "arrays": {
            "coef": dec.coef_,
            "x_mean": dec.mx,
            "x_std": dec.sx,
            "y_mean": dec.my,
            "y_std": dec.sy,
            "error_cm": np.float64(error_cm),
            "error_cm_train": np.float64(err_tr / max(n_tr, 1)),
            "rmse_cm_per_axis": np.sqrt(sq_axis / max(n_te, 1)),
            "error_hist_0p1cm": hist,
            "error_cm_per_frame": per_frame / max(per_frame_n, 1),
            "n_train_frames": np.int64(n_tr),
            "n_test_frames": np.int64(n_te),
        },
    }
