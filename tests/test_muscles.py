"""Muscle fiber lengths: the exact OpenSim engine, the fast tabulated engine and its builder."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest

from deepdraw.dataset import muscles as M
from deepdraw.dataset.muscles import tables as T
from deepdraw.errors import DeepDrawError
from deepdraw.paths import osim_model

CO = list(M.JOINTS)


@pytest.fixture(scope="module")
def exact():
    return M.ExactEngine()


@pytest.fixture(scope="module")
def fast():
    path = M.default_engine_path()
    if not path.exists():
        pytest.skip(f"{path} not built (deepdraw dataset muscles build)")
    return M.FastEngine.load(path)


@pytest.fixture(scope="module")
def trajectories():
    """20+ smooth dataset-like joint trajectories (pen paths at the start points, through the IK)."""
    joints, lens = M.synthetic_trajectories(24, seed=7)
    lens = np.minimum(lens, 70)  # keep OpenSim time small
    return joints[:, :70], lens


def original_procedure(joints_deg: np.ndarray) -> np.ndarray:
    """DeepDraw's make_muscle_config, literally (fresh model, setValue with assembly, equilibrate)."""
    import opensim

    model = opensim.Model(str(osim_model()))
    state = model.initSystem()
    model.equilibrateMuscles(state)
    mset = model.getMuscles()
    out = np.zeros((len(joints_deg), len(M.MUSCLES)))
    for t, q in enumerate(joints_deg):
        for i in range(4):
            model.getCoordinateSet().get(CO[i]).setValue(state, np.pi * (q[i] / 180))
        model.equilibrateMuscles(state)
        for k, name in enumerate(M.MUSCLES):
            out[t, k] = mset.get(name).getFiberLength(state) * 1000
    return out


# --------------------------------------------------------------------------------------------------
# exact engine
# --------------------------------------------------------------------------------------------------
def test_exact_equals_original_procedure(exact):
    rng = np.random.default_rng(0)
    a = rng.uniform(M.Q_MIN, M.Q_MAX)
    b = np.clip(a + rng.normal(0, 15, 4), M.Q_MIN, M.Q_MAX)
    s = np.linspace(0, 1, 10)[:, None]
    traj = a + (b - a) * s
    rand = rng.uniform(M.Q_MIN, M.Q_MAX, (6, 4))  # random postures, far apart
    for q in (traj, rand):
        ref = original_procedure(q)
        got = exact.lengths(q)
        assert got.shape == (len(q), 25)
        # same values up to OpenSim's own history effects (wrapping caches): ~1e-11 mm
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    lit = M.ExactEngine(procedure="original").lengths(rand)
    np.testing.assert_allclose(lit, original_procedure(rand), rtol=0, atol=1e-9)


def test_exact_shapes_and_padding(exact):
    rng = np.random.default_rng(1)
    q = rng.uniform(M.Q_MIN, M.Q_MAX, (2, 3, 4))
    q[1, 2] = np.nan  # padding after the end of trajectory 1
    out = exact.lengths(q, lengths=np.array([3, 2]))
    assert out.shape == (2, 3, 25)
    assert np.isnan(out[1, 2]).all() and np.isfinite(out[0]).all()
    np.testing.assert_allclose(out[1, :2], exact.lengths(q[1, :2]), atol=1e-9)
    sub = exact.fiber_subset(q[0], np.eye(3, 25, dtype=bool))
    assert (
        np.isfinite(sub[np.eye(3, 25, dtype=bool)]).all() and np.isnan(sub[~np.eye(3, 25, dtype=bool)]).all()
    )
    np.testing.assert_allclose(sub[0, 0], out[0, 0, 0], atol=1e-9)


def test_bad_inputs(tmp_path, exact):
    with pytest.raises(DeepDrawError, match="missing.osim: model file not found"):
        M.ExactEngine(tmp_path / "missing.osim")
    bad = tmp_path / "garbage.osim"
    bad.write_text("<OpenSimDocument><Model name='x'>this is not a model")
    with pytest.raises(DeepDrawError, match="garbage.osim"):
        M.ExactEngine(bad)
    xml = osim_model().read_text()
    renamed = xml.replace(
        '<Schutte1993Muscle_Deprecated name="TMIN">', '<Schutte1993Muscle_Deprecated name="TMINX">'
    )
    assert renamed != xml
    lacking = tmp_path / "no_tmin.osim"
    lacking.write_text(renamed)
    with pytest.raises(DeepDrawError, match=r"no_tmin\.osim: muscle 'TMIN' is missing"):
        M.ExactEngine(lacking)
    q = np.full((4, 4), 30.0)
    q[2, 1] = np.nan
    with pytest.raises(DeepDrawError, match="frame 2 holds NaN"):
        exact.lengths(q)
    with pytest.raises(DeepDrawError, match=r"shape \(n, T, 4\)"):
        exact.lengths(np.zeros((3, 5)))
    with pytest.raises(DeepDrawError, match="procedure"):
        M.ExactEngine(procedure="fast")


# --------------------------------------------------------------------------------------------------
# fast engine (the shipped artifact)
# --------------------------------------------------------------------------------------------------
def test_fast_matches_exact_on_dataset_trajectories(fast, exact, trajectories):
    joints, lens = trajectories
    assert len(joints) >= 20
    fig = M.validate_fast_engine(fast, joints, lens, exact=exact)
    assert fig["nan_mismatch"] == 0
    assert fig["length_err_p999_mm"] <= 0.1, fig
    assert fig["velocity_rel_rms"] <= 0.01, fig
    assert fig["fallback_frac"] < 0.9


def test_fast_handles_known_discontinuities(fast, exact):
    """Sweeps through the model's wrapping jumps: the fast engine must reproduce them (via fallback)."""
    sweeps = []
    for j, lo, hi in [(0, -60.0, -7.0), (1, 90.0, 108.0), (2, -75.0, -60.0)]:
        q = np.tile([50.0, 40.0, 20.0, 75.0], (60, 1))
        q[:, j] = np.linspace(lo, hi, 60)
        sweeps.append(q)
    q = np.stack(sweeps)
    ref = exact.lengths(q)
    got, mask = fast.lengths(q, return_fallback=True)
    np.testing.assert_allclose(got, ref, rtol=0, atol=0.1)
    jumps = np.abs(np.diff(ref, axis=1)) > 5.0  # (3, 59, 25): jumps between consecutive frames
    assert jumps.any(), "expected the sweeps to cross the model's wrapping discontinuities"
    i, t, m = np.nonzero(jumps)
    assert np.all(mask[i, t, m] | mask[i, t + 1, m])  # each jump is bracketed by an exact frame
    # without fallback, the flagged entries are NaN and the rest is still close
    raw = fast.lengths(q, fallback=False)
    assert np.isnan(raw[mask]).all()
    np.testing.assert_allclose(raw[~mask], ref[~mask], atol=0.1)


def test_path_fallback_equals_equilibrium_fallback(fast, exact):
    """The fallback's path length through the fiber map equals computeEquilibrium on flagged entries."""
    joints, lens = M.synthetic_trajectories(30, seed=11)
    q = joints[np.arange(joints.shape[1])[None, :] < lens[:, None]]
    # plus postures in the messy TMIN / LAT region (elv_angle < 0, shoulder_rot near 20) and the
    # BIClong / DELT1 steps
    rng = np.random.default_rng(3)
    extra = np.column_stack(
        [
            rng.uniform(-60, -5, 300),
            rng.uniform(20, 110, 300),
            rng.uniform(0, 20, 300),
            rng.uniform(0, 130, 300),
        ]
    )
    sweep = np.tile([50.0, 40.0, 20.0, 75.0], (120, 1))
    sweep[:60, 1] = np.linspace(90, 108, 60)
    sweep[60:, 2] = np.linspace(-75, -60, 60)
    q = np.concatenate([q, extra, sweep])
    _, _, need = fast.table_lengths(q)
    rows = np.flatnonzero(need.any(axis=1))
    assert rows.size > 200
    by_path = fast.fallback(q[rows], need[rows])
    by_eq = fast.fallback(q[rows], need[rows], mode="equilibrium")
    w = need[rows]
    assert np.array_equal(np.isnan(by_path[w]), np.isnan(by_eq[w]))
    assert np.isnan(by_path[~w]).all()
    err = np.abs(by_path - by_eq)[w & ~np.isnan(by_eq)]
    assert err.max() <= 0.01, err.max()
    for name in ("TMIN", "LAT1", "BIClong"):  # wrapping muscles must be among those checked
        assert w[:, M.MUSCLES.index(name)].any(), name
    # the exact engine's path lengths by Q vector equal those of Coordinate.setValue
    ref = exact.path_lengths(q[rows[:50]])
    got = exact.path_subset(q[rows[:50]], np.ones((50, len(M.MUSCLES)), dtype=bool))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    with pytest.raises(DeepDrawError, match="mode"):
        fast.fallback(q[:1], need[:1], mode="fast")


def test_fast_outside_table_falls_back(fast, exact):
    q = np.array([[125.0, 175.0, -88.0, 2.0], [-89.0, 1.0, 19.0, 129.0], [50.0, 40.0, 20.0, 75.0]])
    got, mask = fast.lengths(q, return_fallback=True)
    np.testing.assert_allclose(got, exact.lengths(q), atol=0.1)
    assert mask[0].any()  # far outside the dataset's region


def test_node_major_interpolation_equals_per_muscle_reference(fast):
    """The fast path (all muscles per node, shared centred weights) vs the per-(posture, muscle) loop."""
    n, code = fast.sh_n, fast.sh_code
    rng = np.random.default_rng(5)
    cells = np.array(np.unravel_index(np.arange(code.shape[1]), tuple(n - 1))).T  # (cells, 3)
    shifted = np.flatnonzero(((code != 13) & (code != M.FALLBACK)).any(axis=0))
    centred = np.flatnonzero((code == 13).all(axis=0))
    fallback = np.flatnonzero((code == M.FALLBACK).any(axis=0))
    assert len(shifted) and len(centred) and len(fallback)
    pick = np.concatenate([rng.choice(ix, 300) for ix in (shifted, centred, fallback)])
    q3 = fast.sh_origin + (cells[pick] + rng.random((len(pick), 3))) * fast.sh_step
    lo, hi = fast.sh_origin, fast.sh_origin + (n - 1) * fast.sh_step
    q3 = np.concatenate([q3, lo - 5.0 + rng.random((50, 3)) * (hi - lo + 10.0)])  # some off the grid
    ref, ref_bad = T.tricubic(fast.sh_table, n, code, fast.sh_origin, fast.sh_step, q3)
    got, bad = T.tricubic_nodes(fast._sh_window, n, code, fast.sh_origin, fast.sh_step, q3, chunk=97)
    np.testing.assert_array_equal(bad, ref_bad)
    assert (~bad).sum() > 500 and bad.any()
    np.testing.assert_allclose(got[~bad], ref[~bad], rtol=0, atol=1e-9)
    uses_shift = (code[:, np.ravel_multi_index(cells[pick[:300]].T, tuple(n - 1))].T != 13) & ~bad[:300]
    assert uses_shift.sum() > 50  # the one-by-one path was exercised


def test_known_values_replace_opensim_calls(exact):
    fe = M.FastEngine.load()
    fe._exact = exact
    joints, lens = M.dataset_trajectories(5, seed=9)
    full, mask = fe.lengths(joints, lens, return_fallback=True)
    t, f, m = np.nonzero(mask)
    assert len(t) > 10
    asked = []
    ask_opensim = fe.fallback

    def counting(q, which, **kw):
        asked.append(int(np.asarray(which).sum()))
        return ask_opensim(q, which, **kw)

    fe.fallback = counting
    half = slice(None, None, 2)
    got, got_mask = fe.lengths(
        joints, lens, return_fallback=True, known=(t[half], f[half], m[half], full[t, f, m][half])
    )
    np.testing.assert_array_equal(got, full)  # OpenSim's value of an entry does not depend on the others
    np.testing.assert_array_equal(got_mask, mask)  # the mask still marks the entries given from outside
    assert sum(asked) == len(t) - len(t[half])
    asked.clear()
    planted = full[t, f, m].copy()
    planted[0] = 1234.5
    trusted = np.argwhere(~mask & (np.arange(joints.shape[1])[None, :, None] < lens[:, None, None]))[0]
    extra = (np.r_[t, trusted[0]], np.r_[f, trusted[1]], np.r_[m, trusted[2]], np.r_[planted, -1.0])
    got = fe.lengths(joints, lens, known=extra)
    assert sum(asked) == 0  # every needed entry was listed
    assert got[t[0], f[0], m[0]] == 1234.5  # listed values are used as given
    assert got[tuple(trusted)] == full[tuple(trusted)]  # listed entries the tables give are ignored
    single = fe.lengths(
        joints[0, : lens[0]], known=(np.zeros(3, int), np.array([0, 1, 999]), np.array([0, 0, 0]), np.ones(3))
    )
    np.testing.assert_allclose(single, full[0, : lens[0]])  # unneeded or out-of-range entries: ignored


def test_fast_engine_model_check(fast, tmp_path):
    other = tmp_path / "other.osim"
    other.write_text(osim_model().read_text().replace("MoBL_ARMS_Upper_Limb_Model_OpenSim", "Other", 1))
    eng = M.FastEngine.load(fast.path, model_path=other)
    with pytest.raises(DeepDrawError, match="sha256 differs"):
        eng.exact()
    with pytest.raises(DeepDrawError, match="file not found"):
        M.FastEngine.load(tmp_path / "none.h5")
    notours = tmp_path / "x.h5"
    with h5py.File(notours, "w") as f:
        f.attrs["kind"] = "something"
    with pytest.raises(DeepDrawError, match="kind"):
        M.FastEngine.load(notours)


# --------------------------------------------------------------------------------------------------
# builder (a tiny table)
# --------------------------------------------------------------------------------------------------
def test_former_build_names_stay_importable_from_build():
    """build.py was one module; the public names it defined are still importable from it and are the
    objects of their new home (no copy)."""
    from deepdraw.dataset.muscles import build, coupling, grids, stencils

    for name in ("ELBOW_REF_DEG", "region_postures", "pair_keys"):
        assert getattr(build, name) is getattr(grids, name), name
        assert name in build.__all__, name
    assert M.build_fast_engine is build.build_fast_engine
    assert callable(build.write_engine) and "write_engine" in build.__all__
    assert all(hasattr(build, name) for name in build.__all__)
    assert build.muscle_split is coupling.muscle_split
    assert build.checked_shoulder_table is stencils.checked_shoulder_table


def test_build_tiny_engine(tmp_path, exact):
    joints, lens = M.synthetic_trajectories(2, seed=3)
    region = joints[0, : min(lens[0], 40)]
    out = tmp_path / "tiny.h5"
    M.build_fast_engine(
        out_path=out,
        region_joints=region,
        step_deg=5.0,
        elbow_step_deg=2.0,
        n_fiber_samples=300,
        workers=1,
        quiet=True,
    )
    from deepdraw.store import read_attrs

    attrs = read_attrs(out)
    assert attrs["kind"] == M.ENGINE_KIND
    assert osim_model().name in attrs["inputs"]
    stats = json.loads(attrs["build_stats"])
    assert stats["mixed_difference_max_mm"] < 1e-6
    eng = M.FastEngine.load(out)
    assert set(np.asarray(M.MUSCLES)[eng.el_idx]) >= {"ANC", "BRA", "BIClong", "TRIlong"}
    assert "ANC" not in set(np.asarray(M.MUSCLES)[eng.sh_idx])
    got, mask = eng.lengths(region, return_fallback=True)
    np.testing.assert_allclose(got, exact.lengths(region), atol=0.1)
    assert not mask.all()
    with pytest.raises(DeepDrawError, match=re.escape("refusing to overwrite")):
        M.build_fast_engine(out_path=out, region_joints=region)


# --------------------------------------------------------------------------------------------------
# level 2 (finer tables for the level-1 pairs without a trusted stencil)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def refined(tmp_path_factory, exact):
    from deepdraw.dataset.muscles.refine import refine_fast_engine

    # a sweep through the TMIN / LAT / TMAJ wrapping region, along elv_angle (level-1 fallback cells)
    q = np.tile([50.0, 40.0, 20.0, 75.0], (30, 1))
    q[:, 0] = np.linspace(-55.0, -10.0, 30)
    out = tmp_path_factory.mktemp("refine") / "refined.h5"
    refine_fast_engine(out_path=out, region_joints=q, ratio=4, workers=1, quiet=True)
    fe = M.FastEngine.load(out)
    fe._exact = exact
    return fe, q


def test_refine_serves_part_of_the_fallback_pairs(refined, exact):
    fe, q = refined
    assert fe.rf_key is not None and fe.rf_ratio == 4 and len(fe.rf_key) >= 10
    level1 = M.FastEngine.load(fe.path, level2=False)  # the same tables without level 2
    assert level1.rf_key is None
    from deepdraw.dataset.engines import get_engine

    cfg = {"engine": "fast", "model": "", "table": str(fe.path)}
    assert get_engine({**cfg, "level2": False}).rf_key is None
    assert get_engine(cfg).rf_key is not None  # [muscles] level2 = true by default
    # random postures inside the refined (cell, muscle) pairs' cells
    rng = np.random.default_rng(0)
    ncell = int(np.prod(fe.sh_n - 1))
    c3 = np.array(np.unravel_index(fe.rf_key % ncell, tuple(fe.sh_n - 1))).T
    c3 = np.repeat(c3, 12, axis=0)
    q3 = fe.sh_origin + fe.sh_step * (c3 + rng.random(c3.shape))
    post = np.concatenate([q3, rng.uniform(20.0, 110.0, (len(q3), 1))], axis=1)
    f1, _, need1 = level1.table_lengths(post)
    f2, _, need2 = fe.table_lengths(post)
    assert not (need2 & ~need1).any()  # level 2 only removes entries from OpenSim's share
    served = need1 & ~need2
    assert served.sum() >= 0.3 * need1.sum(), (served.sum(), need1.sum())
    np.testing.assert_array_equal(f2[~need1], f1[~need1])  # level-1 entries unchanged
    ref = exact.lengths(post)
    err = np.abs(f2 - ref)[served]
    assert np.quantile(err, 0.99) <= 0.06 and err.max() <= 0.2, (np.quantile(err, 0.99), err.max())
    # the sweep that chose the pairs: its level-2 entries match OpenSim too
    got, mask = fe.lengths(q, return_fallback=True)
    np.testing.assert_allclose(got, exact.lengths(q), atol=0.1)


def test_refine_values_equal_a_fresh_opensim_stencil(refined, exact):
    """Slow reference: OpenSim at the 64 fine nodes of the chosen stencil, Lagrange weights by hand."""
    fe, _ = refined
    r, ncell = fe.rf_ratio, int(np.prod(fe.sh_n - 1))
    rng = np.random.default_rng(1)
    checked = 0
    for p in rng.permutation(len(fe.rf_key)):
        k, cell = divmod(int(fe.rf_key[p]), ncell)
        codes = fe.rf_code[p]
        good = np.flatnonzero(codes != M.FALLBACK)
        if len(good) == 0:
            continue
        fc = int(rng.choice(good))
        j = np.array(np.unravel_index(fc, (r, r, r)))
        code = int(codes[fc])
        shift = np.array([code // 9, (code // 3) % 3, code % 3]) - 1
        t = rng.random(3)
        c3 = np.array(np.unravel_index(cell, tuple(fe.sh_n - 1)))
        q3 = fe.sh_origin + fe.sh_step * (c3 + (j + t) / r)
        first = j - 1 + shift  # fine node index (within the cell) of the stencil's first node
        grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
        nodes = fe.sh_origin + fe.sh_step * (c3 + (first + grid) / r)
        post = np.concatenate([nodes, np.full((64, 1), 90.0)], axis=1)
        m = int(fe.sh_idx[k])
        which = np.zeros((64, len(M.MUSCLES)), dtype=bool)
        which[:, m] = True
        vals = exact.path_subset(post, which)[:, m]
        w = [T.lagrange4(t[a] - shift[a]) for a in range(3)]
        want = sum(w[0][g[0]] * w[1][g[1]] * w[2][g[2]] * v for g, v in zip(grid, vals))
        got, bad = fe._shoulder(q3[None])
        assert not bad[0, k]
        assert abs(got[0, k] - want) < 1e-3, (p, got[0, k], want)
        checked += 1
        if checked == 8:
            break
    assert checked == 8


def test_refine_drops_pairs_with_isolated_failures(refined, tmp_path):
    """Pairs with 1..ratio failed fine cells (a grazed pocket) are left to OpenSim whole."""
    from deepdraw.dataset.muscles.refine import refine_fast_engine

    fe, q = refined
    out = tmp_path / "keep_all.h5"
    refine_fast_engine(fe.path, out, region_joints=q, ratio=4, isolated_max=0, workers=1, quiet=True)
    every = M.FastEngine.load(out)
    assert set(fe.rf_key) <= set(every.rf_key)
    failed = (every.rf_code == M.FALLBACK).reshape(len(every.rf_key), -1).sum(axis=1)
    dropped = ~np.isin(every.rf_key, fe.rf_key)
    np.testing.assert_array_equal(dropped, (failed >= 1) & (failed <= 4))
    assert dropped.any() and (~dropped).any()
    kept = np.searchsorted(every.rf_key, fe.rf_key)
    np.testing.assert_array_equal(every.rf_code[kept], fe.rf_code)  # the same stencils otherwise
    stats = json.loads(read_attrs_of(fe.path)["build_stats"])["refine"]
    assert stats["pairs_dropped_isolated_failures"] == int(dropped.sum())


def read_attrs_of(path):
    from deepdraw.store import read_attrs

    return read_attrs(path)


def test_refine_errors(refined, tmp_path):
    from deepdraw.dataset.muscles.refine import refine_fast_engine

    fe, q = refined
    with pytest.raises(DeepDrawError, match=re.escape("refusing to overwrite")):
        refine_fast_engine(fe.path, region_joints=q, workers=1)
    with pytest.raises(DeepDrawError, match="isolated_max=64"):
        refine_fast_engine(fe.path, tmp_path / "x.h5", isolated_max=64, region_joints=q, workers=1)
    with pytest.raises(DeepDrawError, match="ratio=1"):
        refine_fast_engine(fe.path, tmp_path / "x.h5", ratio=1, region_joints=q, workers=1)
    with pytest.raises(DeepDrawError, match="no finite posture"):
        refine_fast_engine(fe.path, tmp_path / "x.h5", region_joints=np.full((3, 4), np.nan), workers=1)
    assert not (tmp_path / "x.h5").exists()
    broken = tmp_path / "broken.h5"
    import shutil

    shutil.copy(fe.path, broken)
    with h5py.File(broken, "a") as f:
        del f["refine_code"]
    with pytest.raises(DeepDrawError, match="refine_code"):
        M.FastEngine.load(broken)
