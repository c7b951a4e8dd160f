"""The PCRT files ``pcrt_train.h5`` and ``pcrt_test.h5``: their attributes (muscle names, letters,
units) and their writing from the chunk files (the disk checked first, each chunk deleted once copied).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ... import store
from ...contracts import KIND_PCRT, KIND_PCRT_CHUNK, LETTERS, MUSCLES
from ...settings import Config

PCRT_ATTRS = {
    "muscle_names": json.dumps(MUSCLES),
    "letters": LETTERS,
    "units": json.dumps(
        {
            "endeffector_coords": "cm (world frame: x forward, y left/right, z up/down; origin shoulder)",
            "joint_coords": "deg (elv_angle, shoulder_elv, shoulder_rot, elbow_flexion)",
            "muscle_coords": "mm (fiber length)",
            "spindle_info": "[..., 0] mm, [..., 1] mm/s",
            "spindle_firing": "a.u.",
            "rot": "rad",
            "shear_x": "rad",
            "shear_y": "rad",
            "startpt": "cm",
            "tracing_error": "cm (sum over frames)",
            "joint_jerk": "deg/frame^3",
            "muscle_jerk": "mm/frame^3",
        }
    ),
}


def concat_chunks(
    chunks: list[str], out: Path, cfg: Config, inputs: dict[str, str], split_name: str, delete: bool = True
) -> None:
    total = 0
    shapes: dict[str, tuple] = {}
    dtypes: dict[str, np.dtype] = {}
    for c in chunks:
        with store.open_artifact(c, kind=KIND_PCRT_CHUNK) as f:
            n = f["label"].shape[0]
            total += n
            for k in f:
                shapes[k] = f[k].shape[1:]
                dtypes[k] = f[k].dtype
    # the file is written uncompressed while the chunks are deleted one by one: check the disk first
    final = sum(total * int(np.prod(shapes[k])) * dtypes[k].itemsize for k in shapes)
    sizes = [Path(c).stat().st_size for c in chunks]
    store.require_space(out.parent, final - (sum(sizes) - max(sizes, default=0) if delete else 0), out.name)
    attrs = {**PCRT_ATTRS, "dt": cfg.assembly.dt, "split": split_name, "n_frames": cfg.assembly.n_frames}
    conf = cfg.to_dict(["characters", "startpoints", "kinematics", "muscles", "assembly"])
    conf["run"] = {"seed": cfg.run.seed}
    with store.ArtifactWriter(
        out, KIND_PCRT, config=conf, seeds={"seed": cfg.run.seed}, inputs=inputs, attrs=attrs, overwrite=True
    ) as f:
        for k in shapes:
            chunk_rows = max(1, min(total, 64))
            f.create_dataset(
                k,
                shape=(total, *shapes[k]),
                dtype=dtypes[k],
                chunks=(chunk_rows, *shapes[k]) if total else None,
            )
        pos = 0
        for c in chunks:
            with store.open_artifact(c, kind=KIND_PCRT_CHUNK) as g:
                n = g["label"].shape[0]
                for k in shapes:
                    f[k][pos : pos + n] = g[k][()]
                    f.flush()  # one dataset's chunks at a time: the layout never depends on timing
                pos += n
            if delete:  # the disk holds the dataset about once, not twice (a rerun re-makes the chunk)
                Path(c).unlink()
