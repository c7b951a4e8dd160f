"""Access to the muscle-length engines from worker processes (one engine per process, cached)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ..paths import osim_model

if TYPE_CHECKING:
    from .muscles.fast import FastEngine, KnownValues


def _model_path(model: str) -> str:
    return str(Path(model)) if model else str(osim_model())


@lru_cache(maxsize=4)
def _engine(engine: str, model: str, table: str, level2: bool = True):
    from . import muscles

    if engine == "exact":
        return muscles.ExactEngine(_model_path(model))
    return muscles.FastEngine.load(table or None, model_path=_model_path(model), level2=level2)


def get_engine(cfg: dict[str, Any]):
    """The engine named by a ``[muscles]`` config section (as a dict)."""
    return _engine(cfg["engine"], cfg.get("model", ""), cfg.get("table", ""), bool(cfg.get("level2", True)))


def _pad(joints: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """[(T_i, 4)] -> NaN-padded batch (n, max T_i, 4) and the lengths (n,)."""
    lengths = np.array([len(q) for q in joints])
    batch = np.full((len(joints), int(lengths.max()), 4), np.nan)
    for i, q in enumerate(joints):
        batch[i, : len(q)] = q
    return batch, lengths


def muscle_lengths(
    joints: list[np.ndarray], cfg: dict[str, Any], known: KnownValues | None = None
) -> list[np.ndarray]:
    """Joint trajectories [(T_i, 4) deg] -> fiber lengths [(T_i, 25) mm], one engine call for all.

    ``known``: OpenSim values computed before, (trajectory, frame, muscle, value) arrays (the fast
    engine uses them instead of asking OpenSim again; the exact engine ignores them).
    """
    if not joints:
        return []
    batch, lengths = _pad(joints)
    eng = get_engine(cfg)
    from .muscles import FastEngine

    if known is not None and isinstance(eng, FastEngine):
        out = eng.lengths(batch, lengths, known=known)
    else:
        out = eng.lengths(batch, lengths)  # frames past each length are not computed
    return [out[i, : lengths[i]] for i in range(len(joints))]


def muscle_jerk_scores(
    joints: list[np.ndarray], cfg: dict[str, Any], screen: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Muscle jerk of joint trajectories [(T_i, 4) deg]: (jerk, lower bound, known), each (n,).

    ``screen`` with the fast engine: the tables only (no OpenSim). Entries the tables cannot give are
    left out of the jerk sum (:func:`deepdraw.dataset.arm.joint_jerk` with ``omit_nan``), which gives a
    lower bound of the jerk; where no entry was missing the bound *is* the jerk (``known`` True),
    elsewhere ``jerk`` is NaN and the assembly computes it if the selection needs it. Otherwise (or with
    the exact engine) every jerk is computed (``lower bound == jerk``, ``known`` True).
    """
    from . import arm
    from .muscles import FastEngine

    n = len(joints)
    jerk, bound, known = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=bool)
    if n == 0:
        return jerk, bound, known
    batch, lengths = _pad(joints)
    eng = get_engine(cfg)
    if screen and isinstance(eng, FastEngine):
        tab = eng.lengths(batch, lengths, fallback=False)  # NaN where OpenSim would be asked
        valid = np.arange(tab.shape[1])[None, :] < lengths[:, None]
        known = ~np.any(np.isnan(tab) & valid[:, :, None], axis=(1, 2))
        # batched (rows grouped by length): the same sums, bit for bit, as one trajectory at a time
        # (tests/test_arm.py checks this), i.e. as the exact path's
        bound[:] = arm.joint_jerk(tab, lengths, omit_nan=True)
        jerk[known] = bound[known]
        return jerk, bound, known
    for i, mus in enumerate(muscle_lengths(joints, cfg)):
        jerk[i] = arm.joint_jerk(mus)
    return jerk, jerk.copy(), np.ones(n, dtype=bool)


SCREEN_SLACK = 1.0 + 1e-9
"""Relative margin on the screening thresholds (a re-generated IK may differ in the last bits)."""


def _fallback_order(estimate: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """``frames`` (fallback frames of one trajectory) sorted by their estimated share of the jerk.

    ``estimate`` (T, 25): the tables' values everywhere, untrusted ones included. The third
    differences ``∇³`` at frames t-3 .. t+3 use frame t, so a frame's share is the sum of the
    squared estimated ``∇³`` over that window (terms an entry without estimate spoils count 0); the
    largest first (stable: ties stay in time order).
    """
    from .arm.measures import third_difference

    x = third_difference(np.where(np.isfinite(estimate), estimate, np.nan))
    x = np.nan_to_num(x, nan=0.0)  # terms without an estimate count as no information
    share = np.convolve(np.einsum("tm,tm->t", x, x), np.ones(7), mode="same")
    return frames[np.argsort(-share[frames], kind="stable")]


def _bound(L: np.ndarray) -> float:
    """Lower bound of the muscle jerk of one trajectory L (T, 25) with NaN for the unknown entries:
    :func:`deepdraw.dataset.arm.joint_jerk` with ``omit_nan``, without its batching set-up."""
    from .arm.measures import third_difference

    if len(L) < 2:
        return float("nan")
    x = third_difference(L)
    return float(np.sqrt(np.nansum(x * x)))


@overload
def muscle_jerk_progressive(
    joints: list[np.ndarray],
    cfg: dict[str, Any],
    tau: np.ndarray,
    block: int = 4,
    return_filled: Literal[False] = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@overload
def muscle_jerk_progressive(
    joints: list[np.ndarray],
    cfg: dict[str, Any],
    tau: np.ndarray,
    block: int = 4,
    *,
    return_filled: Literal[True],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, KnownValues]: ...


def muscle_jerk_progressive(
    joints: list[np.ndarray],
    cfg: dict[str, Any],
    tau: np.ndarray,
    block: int = 4,
    return_filled: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, KnownValues]:
    """Exact muscle jerks, stopping early once a candidate's jerk certainly exceeds its ``tau``.

    Joint trajectories [(T_i, 4) deg], thresholds ``tau`` (n,) (``inf``: always compute the jerk).
    The fast engine's tables give most entries; the others are asked of OpenSim ``block`` frames at a
    time, the frames with the largest estimated share of the jerk first (:func:`_fallback_order`,
    from the tables' untrusted values), and after each block the lower bound (jerk over the third
    differences that touch no missing entry) is updated: when it exceeds ``tau`` the candidate cannot
    be selected and the rest of its frames are skipped. The order only changes how soon a candidate
    stops: OpenSim's value of a frame does not depend on which frames were asked before it.
    Returns (jerk (n,) exact or NaN, bound (n,), done (n,) bool):
    ``done`` with a finite jerk is the exact jerk (the same number as :func:`muscle_jerk_scores` with
    ``screen=False``), ``done`` with NaN an OpenSim failure, not ``done`` a certified ``bound > tau``.
    ``return_filled`` adds a 4th value: the OpenSim values of the candidates with an exact jerk, as
    arrays (trajectory, frame, muscle, value) for :meth:`~deepdraw.dataset.muscles.FastEngine.lengths`'
    ``known`` (the assembly re-uses them for the selected samples instead of asking OpenSim again).
    """
    from . import arm
    from .muscles import FastEngine

    n = len(joints)
    tau = np.asarray(tau, dtype=np.float64)
    jerk, bound, done = np.full(n, np.nan), np.full(n, np.nan), np.ones(n, dtype=bool)
    parts: list[KnownValues] = []

    def result(
        jerk: np.ndarray, bound: np.ndarray, done: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, KnownValues]:
        if not return_filled:
            return jerk, bound, done
        if parts:
            t, f, m, v = (np.concatenate(a) for a in zip(*parts))
            return jerk, bound, done, (t, f, m, v)
        none = np.zeros(0, np.int64)
        return jerk, bound, done, (none, none.copy(), none.copy(), np.zeros(0))

    if n == 0:
        return result(jerk, bound, done)
    eng = get_engine(cfg)
    if not isinstance(eng, FastEngine):
        jerk, _, _ = muscle_jerk_scores(joints, cfg, screen=False)
        return result(jerk, jerk.copy(), done)
    batch, lengths = _pad(joints)
    est, need = eng.estimate(batch, lengths)
    L = np.where(need, np.nan, est)  # what the tables trust (= lengths(..., fallback=False)), then filled
    order: list[np.ndarray] = []
    for i in range(n):
        T = int(lengths[i])
        frames = np.flatnonzero(need[i, :T].any(axis=1))
        if np.isfinite(tau[i]):  # with tau = inf every frame is asked: keep time order
            frames = _fallback_order(est[i, :T], frames)
        order.append(frames)
    status = _ask_in_blocks(eng, batch, lengths, L, need, order, tau * SCREEN_SLACK, block)
    for i in range(n):
        T = int(lengths[i])
        if status[i] == "complete":
            jerk[i] = arm.joint_jerk(L[i, :T])
            bound[i] = jerk[i]
            nd = need[i, :T]
            if return_filled and nd.any():
                fr, mu = np.nonzero(nd)
                parts.append(
                    (np.full(len(fr), i, np.int64), fr.astype(np.int64), mu.astype(np.int64), L[i, fr, mu])
                )
        else:
            bound[i] = _bound(L[i, :T])
            done[i] = status[i] == "failed"
    return result(jerk, bound, done)


def _ask_in_blocks(
    eng: FastEngine,
    batch: np.ndarray,
    lengths: np.ndarray,
    L: np.ndarray,
    need: np.ndarray,
    order: list[np.ndarray],
    lim: np.ndarray,
    block: int,
) -> np.ndarray:
    """Fill ``L`` (n, T, 25) from OpenSim where ``need``, ``block`` frames of ``order`` at a time, until
    each candidate's jerk bound exceeds ``lim`` (status "exceeds"), OpenSim fails ("failed") or every
    frame is filled ("complete"). Returns the status per candidate (n,) (object array)."""
    n = len(order)
    status = np.array(["complete"] * n, dtype=object)
    pos = 0
    # all candidates advance together, one block each per step: one OpenSim call per step for all of
    # them (the per-call cost is shared), and each candidate sees exactly the blocks, bounds and
    # decisions it would see alone
    active = [i for i in range(n) if len(order[i])]
    while active:
        still = []
        for i in active:
            if _bound(L[i, : lengths[i]]) > lim[i]:
                status[i] = "exceeds"
            else:
                still.append(i)
        if not still:
            break
        rows = np.concatenate([np.full(len(order[i][pos : pos + block]), i) for i in still])
        fr = np.concatenate([order[i][pos : pos + block] for i in still])
        nd = need[rows, fr]
        sub = L[rows, fr]
        sub[nd] = eng.fallback(batch[rows, fr], nd)[nd]
        L[rows, fr] = sub
        failed = np.zeros(n, dtype=bool)
        failed[rows[(np.isnan(sub) & nd).any(axis=1)]] = True
        pos += block
        active = []
        for i in still:
            if failed[i]:
                status[i] = "failed"  # an OpenSim NaN: no finite jerk, as in exact scoring
            elif pos < len(order[i]):
                active.append(i)
    return status
