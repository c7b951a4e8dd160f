"""Proprioceptive inputs, temporal placement, selection and split of the PCRT assembly."""

from __future__ import annotations

import numpy as np
import pytest

from deepdraw.dataset import proprio
from deepdraw.dataset.assemble import LATENT_KEYS, read_scores, select, split
from deepdraw.errors import DeepDrawError


def test_place_holds_first_and_last_values():
    x = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    out = proprio.place(x, onset=2, n_frames=7)
    np.testing.assert_array_equal(out, [[1, 1, 1, 2, 3, 3, 3], [10, 10, 10, 20, 30, 30, 30]])
    with pytest.raises(ValueError):
        proprio.place(x, onset=5, n_frames=7)


def test_onset_range_matches_the_original_randint():
    rng = np.random.default_rng(0)
    onsets = [proprio.draw_onset(rng, 300, 320) for _ in range(2000)]
    assert min(onsets) == 0 and max(onsets) == 19  # np.random.randint(320 - L): [0, 20)


def test_spindle_info_and_firing_by_hand():
    dt = 0.015
    L = np.array([100.0, 100.3, 100.9, 101.8])  # mm
    info = proprio.spindle_info(L, dt)
    # np.gradient: one-sided at the ends, central inside
    v = np.array([0.3, 0.9 / 2, 1.5 / 2, 0.9]) / dt
    np.testing.assert_allclose(info[:, 0], L)
    np.testing.assert_allclose(info[:, 1], v)
    rate = proprio.spindle_rate(L, dt)
    stretch = np.array([0.3, 0.45, 0.75, 0.9])
    np.testing.assert_allclose(rate, 2 * stretch + 4.3 * np.sign(v) * np.abs(v) ** 0.6)
    # noise: 0.3 x the std over time of each muscle's rate, drawn from the given generator
    M = np.stack([L, L[::-1]])
    f = proprio.spindle_firing(M, np.random.default_rng(5), noise=0.3, dt=dt)
    p = proprio.spindle_rate(M, dt)
    z = np.random.default_rng(5).standard_normal(p.shape)
    np.testing.assert_allclose(f, p + 0.3 * p.std(axis=-1, keepdims=True) * z)


def _scores(n_per_label: int = 6, n_labels: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    n = n_per_label * n_labels
    s = {
        "candidate_id": np.arange(n),
        "char_index": np.arange(n) // 2,
        "label": np.repeat(np.arange(n_labels), n_per_label),
        "plane": np.tile([0, 1], n // 2),
        "startpt_id": rng.integers(5, size=n),
        "accepted": np.ones(n, dtype=np.int8),
        "muscle_jerk": rng.random(n),
    }
    for k in LATENT_KEYS:
        s[k] = rng.choice([0.7, 1.0, 1.3], size=n)
    return s


def test_selection_keeps_lowest_jerk_balanced_over_characters_and_planes():
    s = _scores()
    s["accepted"][3] = 0  # never selected
    ids = select(s, n_samples=40)  # 2 per character
    assert len(ids) == 40 and 3 not in ids
    lab = s["label"][ids]
    assert np.bincount(lab, minlength=20).tolist() == [2] * 20
    for c in range(20):
        picked = ids[lab == c]
        assert sorted(s["plane"][picked].tolist()) == [0, 1]  # one per plane
        for p in (0, 1):  # the lowest-jerk accepted candidate of each (character, plane)
            pool = np.flatnonzero((s["label"] == c) & (s["plane"] == p) & (s["accepted"] == 1))
            assert s["muscle_jerk"][picked[s["plane"][picked] == p]][0] == s["muscle_jerk"][pool].min()


def test_selection_drops_duplicates_and_reports_shortage():
    s = _scores(n_per_label=2)
    # candidate 1 duplicates candidate 0 (same UCI sample, plane, start point and latents)
    for k in ("char_index", "plane", "startpt_id", *LATENT_KEYS):
        s[k][1] = s[k][0]
    s["muscle_jerk"][1] = -1.0
    ids = select(s, n_samples=20)
    assert not (0 in ids and 1 in ids)
    with pytest.raises(
        DeepDrawError, match="character 'a' has 1 accepted candidates; assembly.n_samples needs 2"
    ):
        select(s, n_samples=40)


def test_split_is_disjoint_complete_and_seeded():
    ids = np.arange(100, 200)
    tr, te = split(ids, seed=4, test_fraction=0.2)
    assert len(tr) == 80 and len(te) == 20
    assert set(tr).isdisjoint(te) and set(tr) | set(te) == set(ids)
    tr2, te2 = split(ids, seed=4, test_fraction=0.2)
    np.testing.assert_array_equal(tr, tr2)
    tr3, _ = split(ids, seed=5, test_fraction=0.2)
    assert not np.array_equal(tr, tr3)


def test_isolated_opensim_nan_frames_are_interpolated():
    from deepdraw.dataset.assemble import fill_opensim_gaps

    mus = np.tile(np.arange(6.0)[:, None], (1, 25))
    mus[2, 8] = np.nan
    out = fill_opensim_gaps(mus)
    assert out[2, 8] == 2.0 and np.isfinite(out).all() and np.isnan(mus[2, 8])
    mus[:, 3] = np.nan
    with pytest.raises(DeepDrawError, match="muscle DELT3 is NaN at every frame"):
        fill_opensim_gaps(mus)


# --------------------------------------------------------------------------------------------------
# muscle-jerk screening
# --------------------------------------------------------------------------------------------------
def test_jerk_with_omitted_nan_is_a_lower_bound_equal_when_complete():
    from deepdraw.dataset import arm

    rng = np.random.default_rng(3)
    L = np.cumsum(rng.standard_normal((60, 25)), axis=0)
    full = arm.joint_jerk(L)
    assert arm.joint_jerk(L, omit_nan=True) == full  # same sums, same bits
    holey = L.copy()
    holey[[5, 6, 40], [3, 3, 17]] = np.nan
    lb = arm.joint_jerk(holey[None], lengths=np.array([60]), omit_nan=True)[0]
    # by hand: the third differences that touch a NaN are dropped, the others are summed
    x = holey.copy()
    for _ in range(3):
        x = np.gradient(x, axis=0)
    y = L.copy()
    for _ in range(3):
        y = np.gradient(y, axis=0)
    assert np.isnan(x).sum() > 0
    np.testing.assert_allclose(lb, np.sqrt(np.sum(y[np.isfinite(x)] ** 2)))
    assert lb < full


def _screen_case(seed: int, n_per_label: int, short_plane: bool = False):
    rng = np.random.default_rng(seed)
    s = _scores(n_per_label)
    n = len(s["candidate_id"])
    s["startpt_id"] = np.arange(n)  # no duplicates
    truth = rng.gamma(2.0, 1.0, n)
    truth[rng.random(n) < 0.03] = np.nan  # OpenSim failures: excluded once computed
    if short_plane:  # character 0 has almost nothing in plane 1
        drop = np.flatnonzero((s["label"] == 0) & (s["plane"] == 1))[1:]
        s["accepted"][drop] = 0
    complete = rng.random(n) < 0.3
    bound = np.where(complete, truth, truth * rng.random(n) ** 2)
    bound = np.where(np.isnan(truth) & ~complete, rng.random(n), bound)  # any bound is valid there
    s["muscle_jerk_bound"] = np.where(s["accepted"] == 1, bound, np.nan)
    s["muscle_jerk_known"] = (complete & (s["accepted"] == 1)).astype(np.int8)
    s["muscle_jerk"] = np.where(s["muscle_jerk_known"] == 1, truth, np.nan)
    exact = {**s, "muscle_jerk": np.where(s["accepted"] == 1, truth, np.nan)}
    return s, exact, truth


@pytest.mark.parametrize("stop_early", [False, True])
@pytest.mark.parametrize("seed,n_per_label,n_samples,short", [(0, 60, 200, False), (1, 40, 333, False),
                                                              (2, 50, 150, True), (3, 30, 540, False)])  # fmt: skip
def test_screening_gives_the_exact_selection_with_fewer_jerks(
    seed, n_per_label, n_samples, short, stop_early
):
    from deepdraw.dataset.assemble import screen_jerks

    s, exact, truth = _screen_case(seed, n_per_label, short)
    calls = []

    def evaluate(idx, tau):
        assert not np.any(s["muscle_jerk_known"][idx] == 1), "a known jerk was computed again"
        assert np.all(s["muscle_jerk_bound"][idx] <= tau * (1 + 1e-9))
        calls.append(len(idx))
        t = truth[idx]
        done = ~(t > tau) if stop_early else np.ones(len(idx), dtype=bool)  # NaN (a failure) is done
        b = np.where(done, t, (tau + np.nan_to_num(t)) / 2)  # a certified bound in (tau, jerk]
        return np.where(done, t, np.nan), b, done

    unknown = int(((s["muscle_jerk_known"] == 0) & (s["accepted"] == 1)).sum())
    s_big = {k: v.copy() for k, v in s.items()}
    st = screen_jerks(s, n_samples, evaluate, min_round=0)  # K/4 per group and round
    want = select(exact, n_samples)
    got = select(s, n_samples)
    np.testing.assert_array_equal(got, want)
    assert st["evaluated"] == sum(calls) and st["rounds"] == len(calls)
    assert (st["stopped_early"] > 0) == stop_early
    if n_samples / len(truth) < 0.25 and not short:
        assert st["evaluated"] < 0.8 * unknown  # the point of screening
    # every selected jerk is the exact one
    np.testing.assert_array_equal(s["muscle_jerk"][got], truth[got])
    # rounds of at least ~min_round candidates: fewer rounds, more evaluated, the same selection
    n_calls = len(calls)
    s = s_big
    calls.clear()
    st_big = screen_jerks(s, n_samples, evaluate, min_round=len(truth) // 3)
    np.testing.assert_array_equal(select(s, n_samples), want)
    assert st_big["rounds"] <= n_calls
    assert calls[0] >= min(len(truth) // 3, unknown) * 0.9  # the first round takes the share


def test_screening_with_fewer_samples_than_characters():
    """7 samples for 20 characters: most characters have no quota and no jerk known yet (the tiny
    dataset that crashed the screening); their candidates need no jerk, the selection stays exact."""
    from deepdraw.dataset.assemble import screen_jerks

    s, exact, truth = _screen_case(4, 30)
    s["muscle_jerk_known"][:] = 0
    s["muscle_jerk"][:] = np.nan

    def evaluate(idx, tau):
        return truth[idx], truth[idx], np.ones(len(idx), dtype=bool)

    st = screen_jerks(s, 7, evaluate)
    got = select(s, 7)
    np.testing.assert_array_equal(got, select(exact, 7))
    assert len(got) == 7 and len(np.unique(s["label"][got])) == 7
    np.testing.assert_array_equal(s["muscle_jerk"][got], truth[got])
    assert st["evaluated"] < 0.5 * int((s["accepted"] == 1).sum())  # not every jerk


def test_screened_dataset_equals_the_exactly_scored_one(tmp_path, monkeypatch):
    """kinematics.muscle_jerk = "screen" and "exact" give the same samples (same ids, same arrays)."""
    import h5py

    from deepdraw.config import config_from_dict
    from deepdraw.dataset.assemble import run_assemble, samples
    from deepdraw.dataset.stage import run_characters, run_kinematics, run_startpoints

    reused = {"screen": 0, "exact": 0}
    mode_now = ["screen"]
    materialise = samples.materialise  # run_chunk's materialise

    def recording(*args, **kw):
        known = args[7] if len(args) > 7 else kw.get("known")
        reused[mode_now[0]] += 0 if known is None else len(known[0])
        return materialise(*args, **kw)

    monkeypatch.setattr(samples, "materialise", recording)

    out, shards = {}, {}
    for mode in ("screen", "exact"):
        mode_now[0] = mode
        cfg = config_from_dict(
            {
                "run": {"seed": 3, "quiet": True, "out_dir": str(tmp_path / mode)},
                "parallel": {"mode": "sync"},
                "kinematics": {"n_candidates": 240, "shard_size": 120, "save_trajectories": False,
                               "muscle_jerk": mode},
                "assembly": {"n_samples": 40, "chunk": 16},
            }
        )  # fmt: skip
        run_characters(cfg)
        run_startpoints(cfg)
        run_kinematics(cfg)
        shards[mode] = read_scores(sorted((tmp_path / mode / "dataset" / "candidates").glob("shard_*.h5")))
        run_assemble(cfg)
        with h5py.File(tmp_path / mode / "dataset" / "pcrt_train.h5") as f:
            out[mode] = {
                k: f[k][()] for k in ("candidate_id", "muscle_coords", "spindle_info", "muscle_jerk")
            }
        assert not (tmp_path / mode / "dataset" / "assembly").exists()
    sc, ex = shards["screen"], shards["exact"]
    acc = ex["accepted"] == 1
    np.testing.assert_array_equal(sc["accepted"], ex["accepted"])
    known = sc["muscle_jerk_known"] == 1
    assert ex["muscle_jerk_known"][acc].all() and 0 < known[acc].mean() < 1  # some need OpenSim, some not
    assert np.all(sc["muscle_jerk_bound"][acc] <= ex["muscle_jerk"][acc])  # a lower bound ...
    np.testing.assert_array_equal(sc["muscle_jerk"][known], ex["muscle_jerk"][known])  # ... exact if known
    assert np.isnan(sc["muscle_jerk"][acc & ~known]).all()
    assert reused["screen"] > 0 and reused["exact"] == 0  # the screening's OpenSim values were re-used
    a, b = out["screen"], out["exact"]
    np.testing.assert_array_equal(a["candidate_id"], b["candidate_id"])
    np.testing.assert_array_equal(a["muscle_coords"], b["muscle_coords"])
    np.testing.assert_array_equal(a["spindle_info"], b["spindle_info"])
    np.testing.assert_allclose(a["muscle_jerk"], b["muscle_jerk"], rtol=1e-9)


def test_fallback_order_puts_the_largest_estimated_jerk_first():
    from deepdraw.dataset.engines import _fallback_order

    est = np.tile(100.0 + 0.25 * np.arange(60.0)[:, None], (1, 25))  # straight: no jerk (exact in binary)
    est[30, 3] += 5.0  # a step of one frame: jerk around frame 30 only
    est[50:, 7] = np.nan  # NaN estimates count as no information
    frames = np.array([2, 10, 29, 31, 45, 55])
    got = _fallback_order(est, frames)
    assert sorted(got.tolist()) == frames.tolist()
    assert set(got[:2].tolist()) == {29, 31}  # within 3 frames of the step
    assert got[2:].tolist() == [2, 10, 45, 55]  # no share: time order kept


def test_estimate_is_the_tables_plus_untrusted_values():
    from deepdraw.dataset import muscles as M

    fe = M.FastEngine.load()
    joints, lens = M.dataset_trajectories(6, seed=4)
    est, mask = fe.estimate(joints, lens)
    tab, need = fe.lengths(joints, lens, fallback=False, return_fallback=True)
    np.testing.assert_array_equal(mask, need)
    assert mask.any()
    np.testing.assert_array_equal(np.where(mask, np.nan, est), tab)
    valid = np.arange(joints.shape[1])[None, :] < lens[:, None]
    assert np.isfinite(est[valid][mask[valid]]).mean() > 0.9  # untrusted entries get a value
    assert np.isnan(est[~valid]).all()


def test_progressive_jerk_equals_exact_or_stops_above_tau():
    """Early-stopping evaluation: the exact jerk with tau = inf; a certified bound > tau otherwise."""
    from dataclasses import asdict

    from deepdraw.config import MusclesConfig
    from deepdraw.dataset import muscles as M
    from deepdraw.dataset.engines import muscle_jerk_progressive, muscle_jerk_scores

    cfg = asdict(MusclesConfig())
    joints, lens = M.dataset_trajectories(12, seed=21)
    js = [joints[i, : lens[i]] for i in range(len(lens))]
    exact, _, _ = muscle_jerk_scores(js, cfg, screen=False)
    _, bound0, known0 = muscle_jerk_scores(js, cfg, screen=True)
    assert (~known0).sum() >= 4  # most of these trajectories need OpenSim somewhere
    jerk, bound, done, filled = muscle_jerk_progressive(js, cfg, np.full(len(js), np.inf), return_filled=True)
    assert done.all()
    np.testing.assert_array_equal(jerk, exact)
    full, mask = M.FastEngine.load().lengths(joints, lens, return_fallback=True)
    traj, frame, mus, val = filled
    np.testing.assert_array_equal(np.stack([traj, frame, mus], axis=1), np.argwhere(mask))  # every entry
    np.testing.assert_array_equal(val, full[traj, frame, mus])  # ... with OpenSim's value
    tau = np.where(known0, np.inf, bound0 * 1.05)  # just above the table-only bound
    jerk, bound, done, filled = muscle_jerk_progressive(js, cfg, tau, return_filled=True)
    stopped = ~done
    assert not np.isin(filled[0], np.flatnonzero(stopped)).any()  # kept only for exact jerks
    assert stopped.any()
    assert np.all(bound[stopped] > tau[stopped]) and np.all(bound[stopped] <= exact[stopped])
    assert np.all(np.isnan(jerk[stopped]))
    np.testing.assert_array_equal(jerk[done], exact[done])


def test_assembly_rebuilds_the_joints_from_the_stored_swivel(tmp_path, monkeypatch):
    """The kinematics shards store the IK's swivel angles; the assembly rebuilds the joints from them
    (no IK search) and the dataset is the same, byte for byte, as when the IK is solved again."""
    import h5py

    from deepdraw.config import config_from_dict
    from deepdraw.dataset import arm
    from deepdraw.dataset.assemble import run_assemble
    from deepdraw.dataset.stage import run_characters, run_kinematics, run_startpoints

    cfg = config_from_dict(
        {
            "run": {"seed": 5, "quiet": True, "out_dir": str(tmp_path)},
            "parallel": {"mode": "sync"},
            "kinematics": {"n_candidates": 160, "shard_size": 70, "save_trajectories": False},
            "assembly": {"n_samples": 30, "chunk": 16},
        }
    )
    run_characters(cfg)
    run_startpoints(cfg)
    run_kinematics(cfg)
    shards = sorted((tmp_path / "dataset" / "candidates").glob("shard_*.h5"))
    for p in shards:  # one angle per frame of every candidate, uncompressed (read a few at a time)
        with h5py.File(p) as f:
            assert f["swivel"].shape == (int(f["length"][()].sum()),)
            assert f["swivel"].compression is None and np.isfinite(f["swivel"][()]).all()

    calls = []
    ik_batch = arm.ik_batch

    def counting(targets, *a, **kw):
        calls.append(len(targets))
        return ik_batch(targets, *a, **kw)

    monkeypatch.setattr(arm.batch, "ik_batch", counting)  # ik_from_swivel looks it up there
    keys = ("candidate_id", "joint_coords", "muscle_coords", "spindle_info", "spindle_firing", "muscle_jerk")
    out = {}
    for variant in ("swivel", "ik"):
        if variant == "ik":
            for p in shards:
                with h5py.File(p, "a") as f:
                    del f["swivel"]
        calls.clear()
        run_assemble(cfg)
        out[variant] = {}
        for part in ("train", "test"):
            with h5py.File(tmp_path / "dataset" / f"pcrt_{part}.h5") as f:
                out[variant].update({f"{part}/{k}": f[k][()] for k in keys})
        if variant == "swivel":
            assert calls == []  # every joint from its swivel angles
        else:
            assert sum(calls) >= 30  # every evaluated or selected candidate solved again
    for k, v in out["swivel"].items():
        np.testing.assert_array_equal(v, out["ik"][k], err_msg=k)

    # shards cut at another size than the config says: a clear error, not misplaced swivel angles
    other = config_from_dict(
        {**cfg.to_dict(), "kinematics": {**cfg.to_dict()["kinematics"], "shard_size": 80}}
    )
    with pytest.raises(DeepDrawError, match="candidate_id"):
        run_assemble(other)


@pytest.mark.parametrize(
    "n, chunk, workers", [(760, 500, 2), (55, 500, 2), (1, 500, 2), (50000, 2000, 2), (10, 4, 1)]
)
def test_screening_tasks_are_equal_and_fill_the_workers(n, chunk, workers):
    from deepdraw.dataset.assemble.jerk_rounds import balanced_tasks

    tasks = balanced_tasks(n, chunk, workers)
    sizes = np.array([e - s for s, e in tasks])
    assert tasks[0][0] == 0 and tasks[-1][1] == n  # contiguous, complete
    assert all(a[1] == b[0] for a, b in zip(tasks, tasks[1:]))
    assert sizes.max() <= chunk and sizes.max() - sizes.min() <= 1
    if n >= workers:
        assert len(tasks) % workers == 0


def test_former_module_names_stay_importable_from_the_package():
    """The assembly was one module; every public name it defined is still importable from
    ``deepdraw.dataset.assemble`` and is the object of its new home (no copy)."""
    import importlib

    from deepdraw.dataset import assemble

    homes = {
        "selection": ["SCORE_KEYS", "SCREEN_KEYS", "read_scores", "select", "split"],
        "screening": ["screen_jerks"],
        "regeneration": ["SwivelRef", "swivel_refs", "load_swivel", "regenerate"],
        "samples": ["ChunkTask", "materialise", "fill_opensim_gaps", "run_chunk"],
        "jerk_rounds": ["JerkTask", "run_jerk_chunk", "FILLED_KEYS"],
        "pcrt_files": ["PCRT_ATTRS"],
        "stage": ["run_assemble"],
    }
    for mod, names in homes.items():
        home = importlib.import_module(f"deepdraw.dataset.assemble.{mod}")
        for name in names:
            assert getattr(assemble, name) is getattr(home, name), (mod, name)
            assert name in assemble.__all__, name
    assert all(hasattr(assemble, name) for name in assemble.__all__)
