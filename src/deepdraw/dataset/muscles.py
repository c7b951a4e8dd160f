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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeepDrawError

log = logging.getLogger(__name__)

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
            raise DeepDrawError(f"lengths: expected ({n},) integers (valid frames per trajectory); got {lens.shape} {lens.dtype}")
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
        raise DeepDrawError(f"opensim: the OpenSim Python package cannot be imported ({e}); install opensim>=4.5") from None
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
                    raise DeepDrawError(f"{p}: muscle {name!r} is missing from the model's force set; expected all of {', '.join(MUSCLES)}")
            cset = model.getCoordinateSet()
            for name in JOINTS:
                if not cset.contains(name):
                    raise DeepDrawError(f"{p}: coordinate {name!r} is missing from the model; expected {', '.join(JOINTS)}")
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

    def _frame(self, s: Any, q_deg: np.ndarray, out_fiber: np.ndarray | None, out_path: np.ndarray | None) -> None:
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
        with tqdm(total=int(valid.sum()), desc="OpenSim frames", unit="frame", disable=quiet, leave=False) as bar:
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
