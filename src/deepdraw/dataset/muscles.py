"""Muscle fiber lengths of the MoBL-ARMS OpenSim model along joint trajectories (spec 1.3 step 7).

Two engines give the fiber lengths (mm) of the 25 muscles of :data:`MUSCLES` for joint angles (degrees,
order of :data:`JOINTS`):

* :class:`ExactEngine` runs OpenSim frame by frame, as DeepDraw's ``make_muscle_config``.
* :class:`FastEngine` (the default) evaluates tables built once from OpenSim by
  :func:`build_fast_engine`, vectorised over thousands of trajectories, and hands the frames it cannot
  reproduce (near a wrapping discontinuity of the model, outside the tabulated box) to the exact engine.
  :func:`validate_fast_engine` measures its error against the exact engine.

The design, its validation figures and the model's discontinuities are described in ``docs/muscles.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DeepDrawError

log = logging.getLogger(__name__)

__all__ = [
    "MUSCLES",
    "JOINTS",
    "Q_MIN",
    "Q_MAX",
    "ENGINE_KIND",
    "ExactEngine",
    "FastEngine",
    "build_fast_engine",
    "validate_fast_engine",
    "compare",
    "velocity",
    "evaluate_postures",
    "synthetic_trajectories",
    "character_trajectories",
    "dataset_trajectories",
    "default_model_path",
    "default_engine_path",
]

MUSCLES: tuple[str, ...] = (
    "CORB", "DELT1", "DELT2", "DELT3", "INFSP", "LAT1", "LAT2", "LAT3", "PECM1", "PECM2", "PECM3",
    "SUBSC", "SUPSP", "TMAJ", "TMIN", "ANC", "BIClong", "BICshort", "BRA", "BRD", "ECRL", "PT",
    "TRIlat", "TRIlong", "TRImed",
)  # fmt: skip
"""The 25 muscles kept, in the dataset's order (15 shoulder, then 10 elbow muscles; spec section 0)."""
JOINTS: tuple[str, ...] = ("elv_angle", "shoulder_elv", "shoulder_rot", "elbow_flexion")
"""The OpenSim coordinates set from the joint angles, in the order of the joint arrays."""
Q_MIN = np.array([-90.0, 0.0, -90.0, 0.0])
"""Lower joint limits of the arm, degrees (same as :data:`deepdraw.dataset.arm.Q_MIN`)."""
Q_MAX = np.array([130.0, 180.0, 20.0, 130.0])
"""Upper joint limits of the arm, degrees."""

ENGINE_KIND = "muscle_fast_engine"
"""``kind`` attribute of the fast-engine artifact."""
ENGINE_FILE = "fast_engine.h5"
"""File name of the shipped fast-engine artifact under ``data/muscles/``."""


def default_model_path() -> Path:
    """The MoBL-ARMS model shipped in ``data/reference_model``."""
    from ..paths import osim_model

    return osim_model()


def default_engine_path() -> Path:
    """The fast-engine artifact shipped in ``data/muscles``."""
    from ..paths import data_dir

    return data_dir() / "muscles" / ENGINE_FILE


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _as_joints(joints: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(n, T, 4) or (T, 4) degrees -> ((n, T, 4) float64, valid mask (n, T), was_2d)."""
    q = np.asarray(joints, dtype=np.float64)
    squeeze = q.ndim == 2
    if squeeze:
        q = q[None]
    if q.ndim != 3 or q.shape[-1] != 4:
        raise DeepDrawError(
            f"joints: expected an array of shape (n, T, 4) or (T, 4) in degrees "
            f"({', '.join(JOINTS)}); got shape {np.shape(joints)}"
        )
    n, t_max, _ = q.shape
    if lengths is None:
        valid = np.ones((n, t_max), dtype=bool)
    else:
        lens = np.asarray(lengths)
        if squeeze and lens.ndim == 0:
            lens = lens[None]
        if lens.shape != (n,) or not np.issubdtype(lens.dtype, np.integer):
            raise DeepDrawError(
                f"lengths: expected ({n},) integers (valid frames per trajectory); got {lens.shape} {lens.dtype}"
            )
        if np.any((lens < 0) | (lens > t_max)):
            raise DeepDrawError(f"lengths: expected values in [0, {t_max}]")
        valid = np.arange(t_max)[None, :] < lens[:, None]
    bad = valid & ~np.all(np.isfinite(q), axis=-1)
    if bad.any():
        i, t = (int(v) for v in np.argwhere(bad)[0])
        where = f"frame {t}" if squeeze else f"trajectory {i}, frame {t}"
        raise DeepDrawError(
            f"joints: {where} holds NaN/inf; expected finite joint angles in degrees "
            "(pad trajectories after their end and pass `lengths`)"
        )
    return q, valid, squeeze


@contextlib.contextmanager
def _opensim_quiet() -> Iterator[Any]:
    """Import opensim and lower its log level to errors while the model loads (its 3.0-format warnings)."""
    try:
        import opensim
    except ImportError as e:  # pragma: no cover - opensim is a dependency
        raise DeepDrawError(
            f"opensim: the OpenSim Python package cannot be imported ({e}); install opensim>=4.5"
        ) from None
    level = opensim.Logger.getLevelString()
    opensim.Logger.setLevelString("error")
    try:
        yield opensim
    finally:
        # back to the caller's level, but no chattier than warnings (setting Info prints a line)
        quiet_enough = level.lower() in ("warn", "warning", "error", "critical", "off")
        opensim.Logger.setLevelString(level if quiet_enough else "warn")


# --------------------------------------------------------------------------------------------------
# exact engine
# --------------------------------------------------------------------------------------------------
class ExactEngine:
    """Fiber lengths from OpenSim, frame by frame, with the values of DeepDraw's ``make_muscle_config``.

    The original loads the model, calls ``initSystem`` and ``equilibrateMuscles`` once, then for each
    frame sets the four coordinates (radians) with ``Coordinate.setValue`` (which assembles the model
    after each call, so the 13 coupled coordinates of the shoulder girdle follow), equilibrates the
    muscles and reads ``getFiberLength() * 1000``.

    ``procedure="direct"`` (default) gives the same values about 10x faster: it sets the four
    coordinates without assembling and sets each coupled coordinate to its coupler function of the
    independent one (what the assembler converges to: the coordinates agree to 1 ulp and the fiber
    lengths to ~1e-11 mm, the level at which OpenSim's own results depend on the order of earlier
    calls through its wrapping caches), realizes to Velocity once and equilibrates only the 25 muscles
    (muscles are independent: the same values as ``equilibrateMuscles``). ``procedure="original"``
    runs the original calls literally (four assemblies and all 50 muscles per frame).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, procedure: str = "direct") -> None:
        if procedure not in ("direct", "original"):
            raise DeepDrawError(f"procedure: got {procedure!r}; expected 'direct' or 'original'")
        self.procedure = procedure
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        p = self.model_path
        if not p.is_file():
            raise DeepDrawError(f"{p}: model file not found; expected the MoBL-ARMS OpenSim model (.osim)")
        try:
            with open(p, "rb"):
                pass
        except OSError as e:
            raise DeepDrawError(f"{p}: model file cannot be read ({e.strerror})") from None
        with _opensim_quiet() as osim:
            self._osim = osim
            try:
                model = osim.Model(str(p))
            except Exception as e:  # opensim raises RuntimeError / its own Exception on bad XML
                msg = " ".join(str(e).split())[:300]
                raise DeepDrawError(f"{p}: not a readable OpenSim model ({msg})") from None
            muscle_set = model.getMuscles()
            have = {muscle_set.get(i).getName() for i in range(muscle_set.getSize())}
            for name in MUSCLES:
                if name not in have:
                    raise DeepDrawError(
                        f"{p}: muscle {name!r} is missing from the model's force set; expected all of {', '.join(MUSCLES)}"
                    )
            cset = model.getCoordinateSet()
            for name in JOINTS:
                if not cset.contains(name):
                    raise DeepDrawError(
                        f"{p}: coordinate {name!r} is missing from the model; expected {', '.join(JOINTS)}"
                    )
            try:
                state = model.initSystem()
                model.equilibrateMuscles(state)
            except Exception as e:
                msg = " ".join(str(e).split())[:300]
                raise DeepDrawError(f"{p}: OpenSim cannot initialise the model ({msg})") from None
        self._model = model
        self._state = state
        self._coords = [cset.get(n) for n in JOINTS]
        self._muscles = [muscle_set.get(n) for n in MUSCLES]
        self._couplers = self._find_couplers(model)
        self._vec = osim.Vector(1, 0.0)
        self._check_direct()

    # -- setup ------------------------------------------------------------------------------------
    def _find_couplers(self, model: Any) -> list[tuple[int, Any, Any, float]]:
        """(joint index, dependent coordinate, function, scale) of every coupler driven by one of JOINTS."""
        osim = self._osim
        out = []
        cons = model.getConstraintSet()
        cset = model.getCoordinateSet()
        for i in range(cons.getSize()):
            c = osim.CoordinateCouplerConstraint.safeDownCast(cons.get(i))
            if c is None:
                continue
            names = c.getIndependentCoordinateNames()
            indep = [names.get(k) for k in range(names.getSize())]
            if not any(n in JOINTS for n in indep):
                continue
            if len(indep) != 1:
                raise DeepDrawError(
                    f"{self.model_path}: constraint {c.getName()!r} couples several coordinates {indep}; "
                    "expected one independent coordinate per coupler"
                )
            scale = osim.PropertyHelper.getValueDouble(c.getPropertyByName("scale_factor"))
            dep = cset.get(c.getDependentCoordinateName())
            out.append((JOINTS.index(indep[0]), dep, c.getFunction(), float(scale)))
        return out

    def _check_direct(self) -> None:
        """The direct procedure must leave no constraint error (else the model has other constraints)."""
        if self.procedure != "direct":
            return
        s = self._osim.State(self._state)
        self._set_direct(s, np.deg2rad([50.0, 40.0, 20.0, 75.0]))
        self._model.realizePosition(s)
        qerr = s.getQErr()
        worst = max((abs(qerr.get(i)) for i in range(qerr.size())), default=0.0)
        if worst > 1e-9:
            raise DeepDrawError(
                f"{self.model_path}: setting the coupled coordinates directly leaves a constraint error "
                f"of {worst:.2e}; expected none (use procedure='original' for this model)"
            )

    # -- one frame --------------------------------------------------------------------------------
    def _set_direct(self, s: Any, r: np.ndarray) -> None:
        for c, v in zip(self._coords, r):
            c.setValue(s, float(v), False)
        vec = self._vec
        for j, dep, f, scale in self._couplers:
            vec.set(0, float(r[j]))
            dep.setValue(s, scale * f.calcValue(vec), False)

    def _set_original(self, s: Any, r: np.ndarray) -> None:
        # Coordinate.setValue with its default enforceConstraints=true: one assembly per call
        for c, v in zip(self._coords, r):
            c.setValue(s, float(v))

    def _set(self, s: Any, r: np.ndarray) -> None:
        """Set the 4 coordinates (radians) with this engine's procedure."""
        if self.procedure == "original":
            self._set_original(s, r)
        else:
            self._set_direct(s, r)

    def _frame(
        self, s: Any, q_deg: np.ndarray, out_fiber: np.ndarray | None, out_path: np.ndarray | None
    ) -> None:
        r = np.pi * (q_deg / 180.0)  # as the original: np.pi * (deg / 180)
        if self.procedure == "original":
            self._set_original(s, r)
            if out_fiber is not None:
                self._model.equilibrateMuscles(s)
        else:
            self._set_direct(s, r)
            if out_fiber is not None:
                self._model.realizeVelocity(s)
                for m in self._muscles:
                    m.computeEquilibrium(s)
            else:
                self._model.realizePosition(s)
        if out_fiber is not None:
            for k, m in enumerate(self._muscles):
                out_fiber[k] = m.getFiberLength(s) * 1000.0
        if out_path is not None:
            for k, m in enumerate(self._muscles):
                out_path[k] = m.getLength(s) * 1000.0

    # -- public -----------------------------------------------------------------------------------
    def evaluate(
        self,
        joints: Any,
        lengths: Any = None,
        fiber: bool = True,
        path: bool = False,
        quiet: bool = True,
    ) -> dict[str, np.ndarray]:
        """Fiber and/or path (muscle-tendon) lengths in mm, keys ``"fiber"``, ``"path"``: (..., T, 25)."""
        q, valid, squeeze = _as_joints(joints, lengths)
        n, t_max, _ = q.shape
        fib = np.full((n, t_max, len(MUSCLES)), np.nan) if fiber else None
        pth = np.full((n, t_max, len(MUSCLES)), np.nan) if path else None
        from tqdm.auto import tqdm

        s = self._state  # one State, reused across frames and trajectories (as the original)
        with tqdm(
            total=int(valid.sum()), desc="OpenSim frames", unit="frame", disable=quiet, leave=False
        ) as bar:
            for i in range(n):
                for t in np.flatnonzero(valid[i]):
                    self._frame(
                        s, q[i, t], None if fib is None else fib[i, t], None if pth is None else pth[i, t]
                    )
                bar.update(int(valid[i].sum()))
        out = {}
        if fib is not None:
            out["fiber"] = fib[0] if squeeze else fib
        if pth is not None:
            out["path"] = pth[0] if squeeze else pth
        return out

    def lengths(self, joints: Any, lengths: Any = None, quiet: bool = True) -> np.ndarray:
        """Fiber lengths (mm) of :data:`MUSCLES`: joints (n, T, 4) or (T, 4) degrees -> (n, T, 25) or (T, 25).

        ``lengths`` (n,) ints: valid frames per trajectory; frames after them are ignored (NaN out).
        NaN/inf in a valid frame raises :class:`DeepDrawError`.
        """
        return self.evaluate(joints, lengths, fiber=True, path=False, quiet=quiet)["fiber"]

    def path_lengths(self, joints: Any, lengths: Any = None, quiet: bool = True) -> np.ndarray:
        """Muscle-tendon (path) lengths in mm, same shapes as :meth:`lengths`."""
        return self.evaluate(joints, lengths, fiber=False, path=True, quiet=quiet)["path"]

    def fiber_subset(self, joints: np.ndarray, which: np.ndarray, quiet: bool = True) -> np.ndarray:
        """Exact fiber lengths (mm) of some muscles at some postures (the fast engine's fallback).

        joints: (K, 4) degrees; which: (K, 25) bool. Returns (K, 25) with NaN where ``which`` is False.
        Each muscle's equilibrium depends only on its own path, so the values equal :meth:`lengths`.
        """
        q = np.asarray(joints, dtype=np.float64)
        which = np.asarray(which, dtype=bool)
        out = np.full(which.shape, np.nan)
        s = self._state
        from tqdm.auto import tqdm

        for k in tqdm(range(len(q)), desc="OpenSim fallback", unit="frame", disable=quiet, leave=False):
            idx = np.flatnonzero(which[k])
            if idx.size == 0:
                continue
            self._set(s, np.pi * (q[k] / 180.0))
            self._model.realizeVelocity(s)
            for j in idx:
                m = self._muscles[j]
                m.computeEquilibrium(s)
                out[k, j] = m.getFiberLength(s) * 1000.0
        return out

    def _q_layout(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, Any, float]]]:
        """Q-vector indices of the 4 coordinates and of the coupled ones (found by probing a State copy).

        Returns (base Q of the engine's State, indices of JOINTS in Q, [(joint, Q index, function,
        scale)] of the couplers). ``Coordinate.setValue(s, v, False)`` is ``setOneQ``: writing the same
        doubles into Q gives the same State.
        """
        if getattr(self, "_qlayout", None) is None:
            osim = self._osim
            probe = osim.State(self._state)
            base = np.array(probe.getQ().to_numpy(), dtype=np.float64)

            def index_of(coord: Any) -> int:
                old = coord.getValue(probe)
                coord.setValue(probe, old + 0.123456789, False)
                diff = np.flatnonzero(np.array(probe.getQ().to_numpy()) != base)
                coord.setValue(probe, old, False)
                if diff.size != 1:
                    raise DeepDrawError(
                        f"{self.model_path}: coordinate {coord.getName()!r} maps to {diff.size} generalized "
                        "coordinates; expected one"
                    )
                return int(diff[0])

            jidx = np.array([index_of(c) for c in self._coords], dtype=np.int64)
            cpl = [(j, index_of(dep), f, scale) for j, dep, f, scale in self._couplers]
            self._qlayout = (base, jidx, cpl)
        return self._qlayout

    def _q_vectors(self, joints_deg: np.ndarray) -> np.ndarray:
        """Full Q vectors (K, nq) of the direct procedure for postures (K, 4) degrees."""
        base, jidx, cpl = self._q_layout()
        r = np.pi * (np.asarray(joints_deg, dtype=np.float64) / 180.0)
        qs = np.repeat(base[None, :], len(r), axis=0)
        qs[:, jidx] = r
        vec = self._vec
        for j, qi, f, scale in cpl:
            col = qs[:, qi]
            for k, v in enumerate(r[:, j].tolist()):
                vec.set(0, v)
                col[k] = scale * f.calcValue(vec)
        return qs

    def path_subset(self, joints: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Path (muscle-tendon) lengths, mm, of some muscles at some postures: (K, 4), (K, 25) -> (K, 25).

        Only realizes Position and computes only the requested muscles' paths (the fast engine's
        fallback). With the direct procedure the whole Q vector of a frame is written in one call.
        """
        q = np.asarray(joints, dtype=np.float64)
        which = np.asarray(which, dtype=bool)
        out = np.full(which.shape, np.nan)
        s = self._state
        if self.procedure == "direct":
            rows = np.flatnonzero(which.any(axis=1))
            if rows.size == 0:
                return out
            qs = self._q_vectors(q[rows])
            create = self._osim.Vector.createFromMat
            realize = self._model.realizePosition
            muscles = self._muscles
            cols = [np.flatnonzero(w).tolist() for w in which[rows]]
            vals = out[rows]
            for k in range(len(rows)):
                s.setQ(create(qs[k]))
                realize(s)
                row = vals[k]
                for j in cols[k]:
                    row[j] = muscles[j].getLength(s) * 1000.0
            out[rows] = vals
            return out
        for k in range(len(q)):
            idx = np.flatnonzero(which[k])
            if idx.size == 0:
                continue
            self._set_original(s, np.pi * (q[k] / 180.0))  # the direct procedure returned above
            self._model.realizePosition(s)
            for j in idx:
                out[k, j] = self._muscles[j].getLength(s) * 1000.0
        return out


# --------------------------------------------------------------------------------------------------
# postures of the dataset: synthetic pen paths around DeepDraw's start points, through the arm's IK
# --------------------------------------------------------------------------------------------------
_PLANES = {
    "horizontal": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    "vertical": np.array([[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}


def _resample(p: np.ndarray, n: int) -> np.ndarray:
    x = np.linspace(0, p.shape[1] - 1, max(n, 2))
    src = np.arange(p.shape[1])
    return np.stack([np.interp(x, src, row) for row in p])


def synthetic_trajectories(
    n: int,
    seed: int = 0,
    startpoints: str | os.PathLike | None = None,
    box_cm: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint trajectories like the dataset's: smooth pen paths at DeepDraw's start points, solved by IK.

    Each pen path is a random smooth curve (a sum of sinusoids in velocity, 40-182 frames), rescaled
    per axis to a ``box_cm`` box as the UCI characters are, then augmented as in generate_data.py
    (size 0.7/1/1.3, rotation and shears in {0, ±15°, ±30°}, speed 0.8-1.4), put in a horizontal or
    vertical plane at a random start point of ``pcr_startingpoints.hdf5`` and solved by
    :func:`deepdraw.dataset.arm.ik_batch` from the posture (50, 40, 20, 75).
    Returns joints (n, T, 4) degrees (NaN after each end) and lengths (n,).
    """
    import h5py

    from . import arm

    if startpoints is None:
        from ..paths import original_startpoints

        startpoints = original_startpoints()
    try:
        with h5py.File(startpoints, "r") as f:
            starts = {k: np.asarray(f[k][()], dtype=np.float64) for k in _PLANES}
    except (OSError, KeyError) as e:
        raise DeepDrawError(
            f"{startpoints}: cannot read the start points 'horizontal'/'vertical' ({e})"
        ) from None
    rng = np.random.default_rng(seed)
    angles = np.deg2rad([-30.0, -15.0, 0.0, 15.0, 30.0])
    paths = []
    for _ in range(n):
        t0 = int(rng.integers(40, 183))
        s = np.linspace(0.0, 1.0, t0)
        vel = np.zeros((2, t0))
        for ax in range(2):
            for _k in range(int(rng.integers(2, 6))):
                fr = rng.uniform(0.5, 3.5)
                vel[ax] += rng.normal() / fr * np.sin(2 * np.pi * fr * s + rng.uniform(0, 2 * np.pi))
        p = np.cumsum(vel, axis=1)
        lo, hi = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
        p = ((p - lo) / np.where(hi - lo > 0, hi - lo, 1.0) - 0.5) * box_cm
        size = float(rng.choice([0.7, 1.0, 1.3]))
        p = _resample(p[:, :1] + size * (p - p[:, :1]), int(t0 * size))
        rot, shx, shy = (float(rng.choice(angles)) for _ in range(3))
        c, si = np.cos(rot), np.sin(rot)
        p = np.array([[1.0, np.tan(shx)], [np.tan(shy), 1.0]]) @ np.array([[c, -si], [si, c]]) @ p
        p = _resample(p, int(p.shape[1] / float(rng.choice([0.8, 1.0, 1.2, 1.4]))))
        plane = "horizontal" if rng.random() < 0.5 else "vertical"
        start = starts[plane][int(rng.integers(len(starts[plane])))]
        p3 = np.concatenate([p, np.zeros((1, p.shape[1]))])
        paths.append((_PLANES[plane] @ p3 + start[:, None]).T)
    lens = np.array([len(p) for p in paths], dtype=np.int64)
    targets = np.full((n, int(lens.max(initial=1)), 3), np.nan)
    for i, p in enumerate(paths):
        targets[i, : len(p)] = p
    joints, _ = arm.ik_batch(targets, lens)
    return joints, lens


def character_trajectories(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Joint trajectories of the dataset's kind from the shipped UCI characters (as generate_data.py).

    Uses :mod:`deepdraw.dataset.characters`, :mod:`~deepdraw.dataset.augment` and
    :func:`~deepdraw.dataset.arm.ik_batch`; for validation and benchmarks.
    Returns joints (n, T, 4) degrees (NaN after each end) and lengths (n,).
    """
    import h5py

    from ..paths import original_startpoints
    from . import arm, augment, characters

    rc = characters.load_shipped(verify=False)
    trajs, lens, _ = characters.preprocess(rc)
    with h5py.File(original_startpoints(), "r") as f:
        starts = {k: np.asarray(f[k][()], dtype=np.float64) for k in _PLANES}
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(n):
        j = int(rng.integers(len(lens)))
        plane = "horizontal" if rng.random() < 0.5 else "vertical"
        lat = augment.draw_latents(
            rng,
            len(starts[plane]),
            [0.7, 1.0, 1.3],
            [-30.0, -15.0, 0.0, 15.0, 30.0],
            [0.8, 1.0, 1.2, 1.4],
            [0.0],
        )
        paths.append(augment.transform(trajs[j, :, : lens[j]], lat, plane, starts[plane][lat.start_id]).T)
    out_lens = np.array([len(p) for p in paths], dtype=np.int64)
    targets = np.full((n, int(out_lens.max(initial=1)), 3), np.nan)
    for i, p in enumerate(paths):
        targets[i, : len(p)] = p
    joints, _ = arm.ik_batch(targets, out_lens)
    return joints, out_lens


def dataset_trajectories(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Realistic joint trajectories: from the UCI characters when available, else synthetic ones."""
    try:
        return character_trajectories(n, seed)
    except (DeepDrawError, ImportError, AttributeError, OSError) as e:
        log.warning("character trajectories unavailable (%s); using synthetic pen paths", e)
        return synthetic_trajectories(n, seed)


# --------------------------------------------------------------------------------------------------
# OpenSim evaluation of many postures, in worker processes
# --------------------------------------------------------------------------------------------------
_WORKER: ExactEngine | None = None


def _worker_init(model_path: str) -> None:
    global _WORKER
    _WORKER = ExactEngine(model_path)


def _eval(eng: ExactEngine, postures: np.ndarray, fiber: bool, which: np.ndarray | None):
    if which is not None:
        return eng.path_subset(postures, which), None
    r = eng.evaluate(postures[None], fiber=fiber, path=True)
    return r["path"][0], (r["fiber"][0] if fiber else None)


def _worker_eval(task: tuple[np.ndarray, bool, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray | None]:
    assert _WORKER is not None
    return _eval(_WORKER, *task)


def evaluate_postures(
    model_path: str | os.PathLike,
    postures: np.ndarray,
    fiber: bool = False,
    workers: int = 1,
    chunk: int = 500,
    quiet: bool = True,
    desc: str = "OpenSim postures",
    which: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Path (and fiber) lengths, mm, of many postures (K, 4) degrees, in ``workers`` processes.

    Returns (path (K, 25), fiber (K, 25) or None). ``which`` (K, 25) bool: compute only these path
    lengths (NaN elsewhere; no fiber). Postures are independent; the values do not depend on the
    number of workers beyond OpenSim's ~1e-11 mm history effects.
    """
    from tqdm.auto import tqdm

    postures = np.ascontiguousarray(postures, dtype=np.float64).reshape(-1, 4)
    k = len(postures)
    path = np.full((k, len(MUSCLES)), np.nan)
    fiber = fiber and which is None
    fib = np.full((k, len(MUSCLES)), np.nan) if fiber else None
    if k == 0:
        return path, fib
    bounds = [(s, min(k, s + chunk)) for s in range(0, k, chunk)]
    bar = tqdm(total=k, desc=desc, unit="posture", disable=quiet, leave=False, smoothing=0.05)
    try:
        if workers <= 1 or len(bounds) == 1:
            eng = ExactEngine(model_path)
            for s, e in bounds:
                p, f = _eval(eng, postures[s:e], fiber, None if which is None else which[s:e])
                path[s:e] = p
                if fib is not None:
                    fib[s:e] = f
                bar.update(e - s)
            return path, fib
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(
            max_workers=min(workers, len(bounds)),
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(str(model_path),),
        ) as pool:
            futs = {
                pool.submit(_worker_eval, (postures[s:e], fiber, None if which is None else which[s:e])): (
                    s,
                    e,
                )
                for s, e in bounds
            }
            for fut in as_completed(futs):
                s, e = futs[fut]
                p, f = fut.result()
                path[s:e] = p
                if fib is not None:
                    fib[s:e] = f
                bar.update(e - s)
        return path, fib
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------------
# tables: cubic Lagrange interpolation on a regular grid, with a per-cell choice of stencil
# --------------------------------------------------------------------------------------------------
FALLBACK = 255
"""Stencil code of a cell the fast engine does not trust (the exact engine is asked)."""
REFINE_KEYS = ("refine_ratio", "refine_key", "refine_table_diff", "refine_table_nan", "refine_code")
"""Keys of the fast engine's optional level 2 (:mod:`deepdraw.dataset.refine`): all or none."""
_SHIFTS = np.array([-1, 0, 1])


def _lagrange4(x: np.ndarray) -> np.ndarray:
    """Weights (..., 4) of the cubic through nodes -1, 0, 1, 2 at position(s) x."""
    x = np.asarray(x, dtype=np.float64)
    xm, x1, x2 = x + 1.0, x - 1.0, x - 2.0
    return np.stack([-x * x1 * x2 / 6.0, xm * x1 * x2 / 2.0, -xm * x * x2 / 2.0, xm * x * x1 / 6.0], axis=-1)


def _stencil6(t: float) -> np.ndarray:
    """(3, 6): weights over nodes -2..3 of the cubic stencils shifted by -1, 0, +1, at position t."""
    w = np.zeros((3, 6))
    for k, s in enumerate(_SHIFTS):
        w[k, 1 + s : 5 + s] = _lagrange4(t - s)
    return w


_QUANTUM = 1e-4  # mm: resolution of the stored path-length tables
_QMAX = 1e5  # mm: larger path lengths are treated as missing


def _quantise(x: np.ndarray) -> np.ndarray:
    """Round to the stored resolution (NaN stays NaN; absurd values become NaN)."""
    x = np.where(np.abs(x) < _QMAX, x, np.nan)
    return np.round(x / _QUANTUM) * _QUANTUM


def _encode_table(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., m) quantised values with NaN -> (int32 differences along the last axis, bool NaN mask).

    Small integers compress far better than floats (HDF5 shuffle + gzip); NaN entries repeat the
    previous value along the axis so that their differences are zero.
    """
    nan = np.isnan(x)
    q = np.rint(np.nan_to_num(x, nan=0.0) / _QUANTUM).astype(np.int64)
    idx = np.where(~nan, np.arange(x.shape[-1]), 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    q = np.take_along_axis(q, idx, axis=-1)
    d = np.diff(q, axis=-1, prepend=0)
    return d.astype(np.int32), nan


def _decode_table(d: np.ndarray, nan: np.ndarray) -> np.ndarray:
    x = np.cumsum(d.astype(np.int64), axis=-1).astype(np.float64) * _QUANTUM
    x[nan] = np.nan
    return x


def _stencil_errors(
    table: np.ndarray, cells: np.ndarray, points: np.ndarray, truth: np.ndarray
) -> np.ndarray:
    """Max abs error over ``points`` (P, 3, unit cell coordinates) of the 27 shifted tricubic stencils.

    table (ms, *n) node values; cells (C, 3); truth (C, P, ms). Returns (C, 27, ms), inf where NaN.
    Shift index = (sa+1)*9 + (sb+1)*3 + (sc+1).
    """
    off6 = np.arange(-2, 4)
    ia = (cells[:, 0, None] + off6)[:, :, None, None]
    ib = (cells[:, 1, None] + off6)[:, None, :, None]
    ic = (cells[:, 2, None] + off6)[:, None, None, :]
    v6 = table[:, ia, ib, ic]  # (ms, C, 6, 6, 6)
    err = np.zeros((len(cells), 27, len(table)))
    for p, pt in enumerate(points):
        wa, wb, wc = (_stencil6(t) for t in pt)  # (3 shifts, 6 nodes) each
        z = np.tensordot(v6, wc, axes=([4], [1]))  # (ms, C, 6, 6, 3z)
        y = np.tensordot(z, wb, axes=([3], [1]))  # (ms, C, 6, 3z, 3y)
        x = np.tensordot(y, wa, axes=([2], [1]))  # (ms, C, 3z, 3y, 3x)
        pred = x.transpose(1, 4, 3, 2, 0).reshape(len(cells), 27, len(table))
        e = np.abs(pred - truth[:, p, None, :])
        err = np.maximum(err, np.where(np.isfinite(e), e, np.inf))
    return err


def _choose_stencils(pred_err: np.ndarray, tol: float, centre: int) -> np.ndarray:
    """pred_err (..., n_shift, M) max abs error over the check points -> codes (..., M) uint8.

    The centred stencil when it passes; else the best shifted one that passes; else FALLBACK.
    """
    err = np.where(np.isfinite(pred_err), pred_err, np.inf)
    best = np.argmin(err, axis=-2)
    best_err = np.take_along_axis(err, best[..., None, :], axis=-2)[..., 0, :]
    code = np.where(err[..., centre, :] <= tol, centre, best)
    ok = (err[..., centre, :] <= tol) | (best_err <= tol)
    return np.where(ok, code, FALLBACK).astype(np.uint8)


def _grid_cells(
    n: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postures q3 (K, 3) deg -> grid coordinates u (K, 3), cell corners floor(u) (K, 3, float) and
    whether the cell is in the grid's interior (room for every stencil) (K,)."""
    u = (q3 - origin) / step
    i0 = np.floor(u)
    return u, i0, np.all((i0 >= 2) & (i0 <= n - 4), axis=1)


def _locate(
    n: np.ndarray, code: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Postures q3 (K, 3) deg -> cell corner i0 (K, 3), position in the cell t (K, 3), the cells'
    stencil codes (K, ms) and the mask (K, ms) of entries without a trusted stencil (off the grid's
    interior or FALLBACK); i0 is a valid dummy cell where the posture is off the grid."""
    u, i0, inside = _grid_cells(n, origin, step, q3)
    t = u - i0
    i0 = np.where(inside[:, None], i0, 2).astype(np.int64)
    cell = (i0[:, 0] * (n[1] - 1) + i0[:, 1]) * (n[2] - 1) + i0[:, 2]
    c = code[:, cell].T  # (K, ms)
    return i0, t, c, (c == FALLBACK) | ~inside[:, None]


def _tricubic(
    table: np.ndarray, n: np.ndarray, code: np.ndarray, origin: np.ndarray, step: np.ndarray, q3: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tricubic Lagrange interpolation with a stencil per (cell, muscle).

    table (ms, prod(n)) node values; code (ms, prod(n - 1)) stencil codes (13 = centred,
    ``(sa+1)*9 + (sb+1)*3 + (sc+1)`` for shifts s in {-1, 0, 1}, FALLBACK = none); q3 (K, 3) degrees.
    Returns values (K, ms) and the mask (K, ms) of entries without a trusted stencil.
    """
    k, ms = len(q3), len(table)
    i0, t, c, bad = _locate(n, code, origin, step, q3)
    c = np.where(bad, 13, c.astype(np.int64))
    shift = np.stack([c // 9, (c // 3) % 3, c % 3], axis=-1) - 1  # (K, ms, 3)
    w = _lagrange4(t[:, None, :] - shift)  # (K, ms, 3, 4)
    base = i0[:, None, :] - 1 + shift  # first node of the stencil, per axis
    flat0 = (base[..., 0] * n[1] + base[..., 1]) * n[2] + base[..., 2]
    flat0 += (np.arange(ms) * int(np.prod(n)))[None, :]
    tab = table.reshape(-1)
    acc = np.zeros((k, ms))
    for a in range(4):
        for b in range(4):
            wab = w[..., 0, a] * w[..., 1, b]
            off = (a * n[1] + b) * n[2]
            for cc in range(4):
                acc += (wab * w[..., 2, cc]) * tab[flat0 + (off + cc)]
    return acc, bad | ~np.isfinite(acc)


def _tricubic_nodes(
    window: np.ndarray,
    n: np.ndarray,
    code: np.ndarray,
    origin: np.ndarray,
    step: np.ndarray,
    q3: np.ndarray,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_tricubic` for every muscle at once, from a node-major table (the fast engine's path).

    ``window`` is ``sliding_window_view(table.T.ravel(), 4 * ms)[::ms]``: row ``j`` holds the values of
    all ``ms`` muscles at nodes ``j .. j+3`` (contiguous along the last grid axis). The centred stencil
    of a posture then reads 16 contiguous rows, shared by all muscles, and contracts them with one set
    of weights per posture: the 16 (a, b) weights first, then the 4 along c (two ``einsum``, in chunks
    small enough to stay in cache); the few (posture, muscle) entries whose cell uses a shifted
    stencil are recomputed one by one. Same values as :func:`_tricubic` up to rounding (the sums run
    in another order) and the same mask.
    """
    k = len(q3)
    ms = window.shape[1] // 4
    i0, t, c, bad = _locate(n, code, origin, step, q3)
    w = _lagrange4(t)  # (K, 3, 4): centred weights per axis
    first = ((i0[:, 0] - 1) * n[1] + i0[:, 1] - 1) * n[2] + i0[:, 2] - 1
    r4 = np.arange(4)
    runs = (r4[:, None] * n[1] + r4[None, :]).ravel() * n[2]  # (16,) first node of each run along c
    acc = np.empty((k, ms))
    for s in range(0, k, chunk):
        sl = slice(s, s + chunk)
        m = len(first[sl])
        ws = w[sl]
        wab = (ws[:, 0, :, None] * ws[:, 1, None, :]).reshape(m, 16)  # (m, a*b)
        v = window[first[sl, None] + runs]  # (m, a*b, c*muscle)
        r = np.einsum("mj,mjk->mk", wab, v).reshape(m, 4, ms)  # contract a and b
        acc[sl] = np.einsum("mc,mcx->mx", ws[:, 2, :], r)  # contract c
    rows, cols = np.nonzero(~bad & (c != 13))
    if rows.size:
        cc = c[rows, cols].astype(np.int64)
        shift = np.stack([cc // 9, (cc // 3) % 3, cc % 3], axis=-1) - 1
        ww = _lagrange4(t[rows] - shift)  # (E, 3, 4)
        base = i0[rows] - 1 + shift
        f0 = (base[:, 0] * n[1] + base[:, 1]) * n[2] + base[:, 2]
        val = np.zeros(len(rows))
        for a in range(4):
            for b in range(4):
                wab = ww[:, 0, a] * ww[:, 1, b]
                for z in range(4):
                    val += wab * ww[:, 2, z] * window[f0 + (a * n[1] + b) * n[2], z * ms + cols]
        acc[rows, cols] = val
    return acc, bad | ~np.isfinite(acc)


# 7 check points of a cell (unit coordinates): centre and the 6 face centres
_CHECK_POINTS = np.array(
    [
        [0.5, 0.5, 0.5],
        [0.0, 0.5, 0.5],
        [1.0, 0.5, 0.5],
        [0.5, 0.0, 0.5],
        [0.5, 1.0, 0.5],
        [0.5, 0.5, 0.0],
        [0.5, 0.5, 1.0],
    ]
)


# --------------------------------------------------------------------------------------------------
# building the fast engine
# --------------------------------------------------------------------------------------------------
_PAD = 3  # nodes beyond the joint limits on each side (room for shifted stencils)
_S0 = np.array([50.0, 40.0, 20.0])  # shoulder posture at which the elbow parts are tabulated
_D0 = 90.0  # elbow flexion at which the shoulder parts are tabulated
_FIBER_DL = 0.05  # mm: spacing of the path -> fiber map


def _engine_schema() -> dict:
    from ..store import Field

    return {
        "muscles": Field((25,), "S", doc="muscle names, dataset order"),
        "coupling": Field((25,), "iu", doc="bit 0: depends on the shoulder, bit 1: on the elbow"),
        "offset": Field((25,), "f", doc="mm subtracted from shoulder part + elbow part"),
        "shoulder_index": Field(("ms",), "iu", doc="muscles with a shoulder table"),
        "shoulder_grid": Field((2, 3), "f", doc="origin (deg) and step (deg) per axis"),
        "shoulder_table_diff": Field(
            ("ms", None, None, None),
            "i",
            doc="path length at the nodes in 1e-4 mm, differenced along the last axis",
        ),
        "shoulder_table_nan": Field(("ms", None, None, None), "b", doc="nodes not computed"),
        "shoulder_code": Field(("ms", None, None, None), "u", doc="stencil code per cell (255: exact)"),
        "elbow_index": Field(("me",), "iu", doc="muscles with an elbow table"),
        "elbow_grid": Field((2,), "f", doc="origin and step, deg"),
        "elbow_table": Field(("me", None), "f", doc="path length at the nodes, mm"),
        "elbow_code": Field(("me", None), "u", doc="stencil code per cell (255: exact)"),
        "fiber_map_path": Field((None,), "f", doc="path lengths, mm, sorted per muscle"),
        "fiber_map_fiber": Field((None,), "f", doc="fiber lengths at those path lengths, mm"),
        "fiber_map_start": Field((26,), "iu", doc="start of each muscle's map in the two arrays"),
        # level 2 (optional): finer tables for (cell, muscle) pairs without a trusted stencil
        "refine_ratio": Field((1,), "iu", required=False, doc="fine steps per shoulder cell (r)"),
        "refine_key": Field(
            ("P",), "iu", required=False, doc="sorted pair keys: shoulder muscle * cells + flat cell"
        ),
        "refine_table_diff": Field(
            ("P", None, None, None),
            "i",
            required=False,
            doc="path length at the r+3 fine nodes per axis (-1..r+1) of each pair, 1e-4 mm, differenced",
        ),
        "refine_table_nan": Field(("P", None, None, None), "b", required=False, doc="nodes not computed"),
        "refine_code": Field(
            ("P", None, None, None), "u", required=False, doc="stencil code per fine cell (255: exact)"
        ),
    }


def _region_cells(
    post3: np.ndarray, origin: np.ndarray, step: float, n: np.ndarray, margin: int
) -> np.ndarray:
    """Boolean (n-1)^3 mask of the cells holding postures, dilated by ``margin`` cells."""
    from scipy import ndimage

    ncell = n - 1
    cells = np.floor((post3 - origin) / step).astype(np.int64)
    ok = np.all((cells >= 2) & (cells <= n - 4), axis=1)
    occ = np.zeros(tuple(ncell), dtype=bool)
    occ[tuple(cells[ok].T)] = True
    if margin > 0:
        occ = ndimage.binary_dilation(occ, structure=np.ones((3, 3, 3), dtype=bool), iterations=margin)
    inside = np.zeros(tuple(ncell), dtype=bool)
    inside[2 : n[0] - 3, 2 : n[1] - 3, 2 : n[2] - 3] = True
    return occ & inside


def _stencil_nodes(region: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Boolean n^3 mask of the nodes that the stencils (shifted by up to one) of region cells use."""
    r = np.zeros(tuple(n), dtype=bool)
    r[:-1, :-1, :-1] = region
    out = np.zeros_like(r)
    for da in range(-2, 4):
        for db in range(-2, 4):
            for dc in range(-2, 4):
                out |= np.roll(r, (da, db, dc), axis=(0, 1, 2))
    return out


def _coupling(
    eng: ExactEngine, post: np.ndarray, rng: np.random.Generator, k: int = 80
) -> tuple[np.ndarray, np.ndarray]:
    """Which muscles depend on the shoulder / the elbow, and the mixed difference (additivity check)."""
    i = rng.integers(len(post), size=(k, 4))
    s1, s2 = post[i[:, 0], :3], post[i[:, 1], :3]
    d1, d2 = post[i[:, 2], 3:], post[i[:, 3], 3:]
    quad = np.concatenate(
        [
            np.concatenate([s1, d1], 1),
            np.concatenate([s1, d2], 1),
            np.concatenate([s2, d1], 1),
            np.concatenate([s2, d2], 1),
        ]
    )
    L = eng.path_lengths(quad[None])[0].reshape(4, k, len(MUSCLES))
    with np.errstate(invalid="ignore"):
        dep_sh = np.nanmax(np.abs(L[0] - L[2]), axis=0) > 1e-9
        dep_el = np.nanmax(np.abs(L[0] - L[1]), axis=0) > 1e-9
        mixed = np.nanmax(np.abs(L[0] - L[1] - L[2] + L[3]), axis=0)
    coupling = dep_sh.astype(np.int8) | (dep_el.astype(np.int8) << 1)
    coupling[coupling == 0] = 1  # constant: a (flat) shoulder table
    return coupling, mixed


def _fiber_map(path: np.ndarray, fiber: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per muscle: path lengths sorted and thinned to _FIBER_DL, the fiber lengths there, and the
    largest error of linear interpolation of the thinned map at all samples (mm)."""
    xs, ys, errs = [], [], np.zeros(len(MUSCLES))
    for m in range(len(MUSCLES)):
        ok = np.isfinite(path[:, m]) & np.isfinite(fiber[:, m])
        x, y = path[ok, m], fiber[ok, m]
        o = np.argsort(x, kind="stable")
        x, y = x[o], y[o]
        _, first = np.unique(np.floor(x / _FIBER_DL), return_index=True)
        keep = np.union1d(first, [len(x) - 1]) if len(x) else first
        xs.append(x[keep])
        ys.append(y[keep])
        errs[m] = float(np.max(np.abs(np.interp(x, x[keep], y[keep]) - y))) if len(x) else np.nan
    return xs, ys, errs


def _region_postures(region_joints: np.ndarray | None, n_traj: int, seed: int) -> np.ndarray:
    """(K, 4) postures of the region: ``region_joints`` (finite rows) or the valid frames of
    ``n_traj`` :func:`synthetic_trajectories`."""
    if region_joints is None:
        joints, lens = synthetic_trajectories(n_traj, seed)
        return joints[np.arange(joints.shape[1])[None, :] < lens[:, None]]
    post = np.asarray(region_joints, dtype=np.float64).reshape(-1, 4)
    post = post[np.all(np.isfinite(post), axis=1)]
    if len(post) == 0:
        raise DeepDrawError(
            "region_joints: no finite posture; expected an array (..., 4) of joint angles in degrees"
        )
    return post


def _write_engine(
    out: Path,
    arrays: dict[str, np.ndarray],
    config: dict,
    seeds: dict,
    inputs: dict,
    attrs: dict,
    overwrite: bool,
) -> None:
    """Write the engine artifact atomically (large numeric arrays shuffled and gzipped)."""
    from ..store import ArtifactWriter

    with ArtifactWriter(out, ENGINE_KIND, config, seeds, inputs, attrs, overwrite) as f:
        for key, arr in arrays.items():
            big = arr.size > 4096 and arr.dtype.kind in "fiub"
            f.create_dataset(
                key,
                data=arr,
                **({"compression": "gzip", "compression_opts": 9, "shuffle": True} if big else {}),
            )


def _pair_keys(n: np.ndarray, c3: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Keys of (shoulder cell (E, 3), shoulder-muscle index (E,)) pairs: k * cells + flat cell."""
    c3 = c3.astype(np.int64)
    return k * int(np.prod(n - 1)) + (c3[:, 0] * (n[1] - 1) + c3[:, 1]) * (n[2] - 1) + c3[:, 2]


def build_fast_engine(
    model_path: str | os.PathLike | None = None,
    out_path: str | os.PathLike | None = None,
    *,
    step_deg: float = 2.5,
    elbow_step_deg: float = 0.1,
    tol_mm: float = 0.04,
    dense_tol_mm: float = 0.08,
    n_region_traj: int = 20000,
    region_margin: int = 1,
    region_joints: np.ndarray | None = None,
    n_fiber_samples: int = 20000,
    dense_rounds: int = 3,
    face_points: int = 10,
    limit_face_frac: float = 0.002,
    seed: int = 0,
    workers: int = 0,
    overwrite: bool = False,
    quiet: bool = False,
) -> Path:
    """Build the fast engine's tables from OpenSim and write them as an artifact (``kind`` muscle_fast_engine).

    * Region: the shoulder cells (``step_deg``) visited by the postures of ``n_region_traj``
      :func:`synthetic_trajectories` (or of ``region_joints``, any (..., 4) array of postures in
      degrees), dilated by ``region_margin`` cells. Elsewhere the exact engine is used.
    * Each (cell, muscle) gets the cubic stencil (centred, else shifted by one node per axis) that
      matches OpenSim within ``tol_mm`` at the cell centre and face centres, or none (exact engine).
    * Dense checks: the neighbours of failed cells are checked at 64 more points (``dense_rounds``
      rounds), and joint-limit faces holding at least ``limit_face_frac`` of the postures on a
      ``face_points`` x ``face_points`` grid per cell face; a miss above ``dense_tol_mm`` fails the cell.
    * ``workers``: OpenSim processes (0: one per core). They are started with ``spawn``, so a script
      calling this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.

    Returns the path written. See docs/muscles.md.
    """
    t_start = time.time()
    model_path = Path(model_path) if model_path is not None else default_model_path()
    out_path = Path(out_path) if out_path is not None else default_engine_path()
    if out_path.exists() and not overwrite:
        raise DeepDrawError(
            f"{out_path}: output exists; refusing to overwrite it (delete it, or use --overwrite)"
        )
    if not (0.2 <= step_deg <= 20.0) or not (0.005 <= elbow_step_deg <= 5.0) or tol_mm <= 0:
        raise DeepDrawError(
            f"build_fast_engine: step_deg={step_deg}, elbow_step_deg={elbow_step_deg}, tol_mm={tol_mm}; "
            "expected 0.2-20 deg, 0.005-5 deg and a positive tolerance"
        )
    workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
    eng = ExactEngine(model_path)
    rng = np.random.default_rng(seed)
    stats: dict[str, Any] = {}

    # 1. postures of the dataset -> region
    t0 = time.time()
    post = _region_postures(region_joints, n_region_traj, seed)
    stats["region_postures"] = int(len(post))
    stats["time_region_s"] = round(time.time() - t0, 1)

    # 2. which muscle depends on what; the split path = shoulder part + elbow part must be exact
    coupling, mixed = _coupling(eng, post, rng)
    both = coupling == 3
    if np.any(both & ~(mixed <= 1e-6)):
        m = int(np.argmax(np.where(both, np.nan_to_num(mixed, nan=np.inf), -1)))
        raise DeepDrawError(
            f"{model_path}: the path length of {MUSCLES[m]} is not a shoulder part plus an elbow part "
            f"(mixed difference {mixed[m]:.3g} mm); expected separable paths (docs/muscles.md)"
        )
    sh_idx = np.flatnonzero(coupling & 1)
    el_idx = np.flatnonzero(coupling & 2)
    stats["mixed_difference_max_mm"] = float(np.nanmax(np.where(both, mixed, 0.0)))

    # 3. shoulder grid, region, nodes and check points
    h = float(step_deg)
    origin = Q_MIN[:3] - _PAD * h
    n = np.ceil((Q_MAX[:3] - Q_MIN[:3]) / h - 1e-9).astype(np.int64) + 1 + 2 * _PAD
    region = _region_cells(post[:, :3], origin, h, n, region_margin)
    nodes_mask = _stencil_nodes(region, n)
    node_ix = np.argwhere(nodes_mask)
    cells = np.argwhere(region)
    half = (2 * cells[:, None, :] + np.rint(2 * _CHECK_POINTS)[None].astype(np.int64)).reshape(-1, 3)
    half_u, half_inv = np.unique(half, axis=0, return_inverse=True)
    half_inv = half_inv.reshape(len(cells), len(_CHECK_POINTS))
    # 4. elbow grid, nodes and check points (t = 1/3, 2/3 of each cell)
    he = float(elbow_step_deg)
    origin_e = Q_MIN[3] - _PAD * he
    ne = int(np.ceil((Q_MAX[3] - Q_MIN[3]) / he - 1e-9)) + 1 + 2 * _PAD
    cells_e = np.arange(2, ne - 3)
    chk_e = np.array([1.0 / 3.0, 2.0 / 3.0])
    # 5. fiber-map samples: dataset postures and random ones in the region with any elbow flexion
    n_fs = int(n_fiber_samples)
    pick = post[rng.integers(len(post), size=n_fs // 2)]
    rc = cells[rng.integers(len(cells), size=n_fs - n_fs // 2)]
    rnd = np.concatenate(
        [origin + h * (rc + rng.random((len(rc), 3))), rng.uniform(Q_MIN[3], Q_MAX[3], (len(rc), 1))], axis=1
    )
    fib_post = np.concatenate([pick, rnd])

    def with_elbow(q3: np.ndarray, d: float) -> np.ndarray:
        return np.concatenate([q3, np.full((len(q3), 1), d)], axis=1)

    def with_shoulder(d: np.ndarray) -> np.ndarray:
        return np.concatenate([np.broadcast_to(_S0, (len(d), 3)), d[:, None]], axis=1)

    post_sh = np.concatenate(
        [with_elbow(origin + h * node_ix, _D0), with_elbow(origin + h * half_u / 2.0, _D0)]
    )
    d_nodes = origin_e + he * np.arange(ne)
    d_chk = (origin_e + he * (cells_e[:, None] + chk_e[None, :])).ravel()
    post_el = np.concatenate([with_shoulder(d_nodes), with_shoulder(d_chk), np.r_[_S0, _D0][None]])
    log.info(
        "fast engine: %d region cells (step %.3g deg), %d shoulder nodes, %d check points, %d elbow postures, "
        "%d fiber samples, %d workers",
        len(cells), h, len(node_ix), len(half_u), len(post_el), len(fib_post), workers,
    )  # fmt: skip
    t0 = time.time()
    all_post = np.concatenate([post_sh, post_el])
    path_all, _ = evaluate_postures(model_path, all_post, False, workers, quiet=quiet, desc="OpenSim: tables")
    path_fs, fib_fs = evaluate_postures(
        model_path, fib_post, True, workers, quiet=quiet, desc="OpenSim: fiber map"
    )
    stats["time_opensim_s"] = round(time.time() - t0, 1)
    stats["opensim_postures"] = int(len(all_post) + len(fib_post))

    # 6. shoulder table (values as stored: quantised to _QUANTUM mm) and stencil choice per cell and muscle
    t0 = time.time()
    ms = len(sh_idx)
    table = np.full((ms, *n), np.nan)
    table[:, node_ix[:, 0], node_ix[:, 1], node_ix[:, 2]] = path_all[: len(node_ix)][:, sh_idx].T
    table = _quantise(table)
    vals_chk = path_all[len(node_ix) : len(node_ix) + len(half_u)][:, sh_idx]
    code = np.full((ms, *(n - 1)), FALLBACK, dtype=np.uint8)
    for s in range(0, len(cells), 500):
        c = cells[s : s + 500]
        err = _stencil_errors(table, c, _CHECK_POINTS, vals_chk[half_inv[s : s + 500]])
        code[:, c[:, 0], c[:, 1], c[:, 2]] = _choose_stencils(err, tol_mm, 13).T
    stats["time_stencils_s"] = round(time.time() - t0, 1)
    stats["fallback_pairs_first_pass"] = int(((code == FALLBACK) & region[None]).sum())

    # 6b. dense checks next to the cells that failed: thin wrapping "spikes" (a wrap taking the long
    # way round in a sheet a few tenths of a degree thick) slip between the check points; they come in
    # sheets that the first pass hits somewhere, so the neighbours of failed cells get 64 more points
    t0 = time.time()
    checked = np.zeros_like(code, dtype=bool)
    sub = (np.stack(np.meshgrid(*[np.array([1.0, 3.0, 5.0, 7.0]) / 8.0] * 3, indexing="ij"), -1)).reshape(
        -1, 3
    )
    tab_flat = table.reshape(ms, -1)
    code_flat = code.reshape(ms, -1)  # a view: updated in place below
    n_dense = 0
    for rnd in range(dense_rounds):
        from scipy import ndimage

        susp = np.zeros_like(checked)
        for k in range(ms):
            bad = (code[k] == FALLBACK) & region
            susp[k] = (
                ndimage.binary_dilation(bad, structure=np.ones((3, 3, 3), dtype=bool))
                & region
                & ~bad
                & ~checked[k]
            )
        ucells = np.argwhere(susp.any(axis=0))
        if len(ucells) == 0:
            break
        which_k = susp[:, ucells[:, 0], ucells[:, 1], ucells[:, 2]].T  # (U, ms)
        pts = (origin + h * (ucells[:, None, :] + sub[None])).reshape(-1, 3)
        which = np.zeros((len(pts), len(MUSCLES)), dtype=bool)
        which[:, sh_idx] = np.repeat(which_k, len(sub), axis=0)
        log.info(
            "fast engine: dense check round %d: %d cells, %d (cell, muscle) pairs",
            rnd + 1,
            len(ucells),
            int(which_k.sum()),
        )
        truth, _ = evaluate_postures(
            model_path,
            with_elbow(pts, _D0),
            False,
            workers,
            quiet=quiet,
            desc=f"OpenSim: dense checks {rnd + 1}",
            which=which,
        )
        n_dense += int(which.any(axis=1).sum())
        pred, bad = _tricubic(tab_flat, n, code_flat, origin, np.full(3, h), pts)
        e = np.abs(pred - truth[:, sh_idx])
        fail = (bad | ~(e <= dense_tol_mm)) & which[:, sh_idx]
        fail_cell = fail.reshape(len(ucells), len(sub), ms).any(axis=1)  # (U, ms)
        kk, uu = np.nonzero(fail_cell.T)
        code[kk, ucells[uu, 0], ucells[uu, 1], ucells[uu, 2]] = FALLBACK
        checked |= susp
        log.info("fast engine: dense check round %d flagged %d more (cell, muscle) pairs", rnd + 1, len(kk))
        if len(kk) == 0:
            break
    stats["dense_check_postures"] = n_dense
    stats["time_dense_s"] = round(time.time() - t0, 1)

    # 6c. joint limits where many postures sit (the IK stops there: shoulder_rot = 20 deg holds ~9% of
    # the dataset's frames): a dense 2-D check of the limit face, for the cells on both sides of it
    t0 = time.time()
    n_face = 0
    m_face = int(face_points)
    g2 = (np.arange(m_face) + 0.5) / m_face
    for ax in range(3):
        for bound in (Q_MIN[ax], Q_MAX[ax]):
            frac = float(np.mean(np.abs(post[:, ax] - bound) < 1e-6))
            if frac < limit_face_frac:
                continue
            i_at = int(np.floor((bound - origin[ax]) / h + 1e-9))
            other = [x for x in range(3) if x != ax]
            face = np.take(region, i_at, axis=ax) | np.take(region, i_at - 1, axis=ax)
            c2 = np.argwhere(face)  # (F, 2) cell indices along the other two axes
            if len(c2) == 0:
                continue
            uu, vv = np.meshgrid(g2, g2, indexing="ij")
            pts = np.empty((len(c2), m_face * m_face, 3))
            pts[..., ax] = bound
            pts[..., other[0]] = origin[other[0]] + h * (c2[:, 0, None] + uu.ravel()[None])
            pts[..., other[1]] = origin[other[1]] + h * (c2[:, 1, None] + vv.ravel()[None])
            pts = pts.reshape(-1, 3)
            log.info("fast engine: limit face %s = %g (%.1f%% of postures): %d cells, %d points",
                     JOINTS[ax], bound, 100 * frac, len(c2), len(pts))  # fmt: skip
            truth, _ = evaluate_postures(
                model_path,
                with_elbow(pts, _D0),
                False,
                workers,
                quiet=quiet,
                desc=f"OpenSim: face {JOINTS[ax]}",
            )
            n_face += len(pts)
            for side in (0.0, -1e-7):  # the cell at/above the face, then the one below
                q3 = pts.copy()
                q3[:, ax] += side
                pred, bad = _tricubic(tab_flat, n, code_flat, origin, np.full(3, h), q3)
                e = np.abs(pred - truth[:, sh_idx])
                fail = (
                    (bad | ~(e <= dense_tol_mm)).reshape(len(c2), m_face * m_face, ms).any(axis=1)
                )  # (F, ms)
                cell3 = np.floor((q3.reshape(len(c2), -1, 3)[:, 0] - origin) / h).astype(np.int64)
                kk, ff = np.nonzero(fail.T)
                keep = region[cell3[ff, 0], cell3[ff, 1], cell3[ff, 2]]
                code[kk[keep], cell3[ff[keep], 0], cell3[ff[keep], 1], cell3[ff[keep], 2]] = FALLBACK
                log.info("fast engine: limit face flagged %d (cell, muscle) pairs", int(keep.sum()))
    stats["face_check_postures"] = n_face
    stats["time_faces_s"] = round(time.time() - t0, 1)

    # 7. elbow table and stencils
    pe = path_all[len(post_sh) :]
    me = len(el_idx)
    table_e = pe[:ne][:, el_idx].T.copy()  # (me, ne)
    chk_vals = pe[ne : ne + 2 * len(cells_e)][:, el_idx].reshape(len(cells_e), 2, me)
    ref = pe[-1]
    off6 = np.arange(-2, 4)
    err_e = np.zeros((len(cells_e), 3, me))
    for p, t in enumerate(chk_e):
        w = _stencil6(t)  # (3, 6)
        v6 = table_e[:, cells_e[:, None] + off6]  # (me, C, 6)
        pred = np.einsum("sa,mca->csm", w, v6)
        e = np.abs(pred - chk_vals[:, p, None, :])
        err_e = np.maximum(err_e, np.where(np.isfinite(e), e, np.inf))
    code_e = np.full((me, ne - 1), FALLBACK, dtype=np.uint8)
    code_e[:, cells_e] = _choose_stencils(err_e, tol_mm, 1).T
    offset = np.where(both, ref, 0.0)

    # 8. path -> fiber maps
    fx, fy, ferr = _fiber_map(path_fs, fib_fs)
    start = np.zeros(len(MUSCLES) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(x) for x in fx])

    in_region = code != FALLBACK
    stats.update(
        region_cells=int(len(cells)),
        shoulder_nodes=int(len(node_ix)),
        check_points=int(len(half_u)),
        fallback_cell_frac={
            MUSCLES[m]: round(float(1 - in_region[k][region].mean()), 4) for k, m in enumerate(sh_idx)
        },
        elbow_fallback_cells=int((code_e[:, cells_e] == FALLBACK).sum()),
        fiber_map_err_max_mm=float(np.nanmax(ferr)),
        fiber_map_points=int(start[-1]),
    )
    stats["build_time_s"] = round(time.time() - t_start, 1)
    config = {
        "step_deg": h, "elbow_step_deg": he, "tol_mm": tol_mm, "dense_tol_mm": dense_tol_mm, "n_region_traj": n_region_traj if region_joints is None else None,
        "region_margin": region_margin, "n_fiber_samples": n_fs, "dense_rounds": dense_rounds,
        "face_points": m_face, "limit_face_frac": limit_face_frac, "shoulder_ref_deg": _S0.tolist(), "elbow_ref_deg": _D0,
        "pad": _PAD, "fiber_map_dl_mm": _FIBER_DL, "region": "synthetic_trajectories" if region_joints is None else "region_joints",
    }  # fmt: skip
    from ..paths import original_startpoints
    from ..store import file_sha256

    inputs = {model_path.name: file_sha256(model_path)}
    if region_joints is None:
        sp = original_startpoints()
        inputs[sp.name] = file_sha256(sp)
    diff, nanmask = _encode_table(table)
    arrays = {
        "muscles": np.array(MUSCLES, dtype="S"),
        "coupling": coupling.astype(np.uint8),
        "offset": offset,
        "shoulder_index": sh_idx.astype(np.int16),
        "shoulder_grid": np.stack([origin, np.full(3, h)]),
        "shoulder_table_diff": diff,
        "shoulder_table_nan": nanmask,
        "shoulder_code": code,
        "elbow_index": el_idx.astype(np.int16),
        "elbow_grid": np.array([origin_e, he]),
        "elbow_table": table_e,
        "elbow_code": code_e,
        "fiber_map_path": np.concatenate(fx),
        "fiber_map_fiber": np.concatenate(fy),
        "fiber_map_start": start,
    }
    attrs = {"build_stats": json.dumps(stats, sort_keys=True), "model_file": model_path.name}
    _write_engine(out_path, arrays, config, {"region": seed}, inputs, attrs, overwrite)
    log.info("fast engine written to %s in %.0f s: %s", out_path, stats["build_time_s"], stats)
    return out_path


# --------------------------------------------------------------------------------------------------
# the fast engine
# --------------------------------------------------------------------------------------------------
MAP_MAX_GAP_MM = 0.5
"""Longest interval of a fiber map through which the path-length fallback interpolates (mm)."""
MAP_MAX_ERR_MM = 0.001
"""Largest estimated linear-interpolation error (h^2/8 |g''|) of a fiber-map interval the fallback uses."""


def _trusted_intervals(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per node of the concatenated fiber maps: may the interval (node, next node) be interpolated?

    True when the interval is at most :data:`MAP_MAX_GAP_MM` long and its linear-interpolation error,
    estimated as h^2/8 |g''| with g'' from the neighbouring slopes, is at most :data:`MAP_MAX_ERR_MM`.
    The last node of each map (no interval) is False.
    """
    ok = np.zeros(len(x), dtype=bool)
    for m in range(len(start) - 1):
        a, b = int(start[m]), int(start[m + 1])
        xs, ys = x[a:b], y[a:b]
        if len(xs) < 3:
            continue
        h = np.diff(xs)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.diff(ys) / h
            curv = np.abs(np.diff(slope)) / (0.5 * (h[:-1] + h[1:]))  # at inner nodes
        # an interval's curvature: the larger of its two end nodes' (ends: the one inner node)
        c = np.maximum(np.r_[curv[0], curv], np.r_[curv, curv[-1]])
        good = (h > 0) & (h <= MAP_MAX_GAP_MM) & (h * h / 8.0 * c <= MAP_MAX_ERR_MM)
        ok[a : b - 1] = good & np.isfinite(c)
    return ok


class FastEngine:
    """Fiber lengths from tables built by :func:`build_fast_engine`, with exact fallback.

    Per muscle, path length = shoulder part (tricubic Lagrange on a regular grid of
    (elv_angle, shoulder_elv, shoulder_rot)) + elbow part (cubic on a fine grid of elbow_flexion)
    - offset; fiber length = a 1-D map of the path length (the muscle's equilibrium at fixed
    activation depends on nothing else). Each (cell, muscle) has a stencil checked against OpenSim at
    build time; where none passes, outside the tabulated region or outside the fiber map, OpenSim
    computes that muscle's path length at that frame and the fiber map gives its fiber length
    (:meth:`fallback`; the full equilibrium where the map cannot).
    """

    def __init__(self, arrays: dict[str, np.ndarray], path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.attrs = attrs
        names = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in arrays["muscles"])
        if names != MUSCLES:
            raise DeepDrawError(f"{path}: key 'muscles' is {names}; expected {MUSCLES}")
        self.coupling = arrays["coupling"].astype(np.int64)
        self.offset = arrays["offset"].astype(np.float64)
        self.sh_idx = arrays["shoulder_index"].astype(np.int64)
        self.sh_origin = arrays["shoulder_grid"][0].astype(np.float64)
        self.sh_step = arrays["shoulder_grid"][1].astype(np.float64)
        tab = _decode_table(arrays["shoulder_table_diff"], arrays["shoulder_table_nan"])
        self.sh_n = np.array(tab.shape[1:], dtype=np.int64)
        self.sh_table = tab.reshape(len(self.sh_idx), -1)  # flat nodes
        # node-major copy for :func:`_tricubic_nodes` (all muscles of a node side by side)
        ms = max(len(self.sh_idx), 1)
        nodes_major = np.ascontiguousarray(self.sh_table.T).reshape(-1)
        self._sh_window = (
            sliding_window_view(nodes_major, 4 * ms)[::ms] if len(nodes_major) >= 4 * ms else None
        )
        self.sh_code = arrays["shoulder_code"].reshape(len(self.sh_idx), -1)
        if arrays["shoulder_code"].shape[1:] != tuple(self.sh_n - 1):
            raise DeepDrawError(
                f"{path}: key 'shoulder_code' has shape {arrays['shoulder_code'].shape}; expected cells of 'shoulder_table'"
            )
        self._load_refine(arrays)
        self.el_idx = arrays["elbow_index"].astype(np.int64)
        self.el_origin, self.el_step = (float(v) for v in arrays["elbow_grid"])
        self.el_table = arrays["elbow_table"].astype(np.float64)
        self.el_code = arrays["elbow_code"]
        self.map_x = arrays["fiber_map_path"].astype(np.float64)
        self.map_y = arrays["fiber_map_fiber"].astype(np.float64)
        self.map_start = arrays["fiber_map_start"].astype(np.int64)
        self.map_trusted = _trusted_intervals(self.map_x, self.map_y, self.map_start)
        self._exact: ExactEngine | None = None
        self.model_path: Path | None = None
        self.model_sha256 = ""
        inputs = attrs.get("inputs", {})
        model_file = attrs.get("model_file", "")
        if isinstance(inputs, dict) and model_file in inputs:
            self.model_sha256 = inputs[model_file]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        model_path: str | os.PathLike | None = None,
        level2: bool = True,
    ) -> FastEngine:
        """Load the artifact (default: the one shipped in data/muscles); ``model_path`` for the fallback;
        ``level2=False`` ignores the finer tables (level 1 only, the rest from OpenSim)."""
        from ..store import read_arrays, read_attrs

        p = Path(path) if path is not None else default_engine_path()
        arrays = read_arrays(p, kind=ENGINE_KIND, schema=_engine_schema())
        if not level2:
            arrays = {k: v for k, v in arrays.items() if k not in REFINE_KEYS}
        eng = cls(arrays, p, read_attrs(p))
        eng.model_path = Path(model_path) if model_path is not None else None
        return eng

    # -- exact fallback ---------------------------------------------------------------------------
    def exact(self) -> ExactEngine:
        """The exact engine used for fallback frames (created on first use; model checked by sha256)."""
        if self._exact is None:
            from ..store import file_sha256

            mp = self.model_path if self.model_path is not None else default_model_path()
            if not mp.is_file():
                raise DeepDrawError(
                    f"{mp}: model file not found; the fast engine {self.path} needs it for its fallback frames"
                )
            if self.model_sha256 and file_sha256(mp) != self.model_sha256:
                raise DeepDrawError(
                    f"{mp}: sha256 differs from the model the fast engine {self.path} was built from "
                    f"({self.model_sha256[:12]}...); expected the same model (rebuild the engine for this one)"
                )
            self._exact = ExactEngine(mp)
        return self._exact

    def fallback(
        self, joints: np.ndarray, which: np.ndarray, *, mode: str = "path", quiet: bool = True
    ) -> np.ndarray:
        """Fiber lengths (mm) from OpenSim of the entries ``which`` (K, 25) at postures ``joints`` (K, 4).

        ``mode="path"`` (used by :meth:`lengths`): OpenSim's path length of the requested muscles
        (realized to Position only) through the engine's fiber map (the equilibrium at activation 0 is
        a function of the path length; the map matches ``computeEquilibrium`` within ~0.002 mm); entries
        whose path length is NaN or outside the map's range get the full equilibrium.
        ``mode="equilibrium"``: ``computeEquilibrium`` for every entry (:meth:`ExactEngine.fiber_subset`).
        Returns (K, 25), NaN where ``which`` is False.
        """
        q = np.asarray(joints, dtype=np.float64).reshape(-1, 4)
        which = np.asarray(which, dtype=bool)
        ex = self.exact()
        if mode == "equilibrium":
            return ex.fiber_subset(q, which, quiet=quiet)
        if mode != "path":
            raise DeepDrawError(f"mode: got {mode!r}; expected 'path' or 'equilibrium'")
        path = ex.path_subset(q, which)
        out = np.full(which.shape, np.nan)
        rest = which.copy()
        for m in np.flatnonzero(which.any(axis=0)):
            x = self.map_x[self.map_start[m] : self.map_start[m + 1]]
            if len(x) == 0:
                continue
            y = self.map_y[self.map_start[m] : self.map_start[m + 1]]
            col = path[:, m]
            ok = which[:, m] & (col >= x[0]) & (col <= x[-1])  # False for NaN
            # only where the map's interval is short and straight enough (its tails are sparse)
            i = np.clip(np.searchsorted(x, np.where(ok, col, x[0]), side="right") - 1, 0, max(len(x) - 2, 0))
            ok &= self.map_trusted[self.map_start[m] + i]
            out[ok, m] = np.interp(col[ok], x, y)
            rest[ok, m] = False
        rows = np.flatnonzero(rest.any(axis=1))
        if rows.size:
            log.debug("fast engine: %d values outside the fiber map, by equilibrium", int(rest.sum()))
            eq = ex.fiber_subset(q[rows], rest[rows], quiet=quiet)
            sub = out[rows]
            sub[rest[rows]] = eq[rest[rows]]
            out[rows] = sub
        return out

    def _load_refine(self, arrays: dict[str, np.ndarray]) -> None:
        """The optional level-2 tables (:mod:`deepdraw.dataset.refine`); absent: ``rf_key`` is None."""
        self.rf_key: np.ndarray | None = None
        keys = REFINE_KEYS
        present = [k for k in keys if k in arrays]
        if not present:
            return
        if len(present) < len(keys):
            missing = sorted(set(keys) - set(present))
            raise DeepDrawError(
                f"{self.path}: level-2 keys {missing} missing; expected all of {list(keys)} or none"
            )
        r = int(arrays["refine_ratio"][0])
        key = arrays["refine_key"].astype(np.int64)
        npair = len(key)
        tab_shape = (npair, r + 3, r + 3, r + 3)
        for k, shape in (("refine_table_diff", tab_shape), ("refine_code", (npair, r, r, r))):
            if arrays[k].shape != shape:
                raise DeepDrawError(f"{self.path}: key '{k}' has shape {arrays[k].shape}; expected {shape}")
        if r < 2 or np.any(np.diff(key) <= 0):
            raise DeepDrawError(
                f"{self.path}: key 'refine_key' must be strictly increasing with refine_ratio >= 2"
            )
        self.rf_ratio = r
        self.rf_key = key
        self.rf_table = _decode_table(arrays["refine_table_diff"], arrays["refine_table_nan"]).reshape(
            npair, -1
        )
        self.rf_code = arrays["refine_code"].reshape(npair, -1)

    # -- tables -----------------------------------------------------------------------------------
    def _shoulder_coarse(self, q3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shoulder parts (K, ms) from the level-1 table and the mask (K, ms) of untrusted entries."""
        if len(q3) == 0 or self._sh_window is None:
            return _tricubic(self.sh_table, self.sh_n, self.sh_code, self.sh_origin, self.sh_step, q3)
        return _tricubic_nodes(self._sh_window, self.sh_n, self.sh_code, self.sh_origin, self.sh_step, q3)

    def _shoulder(self, q3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shoulder parts (K, ms) and a mask (K, ms) of entries to compute exactly."""
        val, bad = self._shoulder_coarse(q3)
        if self.rf_key is not None and bad.any():
            _refine_values(self, q3, val, bad)
        return val, bad

    def _elbow(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        me = len(self.el_idx)
        ne = self.el_table.shape[1]
        u = (d - self.el_origin) / self.el_step
        i0 = np.floor(u)
        t = u - i0
        inside = (i0 >= 2) & (i0 <= ne - 4)
        i0 = np.where(inside, i0, 2).astype(np.int64)
        code = self.el_code[:, i0].T.astype(np.int64)  # (K, me)
        bad = (code == FALLBACK) | ~inside[:, None]
        shift = np.where(bad, 1, code) - 1
        w = _lagrange4(t[:, None] - shift)  # (K, me, 4)
        base = i0[:, None] - 1 + shift + (np.arange(me) * ne)[None, :]
        tab = self.el_table.reshape(-1)
        acc = sum(w[..., j] * tab[base + j] for j in range(4))
        return acc, bad | ~np.isfinite(acc)

    def table_lengths(
        self, q: np.ndarray, untrusted: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tables only, for postures q (K, 4) degrees: (fiber (K, 25), path (K, 25), exact-needed (K, 25)).

        Entries that need OpenSim are NaN unless ``untrusted``: then they hold whatever the centred
        stencil of the nearest tabulated cell gives (an estimate, wrong by up to the jumps the engine
        avoids; only for ordering work, see :meth:`estimate`).
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
        k = len(q)
        path = np.zeros((k, len(MUSCLES)))
        need = np.zeros((k, len(MUSCLES)), dtype=bool)
        if len(self.sh_idx):
            s, bad = self._shoulder(q[:, :3])
            path[:, self.sh_idx] += s
            need[:, self.sh_idx] |= bad
        if len(self.el_idx):
            e, bad = self._elbow(q[:, 3])
            path[:, self.el_idx] += e
            need[:, self.el_idx] |= bad
        path -= self.offset
        fiber = np.empty_like(path)
        for m in range(len(MUSCLES)):
            x = self.map_x[self.map_start[m] : self.map_start[m + 1]]
            y = self.map_y[self.map_start[m] : self.map_start[m + 1]]
            col = path[:, m]
            if len(x) == 0:
                need[:, m] = True
                fiber[:, m] = np.nan
                continue
            fiber[:, m] = np.interp(col, x, y)
            need[:, m] |= ~((col >= x[0]) & (col <= x[-1]))
        if not untrusted:
            fiber[need] = np.nan
        return fiber, path, need

    def estimate(self, joints: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Table values for *every* entry, trusted or not, and the mask of the untrusted ones.

        joints (n, T, 4) or (T, 4) degrees -> (fiber (n, T, 25) mm, needs-OpenSim mask (n, T, 25)),
        without the batch axis for a (T, 4) input. No OpenSim: the entries :meth:`lengths` would send
        to OpenSim hold the untrusted table value (see :meth:`table_lengths`); NaN beyond ``lengths``.
        ``np.where(mask, nan, fiber)`` is ``lengths(..., fallback=False)``. The untrusted values only
        decide which fallback frames to ask OpenSim first
        (:func:`deepdraw.dataset.engines.muscle_jerk_progressive`), never data.
        """
        q, valid, squeeze = _as_joints(joints, lengths)
        out = np.full(q.shape[:2] + (len(MUSCLES),), np.nan)
        mask = np.zeros(q.shape[:2] + (len(MUSCLES),), dtype=bool)
        fib, _, need = self.table_lengths(q[valid], untrusted=True)
        out[valid], mask[valid] = fib, need
        return (out[0], mask[0]) if squeeze else (out, mask)

    # -- public -----------------------------------------------------------------------------------
    def lengths(
        self,
        joints: Any,
        lengths: Any = None,
        *,
        fallback: bool = True,
        return_fallback: bool = False,
        chunk: int = 32768,
        quiet: bool = True,
        known: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fiber lengths (mm): joints (n, T, 4) or (T, 4) degrees -> (n, T, 25) or (T, 25).

        ``lengths`` (n,) ints: valid frames per trajectory (NaN out beyond them). Entries the tables
        cannot give are computed by the exact engine (``fallback=True``) or left NaN. With
        ``return_fallback`` also returns the mask (..., T, 25) of the entries that needed the exact
        engine (a frame fell back when any of its muscles did: ``mask.any(-1)``).
        ``known``: arrays (trajectory, frame, muscle, value) of OpenSim values computed before for
        these postures (the dataset's screening keeps them); an entry that needs the exact engine and
        is listed takes the listed value instead of asking OpenSim again (the returned mask still
        marks it). Listed entries the tables can give are ignored.
        """
        from tqdm.auto import tqdm

        q, valid, squeeze = _as_joints(joints, lengths)
        flat = q[valid]
        fib = np.empty((len(flat), len(MUSCLES)))
        need = np.zeros((len(flat), len(MUSCLES)), dtype=bool)
        for s in tqdm(range(0, len(flat), chunk), desc="fast muscle tables", disable=quiet, leave=False):
            f, _, nd = self.table_lengths(flat[s : s + chunk])
            fib[s : s + chunk] = f
            need[s : s + chunk] = nd
        ask = need
        if known is not None and len(known[0]):
            ask = need.copy()
            traj, frame, mus, val = (np.asarray(a) for a in known)
            pos = np.cumsum(valid.ravel()).reshape(valid.shape) - 1  # (n, T) -> row of ``flat``
            if squeeze:
                traj = np.zeros_like(traj)
            ok = (frame >= 0) & (frame < valid.shape[1]) & (traj >= 0) & (traj < valid.shape[0])
            ok &= (mus >= 0) & (mus < len(MUSCLES))
            ok[ok] &= valid[traj[ok], frame[ok]]
            r, m = pos[traj[ok], frame[ok]], mus[ok].astype(np.int64)
            use = need[r, m]
            fib[r[use], m[use]] = val[ok][use]
            ask[r[use], m[use]] = False
        rows = np.flatnonzero(ask.any(axis=1))
        if fallback and rows.size:
            log.debug(
                "fast engine: %d of %d frames (%d muscle values) from OpenSim",
                rows.size,
                len(flat),
                int(ask.sum()),
            )
            sub = fib[rows]
            sub[ask[rows]] = self.fallback(flat[rows], ask[rows], quiet=quiet)[ask[rows]]
            fib[rows] = sub
        out = np.full(q.shape[:2] + (len(MUSCLES),), np.nan)
        out[valid] = fib
        if not return_fallback:
            return out[0] if squeeze else out
        mask = np.zeros(q.shape[:2] + (len(MUSCLES),), dtype=bool)
        mask[valid] = need
        return (out[0], mask[0]) if squeeze else (out, mask)


def _refine_values(fe: FastEngine, q3: np.ndarray, val: np.ndarray, bad: np.ndarray) -> None:
    """Level 2: fill, in place, the entries of ``bad`` (K, ms) whose (cell, muscle) pair has a finer
    table and whose fine cell a stencil passed at build time; they leave the mask."""
    assert fe.rf_key is not None
    n, r = fe.sh_n, fe.rf_ratio
    u, i0, inside = _grid_cells(n, fe.sh_origin, fe.sh_step, q3)
    rows, cols = np.nonzero(bad & inside[:, None])
    if rows.size == 0:
        return
    key = _pair_keys(n, i0[rows], cols)
    p = np.minimum(np.searchsorted(fe.rf_key, key), len(fe.rf_key) - 1)
    hit = fe.rf_key[p] == key
    rows, cols, p = rows[hit], cols[hit], p[hit]
    tf = (u[rows] - i0[rows]) * r
    j = np.clip(np.floor(tf), 0, r - 1).astype(np.int64)
    code = fe.rf_code[p, (j[:, 0] * r + j[:, 1]) * r + j[:, 2]].astype(np.int64)
    ok = code != FALLBACK
    rows, cols, p, tf, j, code = rows[ok], cols[ok], p[ok], tf[ok], j[ok], code[ok]
    if rows.size == 0:
        return
    shift = np.stack([code // 9, (code // 3) % 3, code % 3], axis=-1) - 1
    w = _lagrange4(tf - j - shift)  # (E, 3, 4)
    big = r + 3
    base = np.clip(j + shift, 0, r - 1)  # local node 0 is fine node -1 of the cell: stencil j-1+s..j+2+s
    f0 = (base[:, 0] * big + base[:, 1]) * big + base[:, 2]
    acc = np.zeros(len(rows))
    for a in range(4):
        for b in range(4):
            wab = w[:, 0, a] * w[:, 1, b]
            for c in range(4):
                acc += wab * w[:, 2, c] * fe.rf_table[p, f0 + (a * big + b) * big + c]
    good = np.isfinite(acc)
    val[rows[good], cols[good]] = acc[good]
    bad[rows[good], cols[good]] = False


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def velocity(fiber: np.ndarray, lengths: np.ndarray | None = None, dt: float = 0.015) -> np.ndarray:
    """The velocity channel of the dataset: ``np.gradient(L, dt)`` along time over each valid stretch.

    fiber: (n, T, M); lengths (n,) valid frames (None: all). Trajectories shorter than 2 frames and
    frames beyond ``lengths`` get NaN.
    """
    fiber = np.asarray(fiber, dtype=np.float64)
    n, t_max = fiber.shape[:2]
    lens = np.full(n, t_max) if lengths is None else np.asarray(lengths)
    out = np.full_like(fiber, np.nan)
    for i in range(n):
        k = int(lens[i])
        if k >= 2:
            out[i, :k] = np.gradient(fiber[i, :k], dt, axis=0)
    return out


def compare(
    fast: np.ndarray, exact: np.ndarray, lengths: np.ndarray | None = None, dt: float = 0.015
) -> dict[str, Any]:
    """Error figures of fiber lengths ``fast`` vs ``exact`` (n, T, 25) over the valid frames."""
    n, t_max = exact.shape[:2]
    lens = np.full(n, t_max) if lengths is None else np.asarray(lengths)
    valid = np.arange(t_max)[None, :] < lens[:, None]
    a, b = fast[valid], exact[valid]
    both_nan = np.isnan(a) & np.isnan(b)
    one_nan = np.isnan(a) ^ np.isnan(b)
    err = np.where(both_nan, 0.0, np.abs(a - b))
    err = np.where(one_nan, np.inf, err)
    va, vb = velocity(fast, lens, dt)[valid], velocity(exact, lens, dt)[valid]
    ok = np.isfinite(va) & np.isfinite(vb)
    den = float(np.sum(vb[ok] ** 2))
    rel = float(np.sqrt(np.sum((va[ok] - vb[ok]) ** 2) / den)) if den > 0 else float("nan")
    per_m = (
        np.percentile(np.where(np.isfinite(err), err, 1e9), 99.9, axis=0)
        if len(err)
        else np.zeros(len(MUSCLES))
    )
    return {
        "frames": int(valid.sum()),
        "trajectories": int(n),
        "length_err_p999_mm": float(np.percentile(err, 99.9)) if err.size else 0.0,
        "length_err_max_mm": float(err.max(initial=0.0)),
        "length_err_mean_mm": float(np.mean(err[np.isfinite(err)])) if err.size else 0.0,
        "nan_mismatch": int(one_nan.sum()),
        "velocity_rel_rms": rel,
        "length_err_p999_per_muscle_mm": {m: round(float(v), 5) for m, v in zip(MUSCLES, per_m)},
    }


def validate_fast_engine(
    engine: FastEngine | str | os.PathLike | None = None,
    joints: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    *,
    n_traj: int = 200,
    seed: int = 12345,
    exact: ExactEngine | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Fast vs exact engine on dataset-like trajectories: error figures, fallback and speed.

    joints (n, T, 4) degrees (NaN after ``lengths``); default: ``n_traj`` trajectories of
    :func:`dataset_trajectories` (UCI characters through the arm's IK). Returns a dict with
    ``length_err_p999_mm``, ``length_err_max_mm``, ``velocity_rel_rms`` (of ``np.gradient(L, 0.015)``),
    ``fallback_frac`` (frames that needed OpenSim), ``fallback_entry_frac`` (muscle values),
    ``fast_frames_per_s``, ``exact_frames_per_s``, ``muscles_speedup`` and per-muscle figures.
    """
    fe = engine if isinstance(engine, FastEngine) else FastEngine.load(engine)
    if joints is None:
        joints, lengths = dataset_trajectories(n_traj, seed)
    q, valid, squeeze = _as_joints(joints, lengths)
    lens = valid.sum(axis=1)
    ex = exact if exact is not None else fe.exact()
    t0 = time.perf_counter()
    ref = ex.lengths(q, lens, quiet=quiet)
    t_exact = time.perf_counter() - t0
    fe._exact = ex  # share the OpenSim model between the two timings (the fallback uses it)
    t0 = time.perf_counter()
    fast, mask = fe.lengths(q, lens, return_fallback=True, quiet=quiet)
    t_fast = time.perf_counter() - t0
    out = compare(fast, ref, lens)
    frames = out["frames"]
    out.update(
        fallback_frac=float(mask[valid].any(axis=-1).mean()) if frames else 0.0,
        fallback_entry_frac=float(mask[valid].mean()) if frames else 0.0,
        fallback_entry_frac_per_muscle={
            m: round(float(v), 4) for m, v in zip(MUSCLES, mask[valid].mean(axis=0))
        },
        exact_frames_per_s=frames / t_exact if t_exact > 0 else float("nan"),
        fast_frames_per_s=frames / t_fast if t_fast > 0 else float("nan"),
    )
    out["muscles_speedup"] = out["fast_frames_per_s"] / out["exact_frames_per_s"]
    return out
