"""``deepdraw encode``: movement files -> ``encoded.h5`` (PCRT-like windows) -> every model's activations.

The steps are the dataset stage's own functions, not copies: :func:`deepdraw.dataset.arm.ik_batch`
(from the dataset's start posture), :func:`deepdraw.dataset.engines.muscle_lengths` (the fast engine
with its OpenSim fallback, or ``muscles.engine = "exact"``) and
:func:`~deepdraw.dataset.assemble.samples.fill_opensim_gaps`, :func:`deepdraw.dataset.proprio.place` and
:func:`~deepdraw.dataset.proprio.spindle_info` on each 320-frame window, as the PCRT samples, and
:func:`deepdraw.dataset.checks.find_jumps` for the wrapping discontinuities. The activations are
:func:`deepdraw.nn.activations.extract_activations` on the encoded file.

``encoded.h5`` (kind ``encoded``; ``docs/formats.md``): one row per window.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import store
from ..contracts import JOINTS, KIND_ENCODED, MUSCLES
from ..dataset import arm, proprio
from ..dataset.assemble.pcrt_files import PCRT_ATTRS
from ..dataset.assemble.samples import fill_opensim_gaps
from ..errors import DeepDrawError
from ..settings import Config
from . import prepare
from .io import Recording, read_movements

log = logging.getLogger(__name__)

JUMP_CHOICES = ("keep", "mask", "reject")


@dataclass
class Movement:
    """A recording on the 15 ms grid: hand (K, 3) cm {W}, joints (K, 4) deg, muscles (K, 25) mm
    (None where not known / not computed yet); ``jumps``: (muscle index, frame, step mm) rows."""

    rec: Recording
    t: np.ndarray
    hand: np.ndarray | None = None
    joints: np.ndarray | None = None
    muscles: np.ndarray | None = None
    jumps: list[tuple[int, int, float]] = field(default_factory=list)

    def known(self, key: str) -> np.ndarray:
        """``hand``, ``joints`` or ``muscles``, which an earlier step has set."""
        value = getattr(self, key)
        if value is None:  # a step run out of order: not the input's fault
            raise RuntimeError(f"{prepare.where(self.rec)}: {key} not computed yet")
        return value


def check_encode_config(cfg: Config) -> None:
    """Choices and ranges of ``[encode]`` (raised before any work)."""
    e = cfg.encode
    if e.jumps not in JUMP_CHOICES:
        raise DeepDrawError(f"encode.jumps is '{e.jumps}'; expected one of {', '.join(JUMP_CHOICES)}")
    if e.rate_hz < 0 or e.max_gap_s < 0 or not e.scale > 0 or not e.reach_tol_cm > 0:
        raise DeepDrawError(
            "encode.rate_hz and encode.max_gap_s must be >= 0, encode.scale and encode.reach_tol_cm > 0"
        )
    prepare.axes_matrix(e.axes)


def to_grid(rec: Recording, cfg: Config) -> Movement:
    """Gaps, resampling, and (hand positions) the lab-to-world transform and the unit check."""
    e = cfg.encode
    if len(rec.data) < 2:
        raise DeepDrawError(f"{prepare.where(rec)}: {len(rec.data)} frame(s); expected a movement")
    t = prepare.sample_times(rec, e.rate_hz)
    x = prepare.resample(t, prepare.fill_gaps(rec, t, e.max_gap_s), cfg.assembly.dt)
    grid = np.arange(len(x)) * cfg.assembly.dt
    mv = Movement(rec, grid)
    if rec.kind == "hand":
        mv.hand = prepare.to_world(x, prepare.units_factor(rec, e.units), e.axes, e.origin_cm, e.scale)
        prepare.check_units(rec, mv.hand)
    elif rec.kind == "joints":
        lo, hi = arm.Q_MIN - 0.5, arm.Q_MAX + 0.5
        bad = np.argwhere((x < lo) | (x > hi))
        if len(bad):
            f, j = bad[0]
            raise DeepDrawError(
                f"{prepare.where(rec)}: frame {f} (15 ms grid): {JOINTS[j]} = {x[f, j]:.1f} deg; expected "
                f"{arm.Q_MIN[j]:g}..{arm.Q_MAX[j]:g} deg (the arm's joint limits)"
            )
        mv.joints = np.clip(x, arm.Q_MIN, arm.Q_MAX)
        mv.hand = arm.fk_world(mv.joints)
    else:
        if not np.all(x > 0):
            raise DeepDrawError(f"{prepare.where(rec)}: muscle lengths must be positive (mm)")
        mv.muscles = x
    return mv


def solve_ik(movs: list[Movement], cfg: Config) -> None:
    """Joints of every hand-only movement: one :func:`~deepdraw.dataset.arm.ik_batch` call for all."""
    todo = [m for m in movs if m.joints is None and m.muscles is None]
    if not todo:
        return
    lengths = np.array([len(m.known("hand")) for m in todo])
    targets = np.full((len(todo), int(lengths.max()), 3), np.nan)
    for i, m in enumerate(todo):
        targets[i, : lengths[i]] = m.known("hand")
    q, err = arm.ik_batch(targets, lengths, progress=not cfg.run.quiet)
    for i, m in enumerate(todo):
        prepare.check_reach(m.rec, m.known("hand"), err[i, : lengths[i]], cfg.encode.reach_tol_cm, m.t)
        m.joints = q[i, : lengths[i]]


def muscle_lengths(movs: list[Movement], cfg: Config) -> None:
    """Fiber lengths of every movement with joints (one engine call), then the jump check."""
    from ..dataset.checks import JUMP_RATIO, find_jumps
    from ..dataset.engines import muscle_lengths as engine_lengths

    todo = [m for m in movs if m.muscles is None]
    if todo:
        for m, L in zip(todo, engine_lengths([m.known("joints") for m in todo], asdict(cfg.muscles))):
            try:
                m.muscles = fill_opensim_gaps(L)
            except DeepDrawError as exc:
                raise DeepDrawError(f"{prepare.where(m.rec)}: {exc}") from None
    for m in movs:
        _, mu, fr, st = find_jumps(m.known("muscles").T[None], cfg.encode.jump_mm, JUMP_RATIO)
        m.jumps = [(int(a), int(b), float(c)) for a, b, c in zip(mu, fr, st)]
        if m.jumps:
            desc = ", ".join(f"{MUSCLES[a]} at frame {b} ({c:.1f} mm)" for a, b, c in m.jumps[:8])
            log.warning(
                "%s: %d single-frame muscle-length jump(s) (MoBL-ARMS wrapping discontinuities): %s%s; "
                "encode.jumps = '%s'", prepare.where(m.rec), len(m.jumps), desc,
                " ..." if len(m.jumps) > 8 else "", cfg.encode.jumps,
            )  # fmt: skip


def cut_windows(movs: list[Movement], cfg: Config) -> dict[str, np.ndarray]:
    """The rows of ``encoded.h5``: every window of every movement (module docstring of :mod:`.prepare`)."""
    F, dt, e = cfg.assembly.n_frames, cfg.assembly.dt, cfg.encode
    rows: dict[str, list] = {k: [] for k in KEYS}
    for i, m in enumerate(movs):
        for s, stop, o in prepare.windows(len(m.known("muscles")), F, e.overlap, e.onset):
            hit = sorted({MUSCLES[a] for a, f, _ in m.jumps if s <= f and f + 1 < stop})
            if hit and e.jumps == "reject":
                log.warning("%s: window at frame %d dropped (jumps in %s)", prepare.where(m.rec), s, hit)
                continue
            L = proprio.place(m.known("muscles")[s:stop].T, o, F)
            rows["muscle_coords"].append(L)
            rows["spindle_info"].append(proprio.spindle_info(L, dt))
            rows["joint_coords"].append(proprio.place(m.joints[s:stop].T, o, F) if m.joints is not None
                                        else np.full((4, F), np.nan))  # fmt: skip
            rows["endeffector_coords"].append(proprio.place(m.hand[s:stop].T, o, F) if m.hand is not None
                                              else np.full((3, F), np.nan))  # fmt: skip
            rows["movement"].append(i)
            rows["first_frame"].append(s)
            rows["start_id"].append(o)
            rows["end_id"].append(o + stop - s)
            rows["jump"].append(int(bool(hit)))
            rows["masked"].append(int(bool(hit) and e.jumps == "mask"))
    if not rows["movement"]:
        raise DeepDrawError("encode: every window was rejected (encode.jumps = 'reject'); nothing to encode")
    dtypes = {"movement": np.int64, "first_frame": np.int64, "start_id": np.int64, "end_id": np.int64,
              "jump": np.int8, "masked": np.int8}  # fmt: skip
    return {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in rows.items()}


KEYS = (
    "spindle_info", "muscle_coords", "joint_coords", "endeffector_coords",
    "movement", "first_frame", "start_id", "end_id", "jump", "masked",
)  # fmt: skip


def encode_files(files: list[str | os.PathLike], cfg: Config, out: Path, overwrite: bool = False) -> Path:
    """Movement files -> ``out`` (``encoded.h5``); returns its path."""
    check_encode_config(cfg)
    if not files:
        raise DeepDrawError("encode: no movement files given")
    recs = [r for f in files for r in read_movements(f, cfg.encode)]
    names = [f"{Path(r.source).name}:{r.name}" for r in recs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DeepDrawError(f"encode: movement '{dup}' appears twice; expected unique names per file")
    movs = [to_grid(r, cfg) for r in recs]
    solve_ik(movs, cfg)
    muscle_lengths(movs, cfg)
    arrays = cut_windows(movs, cfg)
    lengths = np.array([len(m.known("muscles")) for m in movs], dtype=np.int64)
    jm = [(i, a, f, s) for i, m in enumerate(movs) for a, f, s in m.jumps]
    arrays["movement_frames"] = lengths
    arrays["movement_t0"] = np.array([r.time[0] if r.time is not None else 0.0 for r in recs], np.float64)
    arrays["jumps/movement"] = np.array([j[0] for j in jm], dtype=np.int64)
    arrays["jumps/muscle"] = np.array([j[1] for j in jm], dtype=np.int64)
    arrays["jumps/frame"] = np.array([j[2] for j in jm], dtype=np.int64)
    arrays["jumps/step_mm"] = np.array([j[3] for j in jm], dtype=np.float64)
    attrs = {
        **PCRT_ATTRS,
        "dt": cfg.assembly.dt,
        "n_frames": cfg.assembly.n_frames,
        "movement_names": json.dumps(names),
        "movement_kinds": json.dumps([r.kind for r in recs]),
        "transform": json.dumps({k: getattr(cfg.encode, k) for k in ("units", "axes", "origin_cm", "scale")}),
    }
    inputs = {str(f): store.file_sha256(f) for f in files}
    conf = cfg.to_dict(["encode", "muscles", "assembly"])
    store.write_artifact(
        out, arrays, KIND_ENCODED, config=conf, inputs=inputs, attrs=attrs, overwrite=overwrite
    )
    log.info("encoded %d movement(s) into %d window(s): %s", len(movs), len(arrays["movement"]), out)
    return Path(out)
