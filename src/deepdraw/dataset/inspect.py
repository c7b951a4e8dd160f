"""Figures of the dataset: one sample from pen path to proprioceptive inputs (the paper's Figure 2),
and a summary of a PCRT file (samples per character and plane, latents, durations, jerks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import store
from ..contracts import JOINTS, KIND_CANDIDATES, KIND_PCRT, LETTERS, MUSCLES, PCRT_SCHEMA
from ..errors import DeepDrawError
from ..paths import RunPaths
from ..settings import Config
from .kinematics import load_characters, load_startpoints


def _figure(figsize: tuple[float, float]):
    """A figure of its own (not pyplot's: the caller's matplotlib backend stays as it is)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig, out: Path, dpi: int) -> Path:
    """Lay out, write atomically (temporary name, then rename) and close a figure."""
    fig.tight_layout()
    return store.save_figure_atomic(fig, out, dpi=dpi, format="png")


def _candidate(rp: RunPaths, cid: int) -> dict:
    shards = sorted(rp.candidates.glob("shard_*.h5"))
    for s in shards:
        with store.open_artifact(s, kind=KIND_CANDIDATES) as f:
            a, b = int(f.attrs["start"]), int(f.attrs["stop"])
            if a <= cid < b:
                j = cid - a
                planes = json.loads(f.attrs["planes"])
                out = {k: f[k][j] for k in f if f[k].ndim >= 1 and f[k].shape[0] == b - a}
                out["plane_name"] = planes[int(out["plane"])]
                return out
    raise DeepDrawError(f"{rp.candidates}: no shard holds candidate {cid}")


def _pcrt(path: Path, i: int) -> dict:
    with store.open_artifact(path, kind=KIND_PCRT, schema=PCRT_SCHEMA) as f:
        n = f["label"].shape[0]
        if not 0 <= i < n:
            raise DeepDrawError(f"{path}: sample {i} requested; the file holds {n} samples")
        out = {k: f[k][i] for k in f}
    out["plane_name"] = out["plane"].decode()
    return out


def inspect_sample(cfg: Config, sample: int, png: str | None = None, source: str = "candidates") -> Path:
    """Write a PNG of one sample; returns its path."""
    rp = RunPaths.of(cfg)
    traj, lengths, _ = load_characters(rp.characters)
    starts = load_startpoints(rp.startpoints)
    if source == "candidates":
        s = _candidate(rp, sample)
        if "endeffector_coords" not in s:
            raise DeepDrawError(
                f"{rp.candidates}: shards hold no trajectories (kinematics.save_trajectories = false)"
            )
        L = int(s["length"])
        hand, joints = s["endeffector_coords"][:, :L], s["joint_coords"][:, :L]
        muscles = None
        if np.isfinite(s["muscle_jerk"]):
            from dataclasses import asdict

            from .engines import muscle_lengths

            muscles = muscle_lengths([joints.T.astype(np.float64)], asdict(cfg.muscles))[0].T
        firing = info = None
    else:
        s = _pcrt(rp.pcrt_train if source == "train" else rp.pcrt_test, sample)
        hand, joints, muscles = s["endeffector_coords"], s["joint_coords"], s["muscle_coords"]
        info, firing = s["spindle_info"], s["spindle_firing"]
    c = int(s["char_index"])
    pen = traj[c, :, : lengths[c]]
    n_rows = 2 if muscles is not None else 1
    fig = _figure((15, 4.6 * n_rows))
    letter = LETTERS[int(s["label"])]
    fig.suptitle(
        f"{source} sample {sample}: '{letter}' (UCI #{c}), {s['plane_name']} plane, size {float(s['size']):.1f}, "
        f"rot {np.degrees(float(s['rot'])):.0f} deg, speed {float(s['speed']):.1f}"
    )
    ax = fig.add_subplot(n_rows, 3, 1)
    ax.plot(pen[0], pen[1], "k-")
    ax.plot(pen[0, 0], pen[1, 0], "go")
    ax.set(title="pen path (UCI, rescaled)", xlabel="x (cm)", ylabel="y (cm)", aspect="equal")
    ax = fig.add_subplot(n_rows, 3, 2, projection="3d")
    sp = starts[s["plane_name"]]
    ax.scatter(sp[:, 0], sp[:, 1], sp[:, 2], s=2, c="0.75", label=f"start points ({s['plane_name']})")
    ax.plot(hand[0], hand[1], hand[2], "C3-", lw=2, label="hand path")
    ax.scatter([0], [0], [0], c="k", marker="^", label="shoulder")
    ax.set(title="hand path in the workspace", xlabel="x (cm)", ylabel="y (cm)", zlabel="z (cm)")
    ax.legend(fontsize=7, loc="upper left")
    ax = fig.add_subplot(n_rows, 3, 3)
    for k in range(4):
        ax.plot(joints[k], label=JOINTS[k])
    ax.set(title="joint angles", xlabel="frame (15 ms)", ylabel="deg")
    ax.legend(fontsize=7)
    if muscles is not None:
        ax = fig.add_subplot(n_rows, 3, 4)
        ax.plot(muscles.T, lw=0.8)
        ax.set(title="muscle fiber lengths (25 muscles)", xlabel="frame", ylabel="mm")
        if info is not None:
            ax = fig.add_subplot(n_rows, 3, 5)
            ax.plot(info[:, :, 0].T, lw=0.6)
            ax2 = ax.twinx()
            ax2.plot(info[:, :, 1].T, lw=0.4, alpha=0.4, ls="--")
            ax.set(title="spindle_info: length (solid, mm) and velocity (dashed, mm/s)", xlabel="frame")
            ax = fig.add_subplot(n_rows, 3, 6)
            im = ax.imshow(firing, aspect="auto", cmap="viridis")
            ax.set_yticks(range(0, 25, 3), [MUSCLES[i] for i in range(0, 25, 3)], fontsize=7)
            ax.set(title="spindle_firing (noisy rate)", xlabel="frame")
            fig.colorbar(im, ax=ax)
    return _save(fig, Path(png) if png else rp.figures / f"inspect_{source}_{sample}.png", dpi=90)


def summary_figure(cfg: Config, png: str | None = None) -> Path:
    """Dataset summary of the run's PCRT files: counts per character and plane, latents, durations, jerks."""
    rp = RunPaths.of(cfg)
    cols: dict[str, list] = {}
    keys = (
        "label",
        "plane",
        "size",
        "rot",
        "shear_x",
        "shear_y",
        "speed",
        "start_id",
        "end_id",
        "joint_jerk",
        "muscle_jerk",
    )
    for p in (rp.pcrt_train, rp.pcrt_test):
        a = store.read_arrays(p, keys, kind=KIND_PCRT, schema=PCRT_SCHEMA)
        for k in keys:
            cols.setdefault(k, []).append(a[k])
    d = {k: np.concatenate(v) for k, v in cols.items()}
    fig = _figure((17, 7.5))
    axs = fig.subplots(2, 4)
    x = np.arange(20)
    for j, pl in enumerate((b"horizontal", b"vertical")):
        cnt = np.bincount(d["label"][d["plane"] == pl], minlength=20)
        axs[0, 0].bar(x + 0.4 * j, cnt, width=0.4, label=pl.decode())
    axs[0, 0].set_xticks(x + 0.2, list(LETTERS))
    axs[0, 0].set(title=f"samples per character and plane (n = {len(d['label'])})")
    axs[0, 0].legend(fontsize=8)
    for ax, k in zip((axs[0, 1], axs[0, 2], axs[0, 3]), ("size", "speed", "rot")):
        vals, cnt = np.unique(np.round(d[k], 4), return_counts=True)
        lab = [f"{np.degrees(v):.0f}" if k == "rot" else f"{v:g}" for v in vals]
        ax.bar(lab, cnt)
        ax.set(title=f"latent: {k}{' (deg)' if k == 'rot' else ''}")
    vals, cnt = np.unique(
        np.round(np.degrees(np.concatenate([d["shear_x"], d["shear_y"]])), 1), return_counts=True
    )
    axs[1, 0].bar([f"{v:g}" for v in vals], cnt)
    axs[1, 0].set(title="latents: shear x and y (deg)")
    dur = (d["end_id"] - d["start_id"]) * cfg.assembly.dt
    axs[1, 1].hist(dur, bins=40)
    axs[1, 1].set(title="movement duration", xlabel="s")
    axs[1, 2].hist(d["joint_jerk"], bins=40)
    axs[1, 2].set(title="joint jerk (selection: < max_joint_jerk)", xlabel="deg/frame^3")
    axs[1, 3].hist(d["muscle_jerk"], bins=40)
    axs[1, 3].set(title="muscle jerk (lowest kept)", xlabel="mm/frame^3")
    return _save(fig, Path(png) if png else rp.figures / "dataset_summary.png", dpi=80)
