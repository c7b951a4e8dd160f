"""The exact engine: OpenSim frame by frame (:class:`ExactEngine`), and many postures in worker processes (:func:`evaluate_postures`)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DeepDrawError
from .constants import JOINTS, MUSCLES, default_model_path

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def as_joints(joints: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray, bool]:
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
        q, valid, squeeze = as_joints(joints, lengths)
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
            for m in idx:
                out[k, m] = self._muscles[m].getLength(s) * 1000.0
        return out


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
