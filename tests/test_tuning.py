"""Tests of the single-unit tuning stage (deepdraw.tuning)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from deepdraw.config import TuningConfig
from deepdraw.errors import DeepDrawError
from deepdraw.tuning import (
    ActivationsFile,
    ArrayActivations,
    SuffStats,
    analyse_model,
    design_matrix,
    fit_all_units,
    frame_mask,
    get_model,
    label_selectivity,
    master_columns,
    ovr_auc,
    paired_tests,
    parse_model_name,
    pd_uniformity,
    plane_invariance,
    plane_levels,
    preferred_directions,
    run_tuning,
    score_from_stats,
    score_units,
    solve_normal,
    split_by_trajectory,
    wrap_angle,
)

T = 320


# ----------------------------------------------------------------------------- synthetic data


def straight_movements(
    n: int, seed: int, planes=(("horizontal", (-3.0, 0.0, 3.0)), ("vertical", (27.0, 30.0, 33.0)))
):
    """Straight-line minimum-jerk movements in a few planes; hand held still outside [start, end)."""
    rng = np.random.default_rng(seed)
    ee = np.zeros((n, 3, T))
    uv = np.zeros((n, 2, T))
    plane = []
    start = rng.integers(40, 120, n)
    end = start + rng.integers(90, 160, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    for i in range(n):
        o, levels = planes[i % len(planes)]
        lvl = levels[(i // len(planes)) % len(levels)]
        u0, v0 = rng.uniform(-5, 5, 2) + (30.0 if o == "horizontal" else 0.0, 0.0)
        d = rng.uniform(4, 12)
        tau = np.clip((np.arange(T) - start[i]) / (end[i] - 1 - start[i]), 0, 1)
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
        u = u0 + d * s * np.cos(phi[i])
        v = v0 + d * s * np.sin(phi[i])
        uv[i] = [u, v]
        if o == "horizontal":
            ee[i] = [u, v, np.full(T, lvl)]
        else:
            ee[i] = [np.full(T, lvl), u, v]
        plane.append(o)
    label = (np.floor((phi + np.pi) / (2 * np.pi) * 20).astype(int)) % 20
    return {"ee": ee, "uv": uv, "plane": np.array(plane), "start": start, "end": end, "label": label}


def synthetic_layers(kin, seed: int, tuned: bool = True):
    """input (n,4,T,2): length ~ position, velocity ~ r cos(theta - PD); spatial0 (n,2,T,4): direction,
    dead, noise, direction; temporal0 (n,2,107,2): its direction channels subsampled at centres 3j+1."""
    rng = np.random.default_rng(seed)
    uv = kin["uv"]
    n = uv.shape[0]
    vel = np.gradient(uv, axis=2)
    theta = np.arctan2(vel[:, 1], vel[:, 0])
    speed = np.hypot(vel[:, 0], vel[:, 1])
    moving = speed > 0
    pds = np.array([0.3, 1.5, -2.0, 2.8])
    inp = np.zeros((n, 4, T, 2), np.float32)
    s0 = np.zeros((n, 2, T, 4), np.float32)
    for m in range(4):
        a, b = np.cos(pds[m]), np.sin(pds[m])
        if tuned:
            inp[:, m, :, 0] = 50 + 2 * a * uv[:, 0] + 2 * b * uv[:, 1] + 0.01 * rng.standard_normal((n, T))
            inp[:, m, :, 1] = 10 * (a * vel[:, 0] + b * vel[:, 1]) + 1e-3 * rng.standard_normal((n, T))
        else:
            inp[:, m] = rng.standard_normal((n, T, 2))
    pd_unit = 0.7
    if tuned:
        s0[:, 0, :, 0] = np.where(moving, 1 + np.cos(theta - pd_unit), 0) + 0.01 * rng.standard_normal((n, T))
        s0[:, 1, :, 0] = np.where(moving, 1 + np.cos(theta + 2.0), 0) + 0.01 * rng.standard_normal((n, T))
        for r_, pd_ in enumerate((2.5, -0.5)):
            s0[:, r_, :, 3] = np.where(moving, 2 * np.cos(theta - pd_), 0) + 0.01 * rng.standard_normal(
                (n, T)
            )
    else:
        s0[:, :, :, 0] = rng.standard_normal((n, 2, T))
        s0[:, :, :, 3] = rng.standard_normal((n, 2, T))
    s0[:, :, :, 1] = 0.0  # dead units
    s0[:, :, :, 2] = rng.standard_normal((n, 2, T))  # noise units
    centres = 3 * np.arange(107) + 1
    t0 = np.ascontiguousarray(s0[:, :, centres][..., [0, 3]])
    return {"input": inp, "spatial0": s0, "temporal0": t0}, {"temporal0": centres}


def write_activations(path, kin, layers, centres, name, task="art", trained=True, kinematics=True):
    with h5py.File(path, "w") as f:
        f.attrs["model_name"] = name
        f.attrs["task"] = task
        f.attrs["trained"] = trained
        f.attrs["layer_names"] = list(layers)
        for k, v in layers.items():
            f[f"layers/{k}"] = v
            f[f"centres/{k}"] = centres.get(k, np.arange(v.shape[2]))
        if kinematics:
            f["kinematics/endeffector_coords"] = kin["ee"].astype(np.float32)
            f["kinematics/joint_coords"] = np.zeros((kin["ee"].shape[0], 4, T), np.float32)
        f["label"] = kin["label"]
        f["plane"] = np.array([p.encode() for p in kin["plane"]])
        f["start_id"] = kin["start"]
        f["end_id"] = kin["end"]
        f["sample_index"] = np.arange(kin["ee"].shape[0]) * 7
    return path


# ----------------------------------------------------------------------------- models


def _features(rng, n):
    vel = rng.uniform(0.1, 2.0, n)[:, None] * np.stack(
        [np.cos(a := rng.uniform(-np.pi, np.pi, n)), np.sin(a)], 1
    )
    acc = rng.normal(0, 1, (n, 2))
    pos = rng.uniform([20, -20], [50, 20], (n, 2))
    rel = pos - np.array([35.0, 0.0])
    return {f: master_columns(v) for f, v in (("vel", vel), ("acc", acc), ("ee", pos), ("eepolar", rel))}


def test_models_recover_parameters_and_noise_scores_zero():
    rng = np.random.default_rng(0)
    n = 4000
    cols = _features(rng, n)
    v, a, e, p = cols["vel"], cols["acc"], cols["ee"], cols["eepolar"]
    # true curves (coefficients in the models' column order, bias last)
    truth = {
        "dir": ((1.2, -0.7, 0.5), 0.5 + 1.2 * v[:, 3] - 0.7 * v[:, 4]),
        "speed": ((2.0, 0.3), 0.3 + 2.0 * v[:, 1]),
        "dirspeed": (
            (0.8 * np.cos(1.0), 0.8 * np.sin(1.0), 1.0),
            1.0 + 0.8 * v[:, 1] * np.cos(v[:, 2] - 1.0),
        ),
        "acc": ((-1.5, 4.0), 4.0 - 1.5 * a[:, 1]),
        "pos_cart": ((2.0, -1.0, 3.0), 3.0 + 2.0 * e[:, 5] - 1.0 * e[:, 6]),
        "pos_polar": (
            (0.4 * np.cos(-2.0), 0.4 * np.sin(-2.0), -1.0),
            -1.0 + 0.4 * p[:, 1] * np.cos(p[:, 2] + 2.0),
        ),
    }
    fset_cols = {"dir": v, "speed": v, "dirspeed": v, "acc": a, "pos_cart": e, "pos_polar": p}
    tr, te = np.arange(n) < 3200, np.arange(n) >= 3200
    for ttype, (coef_true, y) in truth.items():
        X = design_matrix(fset_cols[ttype], ttype)
        Y = np.stack([y, rng.standard_normal(n)], 1)  # a tuned unit and a noise unit
        coef = fit_all_units(X[tr], Y[tr])
        np.testing.assert_allclose(coef[:, 0], coef_true, atol=1e-9, err_msg=ttype)
        sc = score_units(X[te], Y[te], coef)
        assert sc["r2"][0] > 1 - 1e-9, ttype
        assert abs(sc["r2"][1]) < 0.02, ttype
        # the streaming path (sufficient statistics, normal equations) gives the same fit and scores
        m = get_model(ttype)
        s_tr = SuffStats.from_arrays(fset_cols[ttype][tr], Y[tr])
        s_te = SuffStats.from_arrays(fset_cols[ttype][te], Y[te])
        c2 = solve_normal(s_tr.xx[0], s_tr.xy[0], m.col_index)
        np.testing.assert_allclose(c2, coef, rtol=1e-7, atol=1e-9)
        sc2 = score_from_stats(int(s_te.n[0]), s_te.xx[0], s_te.xy[0], s_te.yy[0], m.col_index, c2)
        # rmse of an exact fit: the square root of the normal equations' cancellation, ~sqrt(eps) x the
        # signal's scale (1.5e-6 with the BLAS of 2026-12-02, 1e-7 before): compared to that scale
        scale = float(np.abs(Y[te, 0]).max())
        for k in ("r2", "rmse", "pcc"):
            atol = 1e-7 * scale if k == "rmse" else 1e-8
            np.testing.assert_allclose(sc2[k], sc[k], rtol=1e-6, atol=atol)
    # preferred direction of the direction model
    assert preferred_directions(np.array([1.2, -0.7, 0.5])) == pytest.approx(np.arctan2(-0.7, 1.2))


def test_all_units_solve_equals_per_unit_lstsq():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.standard_normal((600, 2)), np.ones(600)])
    Y = X @ rng.standard_normal((3, 37)) + rng.standard_normal((600, 37))
    coef = fit_all_units(X, Y)
    for u in range(Y.shape[1]):
        np.testing.assert_allclose(
            coef[:, u], np.linalg.lstsq(X, Y[:, u], rcond=None)[0], rtol=1e-12, atol=1e-12
        )
    # accumulated in random groups and blocks, then pooled: the same solution
    cols7 = np.column_stack([np.ones(600), X[:, 0], X[:, 1], np.zeros((600, 4))])
    s = SuffStats(4, 7, 37)
    g = rng.integers(0, 4, 600)
    for blk in np.array_split(np.arange(600), 5):
        s.add(g[blk], cols7[blk], Y[blk])
    pooled = s.select([0, 1, 2, 3])
    c = solve_normal(pooled.xx[0], pooled.xy[0], [1, 2, 0])
    np.testing.assert_allclose(c, coef[[0, 1, 2]], rtol=1e-9, atol=1e-10)


def test_label_selectivity_matches_sklearn_auc():
    rng = np.random.default_rng(2)
    n, K = 300, 5
    y = rng.integers(0, K, n)
    x = np.column_stack(
        [rng.standard_normal(n), (y == 2) * 1.0, np.round(rng.standard_normal(n), 1) + 0.5 * y]
    )
    auc = ovr_auc(x, y, K)
    for u in range(x.shape[1]):
        for k in range(K):
            assert auc[u, k] == pytest.approx(roc_auc_score(y == k, x[:, u]))
    res = label_selectivity(x[:200], y[:200], x[200:], y[200:], K)
    assert res["max"][1] == pytest.approx(1.0)  # indicator of class 2
    assert abs(res["macro"][0]) < 0.2  # noise
    # a unit whose value decreases with the class is oriented by the training split, not penalised
    res2 = label_selectivity(-x[:200], y[:200], -x[200:], y[200:], K)
    np.testing.assert_allclose(res2["auc"], res["auc"])


def test_label_selectivity_on_frames_matches_a_one_vs_rest_linear_svc():
    """The original's method (every frame a sample, OneVsRest LinearSVC per unit, macro AUC), converged,
    against ours; units ranked in blocks give the same numbers."""
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import label_binarize
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(5)
    n_traj, n_fr, K = 160, 12, 4
    y_traj = np.arange(n_traj) % K
    effect = np.array([[2.0, -1.0, 0.0, 3.0], [0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # (unit, class)
    x = effect[:, y_traj].T[:, None, :] + rng.standard_normal((n_traj, n_fr, 3))
    test = np.arange(n_traj) >= 120
    xf, yf, tf = x.reshape(-1, 3), np.repeat(y_traj, n_fr), np.repeat(test, n_fr)
    ours = label_selectivity(xf[~tf], yf[~tf], xf[tf], yf[tf], K)
    blocked = label_selectivity(xf[~tf], yf[~tf], xf[tf], yf[tf], K, unit_block=1)
    np.testing.assert_array_equal(ours["auc"], blocked["auc"])
    for u in (0, 1):
        svc = OneVsRestClassifier(LinearSVC(max_iter=100_000)).fit(xf[~tf][:, [u]], yf[~tf])
        ref = roc_auc_score(label_binarize(yf[tf], classes=range(K)), svc.decision_function(xf[tf][:, [u]]))
        assert ours["macro"][u] == pytest.approx(2 * (ref - 0.5), abs=1e-9)
    assert abs(ours["macro"][2]) < 0.1  # no class effect


def test_label_samples_frames_in_the_stage():
    kin = straight_movements(24, 3)
    layers, centres = synthetic_layers(kin, 3)
    act = ArrayActivations(layers, kin["ee"], kin["label"], kin["plane"], kin["start"], kin["end"], centres)
    traj = analyse_model(act, TuningConfig(), quiet=True)
    fr = analyse_model(act, TuningConfig(label_samples="frames"), quiet=True)
    capped = analyse_model(act, TuningConfig(label_samples="frames", label_max_points=24 * 10), quiet=True)
    for a, b, c in zip(traj.layers, fr.layers, capped.layers):
        np.testing.assert_array_equal(a.label_dead, b.label_dead)  # dead units stay dead (NaN)
        assert np.isnan(b.label_macro[b.label_dead]).all() and np.isfinite(b.label_macro[~b.label_dead]).all()
        assert not np.allclose(b.label_macro[~b.label_dead], c.label_macro[~c.label_dead])  # fewer frames
    # static frames (before and after the movement) carry no label information: frames score lower
    s0 = 1  # spatial0: direction-tuned channel 0 of both rows
    assert np.nanmax(fr.layers[s0].label_macro) < np.nanmax(traj.layers[s0].label_macro)
    with pytest.raises(DeepDrawError, match="tuning.label_samples"):
        analyse_model(act, TuningConfig(label_samples="points"), quiet=True)


# ----------------------------------------------------------------------------- summaries


def test_pd_uniformity_hand_made():
    centres = -np.pi + (np.arange(18) + 0.5) * 2 * np.pi / 18
    assert pd_uniformity(centres) == pytest.approx(0.0)
    assert pd_uniformity(np.full(9, 0.1)) == pytest.approx(2 * 17 / 18)
    # 2 bins with 3 units each: |3-1/3|*2 + |0-1/3|*16 = 6 - 2/3 + 16/3 -> /6
    assert pd_uniformity(np.r_[np.full(3, 0.05), np.full(3, 2.0)]) == pytest.approx(
        (2 * (3 - 1 / 3) + 16 / 3) / 6
    )
    assert np.isnan(pd_uniformity(np.array([])))


def test_plane_invariance_hand_made():
    levels = np.array([-6.0, -3.0, 0.0, 3.0, 6.0])
    base = np.array([0.0, 1.0, -1.0, 3.0, 2.5, -3.0])
    offsets = np.array([0.3, -0.2, 0.0, 0.1, 0.5])
    pd_ = wrap_angle(base[None, :] + offsets[:, None])
    tuned = np.ones((5, 6), bool)
    tuned[3, :4] = False  # only 2 units tuned in the plane z=3 -> excluded
    tuned[0, 5] = False
    inv = plane_invariance(pd_, tuned, levels, reference=0.0, min_units=3)
    assert inv.reference == 2
    np.testing.assert_allclose(inv.per_plane, [0.3, 0.2, np.nan, np.nan, 0.5], atol=1e-12)  # wraps at +-pi
    assert inv.n_units.tolist() == [5, 6, 6, 2, 6]
    assert inv.mad == pytest.approx((0.3 + 0.2 + 0.5) / 3)
    # the reference plane untuned everywhere -> nothing to compare
    t2 = tuned.copy()
    t2[2] = False
    assert np.isnan(plane_invariance(pd_, t2, levels, 0.0).mad)


def test_split_is_by_trajectory_seeded_and_stratified():
    rng = np.random.default_rng(3)
    sidx = rng.permutation(1000)[:200] * 3
    level = np.repeat([0.0, 3.0, 6.0, 9.0], 50)
    a = split_by_trajectory(sidx, level, 0.2, seed=42)
    assert a.sum() == 40 and all(a[level == lv].sum() == 10 for lv in np.unique(level))
    perm = rng.permutation(200)  # same samples in another order -> the same trajectories held out
    b = split_by_trajectory(sidx[perm], level[perm], 0.2, seed=42)
    assert set(sidx[perm][b]) == set(sidx[a])
    assert not np.array_equal(split_by_trajectory(sidx, level, 0.2, seed=7), a)


def test_frame_mask_trimming():
    centres = 3 * np.arange(107) + 1
    start, end = np.array([0]), np.array([320])
    fixed = frame_mask(centres, 320, start, end, "all", 32, "fixed")[0]
    orig = frame_mask(centres, 320, start, end, "all", 32, "original")[0]
    tcoff = int((centres <= 32).sum())
    assert fixed.sum() == 107 - 2 * tcoff and not fixed[-1]
    assert orig.sum() == 107 - tcoff and orig[-1]  # the original bug: only the start trimmed
    mv = frame_mask(np.arange(320), 320, np.array([100]), np.array([150]), "movement", 32, "fixed")[0]
    assert np.flatnonzero(mv).tolist() == list(range(100, 150))


def test_plane_levels_and_model_names():
    ee = np.zeros((4, 3, 10))
    ee[:, 2] = np.array([0.0, 0.01, 3.0, 2.98])[:, None]
    levels, idx = plane_levels(ee, "horizontal")
    assert levels.tolist() == [0.0, 2.99] and idx.tolist() == [0, 0, 1, 1]
    ee[0, 2, 5] = 2.0
    with pytest.raises(DeepDrawError, match="varies"):
        plane_levels(ee, "horizontal")
    p = parse_model_name("spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_3r")
    assert p == {"arch": "spatial_temporal_4_8-16-16-32_32-32-64-64_7293", "seed": 3, "untrained": True}


def test_paired_tests_bonferroni():
    rows = []
    for seed in range(5):
        for li in range(3):
            for trained, off in ((True, 0.2 + 0.01 * seed), (False, 0.0)):
                rows.append({"arch": "a", "task": "art", "trained": trained, "seed": seed, "layer": f"l{li}",
                             "layer_index": li, "orientation": "horizontal", "tuning_type": "dir",
                             "metric": "q90", "value": 0.5 + li * 0.01 * seed + off})  # fmt: skip
    df = paired_tests(pd.DataFrame(rows))
    assert len(df) == 3 and (df.n_pairs == 5).all()
    from scipy.stats import ttest_rel

    va = [0.5 + 0.2 + 0.01 * s for s in range(5)]
    vb = [0.5] * 5
    r0 = df[df.layer_index == 0].iloc[0]
    assert r0.t == pytest.approx(ttest_rel(va, vb).statistic)
    assert r0.p_bonferroni == pytest.approx(min(1, 3 * ttest_rel(va, vb).pvalue))


def test_paired_tests_constant_differences_are_undefined_not_significant():
    """Differences equal in every seed up to rounding (a metric with few discrete values): scipy's t
    would be ~1e15 from the float noise; the test is undefined instead and leaves the Bonferroni count."""
    rows = []
    for seed in (1, 2, 3):
        for li, (a, b) in enumerate([(11 / 6, 23 / 18), (0.4 + 0.1 * seed, 0.1 * seed * 1.5)]):
            if li == 0:  # the same difference 5/9, reached through different sums per seed (float noise)
                a, b = a + 0.3 * seed, b + 0.3 * seed
            for trained, v in ((True, a), (False, b)):
                rows.append({"arch": "a", "task": "art", "trained": trained, "seed": seed, "layer": f"l{li}",
                             "layer_index": li, "orientation": "horizontal", "tuning_type": "dir",
                             "metric": "uniformity", "value": v})  # fmt: skip
    d = [(11 / 6 + 0.3 * s) - (23 / 18 + 0.3 * s) for s in (1, 2, 3)]
    assert np.std(d) > 0  # the noise that made t explode
    df = paired_tests(pd.DataFrame(rows)).set_index("layer_index")
    assert np.isnan(df.loc[0, "t"]) and np.isnan(df.loc[0, "p"]) and not df.loc[0, "significant"]
    from scipy.stats import ttest_rel

    ref = ttest_rel([0.4 + 0.1 * s for s in (1, 2, 3)], [0.15 * s for s in (1, 2, 3)])
    assert df.loc[1, "t"] == pytest.approx(ref.statistic)
    assert df.loc[1, "p_bonferroni"] == pytest.approx(ref.pvalue)  # one finite test: no correction


# ----------------------------------------------------------------------------- stage


def test_bad_inputs(tmp_path):
    kin = straight_movements(12, 0)
    layers, centres = synthetic_layers(kin, 0)
    p = write_activations(tmp_path / "nokin.h5", kin, layers, centres, "m_1", kinematics=False)
    with pytest.raises(DeepDrawError, match="kinematics/endeffector_coords"):
        ActivationsFile(p)
    with pytest.raises(DeepDrawError, match="kinematics/endeffector_coords"):
        run_tuning(TuningConfig(), [p], tmp_path / "out", quiet=True)
    hor = {k: v[kin["plane"] == "horizontal"] for k, v in kin.items()}
    lay = {k: v[kin["plane"] == "horizontal"] for k, v in layers.items()}
    act = ArrayActivations(lay, hor["ee"], hor["label"], hor["plane"], hor["start"], hor["end"], centres)
    with pytest.raises(DeepDrawError, match="no 'vertical' sample"):
        analyse_model(act, TuningConfig(orientations=["vertical"]), quiet=True)
    with pytest.raises(DeepDrawError, match="z = 12 cm"):
        analyse_model(act, TuningConfig(levels_horizontal=[0.0, 12.0]), quiet=True)
    bad = dict(layers)
    bad["input"] = bad["input"].copy()
    bad["input"][3, 0, 5, 0] = np.nan
    act2 = ArrayActivations(bad, kin["ee"], kin["label"], kin["plane"], kin["start"], kin["end"], centres)
    with pytest.raises(DeepDrawError, match="NaN"):
        analyse_model(act2, TuningConfig(figures=False), quiet=True)


def test_run_tuning_end_to_end(tmp_path):
    kin = straight_movements(90, 5)
    paths = []
    for seed in (1, 2):
        for trained in (True, False):
            layers, centres = synthetic_layers(kin, seed, tuned=trained)
            name = f"spatial_temporal_2_4-4_4-4_7293_{seed}{'' if trained else 'r'}"
            paths.append(
                write_activations(tmp_path / f"{name}.h5", kin, layers, centres, name, trained=trained)
            )
    cfg = TuningConfig(chunk=32, figures=False)
    out = run_tuning(cfg, paths, tmp_path / "tuning", quiet=True)

    # spindle-like input: length codes position, velocity codes direction x speed
    assert out["spindle_length_position_median"] > 0.99
    assert out["spindle_velocity_dirspeed_median"] > 0.99
    assert 0.2 < out["spindle_velocity_direction_median"] < 1.0
    assert out["spindle_length_direction_median"] < out["spindle_length_position_median"]
    # 15 trajectories per plane: some length units pass R2 > 0.2 by chance in a plane, so only finite
    assert np.isfinite(out["spindle_pd_invariance_horizontal"])
    assert np.isfinite(out["spindle_pd_invariance_vertical"])
    assert set(out["label_selectivity_final"]) == {p.stem for p in paths}

    assert out["results"].exists() and all(p.exists() for p in out["csv"].values())
    summ = pd.read_csv(out["csv"]["summary"])
    s0 = summ[(summ.model == paths[0].stem) & (summ.layer == "spatial0") & (summ.orientation == "horizontal")]
    d = s0[s0.tuning_type == "dir"].iloc[0]
    assert (
        d.n_dead == 2 and d.n_tuned == 4 and d.fraction_tuned == pytest.approx(4 / 6)
    )  # dead apart, noise untuned
    dirs = pd.read_csv(out["csv"]["directions"])
    t0 = dirs[(dirs.model == paths[0].stem) & (dirs.layer == "temporal0")]
    assert (t0.invariance < 0.05).all() and (t0.n_dir_tuned == 4).all()
    stats = pd.read_csv(out["csv"]["stats"])
    assert set(stats.comparison) == {"trained_vs_untrained"}  # one task only: no ART vs TDT
    q = stats[(stats.metric == "q90") & (stats.tuning_type == "dir") & (stats.orientation == "horizontal")]
    assert (q.n_pairs == 2).all() and q.layer.tolist() == ["input", "spatial0", "temporal0"]

    with h5py.File(out["results"]) as f:
        assert f.attrs["kind"] == "tuning"
        g = f[f"models/{paths[0].stem}/spatial0/horizontal"]
        assert g["metrics"].shape == (8, 16, 2, 3) and g["plane_pd"].shape == (3, 8)
        assert g["curve_n"][()].sum() == g["n_points"][0].sum()  # every velocity point in one direction bin
        pd_fit = g["pd"][0]
        assert wrap_angle(pd_fit - 0.7) == pytest.approx(0.0, abs=0.02)
    with pytest.raises(DeepDrawError, match="exists"):
        run_tuning(cfg, paths, tmp_path / "tuning", quiet=True)
    # figures: 3 per model (scores, PD histograms, tuning curves) + 3 per architecture
    figs = run_tuning(TuningConfig(chunk=32), paths[:1], tmp_path / "figs", quiet=True)["figures"]
    assert len(figs) == 6 and all(p.suffix == ".png" and p.stat().st_size > 1000 for p in figs)


def test_frame_options_and_config_checks():
    kin = straight_movements(24, 3)
    layers, centres = synthetic_layers(kin, 3)
    act = ArrayActivations(layers, kin["ee"], kin["label"], kin["plane"], kin["start"], kin["end"], centres)
    mv = analyse_model(act, TuningConfig(), quiet=True)
    al = analyse_model(act, TuningConfig(window="all", trim="original"), quiet=True)
    for a, b in zip(mv.layers, al.layers):
        pa, pb = a.orient["horizontal"].n_points, b.orient["horizontal"].n_points
        assert (pb[2] > pa[2]).all()  # static frames enter the position fits ...
        assert (pb[0] - pa[0] < 0.1 * pa[0]).all()  # ... but hardly the velocity fits (no direction)
    with pytest.raises(DeepDrawError, match="tuning.window"):
        analyse_model(act, TuningConfig(window="moving"), quiet=True)
    with pytest.raises(DeepDrawError, match="tuning.test_fraction"):
        analyse_model(act, TuningConfig(test_fraction=1.0), quiet=True)


def test_group_figures_mark_the_significant_layers():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from deepdraw.tuning.figures import _plot_groups

    groups = pd.DataFrame(
        [
            {"task": task, "trained": tr, "layer_index": li, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
            for task, tr in (("art", True), ("tdt", True), ("art", False))
            for li in range(4)
        ]
    )
    stats = pd.DataFrame(
        [
            {"comparison": "art_vs_tdt", "task": "art/tdt", "layer_index": 2, "significant": True},
            {"comparison": "art_vs_tdt", "task": "art/tdt", "layer_index": 3, "significant": False},
            {"comparison": "trained_vs_untrained", "task": "art", "layer_index": 1, "significant": True},
        ]
    )
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    _plot_groups(ax, groups, "x", stats)
    marks = sorted((t.get_text(), t.get_position()[0]) for t in ax.texts)
    assert marks == [("*", 2), ("+", 1)]
    assert len(ax.get_legend_handles_labels()[1]) == 3
