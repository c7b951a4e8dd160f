"""Tests of the RSA stage: RDMs, oracle similarity, CKA, t-SNE, decoding and run_rsa end to end."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from scipy.spatial.distance import correlation as corr_dist
from scipy.spatial.distance import pdist

from deepdraw import store
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.rsa import cka, decoding, rdm, stage

S_NAME = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"
T = 40  # frames of the synthetic files


# ------------------------------------------------------------------------------------------ RDMs
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-11), ("float32", 2e-5)])
def test_correlation_rdm_matches_pdist(dtype, tol):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4, 7, 2)) * 3 + 10  # large offset: tests the row centring
    want = pdist(X.reshape(30, -1), "correlation")
    got = rdm.correlation_rdm(X, dtype)
    np.testing.assert_allclose(got, want, atol=tol)


def test_layer_gram_subset_rdm_and_centred_gram():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((25, 40)) + rng.standard_normal(40) * 5
    G = rdm.layer_gram(X, "float64")
    sub = np.array([3, 0, 7, 8, 20, 11])
    np.testing.assert_allclose(G.rdm(sub), pdist(X[sub], "correlation"), atol=1e-12)
    Xc = X[sub] - X[sub].mean(0)
    np.testing.assert_allclose(G.centred(sub), Xc @ Xc.T, atol=1e-9)


def test_oracle_rdm_hand_case():
    labels = np.array([0, 0, 1, 2, 1])
    # pairs (0,1)(0,2)(0,3)(0,4)(1,2)(1,3)(1,4)(2,3)(2,4)(3,4)
    want = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0, 1], dtype=float)
    np.testing.assert_array_equal(rdm.oracle_rdm(labels), want)
    from rsatoolbox.rdm import get_categorical_rdm

    np.testing.assert_array_equal(get_categorical_rdm(labels).get_vectors()[0], want)


def test_kendall_tau_binary_matches_scipy_and_rsatoolbox():
    from rsatoolbox.rdm.compare import _tau_a

    rng = np.random.default_rng(2)
    for trial in range(4):
        b = rng.random(400) < 0.3
        x = rng.standard_normal(400) + 0.5 * b
        if trial % 2:
            x = np.round(x, 1)  # many ties
        want_b = scipy.stats.kendalltau(x, b.astype(float)).statistic
        assert rdm.kendall_tau_binary(x, b, "b") == pytest.approx(want_b, abs=1e-12)
        assert rdm.kendall_tau_binary(x, b, "a") == pytest.approx(_tau_a(x, b.astype(float)), abs=1e-12)
    with pytest.raises(DeepDrawError):
        rdm.kendall_tau_binary(x, b, "c")


def test_oracle_similarity_pearson_and_nan():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 5)
    X = rng.standard_normal((20, 30)) + np.eye(4)[labels] @ rng.standard_normal((4, 30))
    r = rdm.correlation_rdm(X)
    o = rdm.oracle_rdm(labels)
    s = rdm.oracle_similarity(r, labels)
    assert s["oracle_r"] == pytest.approx(1 - corr_dist(r, o), abs=1e-12)
    assert s["oracle_tau_b"] == pytest.approx(scipy.stats.kendalltau(r, o).statistic, abs=1e-12)
    assert s["oracle_r"] > 0.3
    X[2] = 1.0  # a constant sample: its pairs are NaN and left out
    s2 = rdm.oracle_similarity(rdm.correlation_rdm(X), labels)
    assert s2["n_pairs"] == r.size - 19 and np.isfinite(s2["oracle_r"])


def test_balanced_subset_without_replacement():
    labels = np.repeat(np.arange(20), 12)
    sub = rdm.balanced_subset(labels, 10, np.random.default_rng(0))
    assert sub.size == 200 and np.unique(sub).size == 200
    assert np.array_equal(labels[sub], np.repeat(np.arange(20), 10))
    small = np.r_[labels, [3]]
    small = small[small != 5][:-3]  # class 5 gone, some class smaller
    sub = rdm.balanced_subset(small, 12, np.random.default_rng(0))
    counts = np.bincount(small[sub])
    assert len(set(counts[counts > 0])) == 1 and np.unique(sub).size == sub.size


@pytest.mark.parametrize("n,size,nan", [(30, 30, False), (47, 10, True)])
def test_percentile_image_against_ranks(n, size, nan):
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(9)
    v = rdm.correlation_rdm(rng.standard_normal((n, 9)))
    if nan:
        v[[3, 50]] = np.nan
    ok = np.isfinite(v)
    pct = np.full(v.size, -1.0)
    pct[ok] = (scipy.stats.rankdata(v[ok]) - 0.5) / ok.sum() * 100
    sq = squareform(pct)
    sq[sq == -1] = np.nan
    np.fill_diagonal(sq, np.nan)
    e = np.linspace(0, n, min(n, size) + 1).astype(int)
    with warnings.catch_warnings():  # 1x1 diagonal blocks are empty
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.array(
            [
                [np.nanmean(sq[e[a] : e[a + 1], e[b] : e[b + 1]]) for b in range(len(e) - 1)]
                for a in range(len(e) - 1)
            ]
        )
    got = rdm.percentile_image(v, n, size=size)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1.0)  # grid lookup: about 1 percentile point


def test_percentile_image_and_rsatoolbox_object():
    rng = np.random.default_rng(4)
    r = rdm.correlation_rdm(rng.standard_normal((50, 9)))
    im = rdm.percentile_image(r, 50, size=10)
    assert im.shape == (10, 10) and 0 <= np.nanmin(im) and np.nanmax(im) <= 100
    obj = rdm.to_rsatoolbox({"a": r, "b": r}, np.arange(50) % 5)
    assert obj.n_rdm == 2 and obj.n_cond == 50


# ------------------------------------------------------------------------------------------- CKA
def _gram_cka(X, Y):
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K = H @ X @ X.T @ H
    L = H @ Y @ Y.T @ H
    return np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L)


def test_linear_cka_against_gram_formula_and_invariances():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6))
    Y = X @ rng.standard_normal((6, 9)) + 0.5 * rng.standard_normal((40, 9))
    want = _gram_cka(X, Y)
    assert cka.linear_cka(X, Y, "feature") == pytest.approx(want, abs=1e-12)
    assert cka.linear_cka(X, Y, "gram") == pytest.approx(want, abs=1e-12)
    assert cka.linear_cka(X, Y) == pytest.approx(want, abs=1e-12)
    Q, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    assert cka.linear_cka(X, 3.7 * Y @ Q) == pytest.approx(want, abs=1e-12)
    assert cka.linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    # features >> samples: the Gram path of the stage (LayerGram) gives the same value
    A = rng.standard_normal((20, 300)) + 2.0
    B = A[:, :150] * 2 + rng.standard_normal((20, 150))
    ga = cka.normalised_gram(rdm.layer_gram(A, "float64"))
    gb = cka.normalised_gram(rdm.layer_gram(B, "float64"))
    assert cka.cka_normalised(ga, gb) == pytest.approx(_gram_cka(A, B), abs=1e-6)


def test_check_same_samples():
    cka.check_same_samples(np.arange(5), np.arange(5), "a.h5", "b.h5")
    with pytest.raises(DeepDrawError, match="sample_index"):
        cka.check_same_samples(np.arange(5), np.array([0, 1, 2, 4, 3]), "a.h5", "b.h5")


# -------------------------------------------------------------------------------------- decoding
def _kinematics(n, T, rng):
    t = np.linspace(0, 2 * np.pi, T)
    phase = rng.uniform(0, 2 * np.pi, n)[:, None]
    amp = rng.uniform(2, 5, n)[:, None]
    ee = np.zeros((n, 3, T))
    ee[:, 0] = 40 + amp * np.cos(t + phase)
    ee[:, 1] = -10 + amp * np.sin(2 * t + phase)
    ee[:, 2] = rng.uniform(-5, 5, n)[:, None]
    plane = np.array([b"horizontal"] * n)
    return ee, plane, np.full(n, 2), np.full(n, T - 3)


def test_decoding_recovers_planted_signal():
    rng = np.random.default_rng(6)
    n = 60
    ee, plane, s, e = _kinematics(n, T, rng)
    kin = decoding.kinematic_targets(ee, plane, s, e, dt=0.015)
    centres = np.arange(T)
    z = np.stack(
        [
            kin.position[:, 0],
            kin.position[:, 1],
            kin.position[:, 2],
            np.cos(kin.angle),
            np.sin(kin.angle),
            kin.speed,
        ]
    )
    act = np.einsum("ku,knt->nut", rng.standard_normal((6, 12)), z)  # (n, 12 units, T)
    act = act.reshape(n, 3, 4, T).transpose(0, 1, 3, 2) + 1e-3 * rng.standard_normal((n, 3, T, 4))
    mask = decoding.trajectory_split(n, 0.2, np.random.default_rng(0))
    res = decoding.decode_layer(act.astype(np.float32), centres, kin, mask, alpha=1e-6)
    assert res["position_error_cm"] < 0.05
    assert res["position_r2"] > 0.999
    assert res["direction_error_deg"] < 2.0
    assert res["speed_r2"] > 0.99
    noise = decoding.decode_layer(rng.standard_normal(act.shape).astype(np.float32), centres, kin, mask)
    assert noise["direction_error_deg"] > 45 and noise["position_r2"] < 0.2


def test_split_is_by_trajectory():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(7)
    n, Tl = 20, 10
    mask = decoding.trajectory_split(n, 0.2, np.random.default_rng(1))
    assert mask.sum() == 4
    m2 = decoding.trajectory_split(n, 0.2, np.random.default_rng(1))
    assert np.array_equal(mask, m2)
    ee, plane, s, e = _kinematics(n, T, rng)
    kin = decoding.kinematic_targets(ee, plane, s, e, 0.015)
    centres = np.arange(Tl) * 4
    act = rng.standard_normal((n, 2, Tl, 3))
    # every frame of the test trajectories carries corrupted targets: they must not reach the fit
    kin.position[mask] = 1e6
    res = decoding.decode_layer(act, centres, kin, mask, alpha=1.0)
    train = np.flatnonzero(~mask)
    Xtr = act[train].transpose(0, 2, 1, 3).reshape(-1, 6)
    ytr = kin.position[train][:, :, centres].transpose(0, 2, 1).reshape(-1, 3)
    ref = Ridge(alpha=1.0).fit(Xtr, ytr)
    W, b = res["weights"]["position"]
    np.testing.assert_allclose(W, ref.coef_.T, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-8, atol=1e-8)
    assert res["n_train_points"] == 16 * Tl and res["n_test_points"] == 4 * Tl


# ----------------------------------------------------------------------------------------- t-SNE
def test_tsne_embedding_seeded():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((40, 15)) + np.repeat(np.eye(4), 10, axis=0) @ rng.standard_normal((4, 15)) * 4
    a = stage.tsne_embedding(X, pca_components=5, perplexity=40, n_iter=250, seed=3)
    b = stage.tsne_embedding(X, pca_components=5, perplexity=40, n_iter=250, seed=3)
    assert a.shape == (40, 2) and np.array_equal(a, b)


# a fresh process (scikit-learn not yet imported): the thread pools that the embedding's gradient runs on
_CHILD_TSNE_THREADS = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info
from deepdraw.rsa import tsne
assert "sklearn" not in sys.modules
seen = []
inner = tsne._embed
def spy(*a, **k):
    seen.extend((i["user_api"], i["filepath"], i["num_threads"]) for i in threadpool_info())
    return inner(*a, **k)
tsne._embed = spy
tsne.tsne_embedding(np.random.default_rng(0).standard_normal((30, 6)), pca_components=3, n_iter=250)
print(json.dumps(seen))
"""


def test_tsne_small_embedding_runs_on_one_thread_from_the_first_call():
    # the OpenMP runtime that scikit-learn's t-SNE gradient uses is loaded by its import: imported inside
    # the thread limit, the first embedding of a process ran on every core (10x slower on a busy machine)
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _CHILD_TSNE_THREADS], capture_output=True, text=True, check=True
    )
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(api == "openmp" and "scikit_learn" in path for api, path, _ in pools), pools
    assert all(n == 1 for _, _, n in pools), pools


# --------------------------------------------------------------------------- synthetic run inputs
N_TEST = 90
LAYERS = {"input": (5, T, 2), "spatial0": (3, T, 4), "temporal0": (3, 10, 4)}


def _write_test_file(path, rng):
    labels0 = np.arange(N_TEST) % 20
    ee, plane, _, _ = _kinematics(N_TEST, T, rng)
    store.write_artifact(
        path,
        {
            "endeffector_coords": ee.astype(np.float32),
            "joint_coords": rng.standard_normal((N_TEST, 4, T)).astype(np.float32),
            "muscle_coords": rng.standard_normal((N_TEST, 5, T)).astype(np.float32),
            "spindle_info": rng.standard_normal((N_TEST, 5, T, 2)).astype(np.float32),
            "label": labels0 + 1,  # 1..20 as the PCRT files
            "plane": plane,
        },
        kind="dataset_test",
    )
    return labels0, ee, plane


def _write_activations(path, name, task, trained, test, sample_index, seed, layers=LAYERS, class_signal=0.0):
    labels0, ee, plane = test
    rng = np.random.default_rng(seed)
    n = sample_index.size
    arrays = {
        "sample_index": sample_index,
        "label": labels0[sample_index],
        "plane": plane[sample_index],
        "start_id": np.full(n, 2),
        "end_id": np.full(n, T - 3),
        "kinematics/endeffector_coords": ee[sample_index].astype(np.float32),
        "kinematics/joint_coords": np.zeros((n, 4, T), np.float32),
    }
    shared = np.random.default_rng(99)  # the input layer is the same for every model
    for layer, shp in layers.items():
        g = shared if layer == "input" else rng
        a = g.standard_normal((n, *shp)).astype(np.float32)
        if layer == "temporal0" and class_signal:
            code = np.random.default_rng(5).standard_normal((20, *shp))
            a += class_signal * code[labels0[sample_index]].astype(np.float32)
        arrays[f"layers/{layer}"] = a
        step = T // shp[1]
        arrays[f"centres/{layer}"] = np.arange(shp[1]) * step
    store.write_artifact(
        path,
        arrays,
        kind="activations",
        attrs={"model_name": name, "task": task, "trained": trained, "layer_names": list(layers)},
    )
    return path


@pytest.fixture
def run_inputs(tmp_path):
    rng = np.random.default_rng(10)
    test_path = tmp_path / "test.h5"
    test = _write_test_file(test_path, rng)
    idx = np.sort(np.random.default_rng(11).permutation(N_TEST)[:80])
    paths = [
        _write_activations(tmp_path / "a.h5", f"{S_NAME}_1", "art", True, test, idx, 1, class_signal=3.0),
        _write_activations(tmp_path / "b.h5", f"{S_NAME}_1r", "art", False, test, idx, 2),
        _write_activations(
            tmp_path / "c.h5", "spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1", "tdt", True, test, idx, 3
        ),
    ]
    return test_path, paths, test, idx


def _cfg(tmp_path, **rsa):
    base = {"per_class": 3, "tsne_per_class": 2, "tsne_iter": 250, "pca_components": 5}
    base.update(rsa)
    return config_from_dict(
        {"run": {"out_dir": str(tmp_path / "run"), "seed": 4, "quiet": True}, "rsa": base}
    )


def test_run_rsa_end_to_end(tmp_path, run_inputs):
    test_path, paths, _, idx = run_inputs
    out = tmp_path / "rsa"
    figs = stage.run_rsa(_cfg(tmp_path), paths, test_path, out, quiet=True)
    for key in (
        "oracle_similarity",
        "cka_trained_vs_untrained",
        "cka_art_vs_tdt",
        "decoding",
        "rdms/inputs",
        "tsne/inputs",
    ):
        assert figs[key].exists(), key
    assert (out / f"rdms_{S_NAME}_1.png").exists()
    o = pd.read_csv(out / "rsa_oracle.csv")
    assert len(o) == 4 + 3 * 3
    assert set(o.loc[o.family == "input", "layer"]) == {"hand", "joints", "muscles", "spindle_info"}
    trained_t0 = o[(o.model == f"{S_NAME}_1") & (o.layer == "temporal0")].oracle_r.item()
    untrained_t0 = o[(o.model == f"{S_NAME}_1r") & (o.layer == "temporal0")].oracle_r.item()
    assert trained_t0 > 0.2 > abs(untrained_t0)
    c = pd.read_csv(out / "rsa_cka.csv")
    assert set(c.comparison) == {"trained_vs_untrained", "art_vs_tdt"}
    assert np.allclose(c[c.layer == "input"].cka, 1.0, atol=1e-5)  # identical inputs
    assert (c[c.layer != "input"].cka < 0.9).all()
    d = pd.read_csv(out / "rsa_decoding.csv")
    assert len(d) == 9 and d.position_error_cm.notna().all()
    assert {"oracle_r_mean", "oracle_r_std"} <= set(pd.read_csv(out / "rsa_oracle_summary.csv").columns)
    with h5py.File(out / stage.RESULTS_NAME) as f:
        assert f.attrs["kind"] == "rsa"
        assert json.loads(f.attrs["config"])["rsa"]["per_class"] == 3
        assert set(json.loads(f.attrs["inputs"])) == {"a.h5", "b.h5", "c.h5", "test.h5"}
        k = f["subset/positions"].shape[0]
        assert f[f"rdms/{S_NAME}_1/spatial0"].shape == (k * (k - 1) // 2,)
        assert np.array_equal(f["subset/sample_index"][()], idx[f["subset/positions"][()]])
        assert f[f"tsne/{S_NAME}_1/temporal0"].shape == (40, 2)
    # the RDM of the input layer equals pdist on the subset
    with h5py.File(paths[0]) as f, h5py.File(out / stage.RESULTS_NAME) as r:
        pos = r["subset/positions"][()]
        x = f["layers/input"][()][pos].reshape(pos.size, -1).astype(np.float64)
        np.testing.assert_allclose(r[f"rdms/{S_NAME}_1/input"][()], pdist(x, "correlation"), atol=1e-5)
    with pytest.raises(DeepDrawError, match="exists"):
        stage.run_rsa(_cfg(tmp_path), paths, test_path, out, quiet=True)


def test_run_rsa_minimal_options(tmp_path, run_inputs):
    """No test file, no t-SNE, no decoding, one requested layer, a bare RsaConfig."""
    from deepdraw.config import RsaConfig

    _, paths, _, _ = run_inputs
    rc = RsaConfig(per_class=2, layers=["temporal0"], tsne=False, decoding=False, gram_dtype="float64")
    figs = stage.run_rsa(rc, paths[:2], None, tmp_path / "m", quiet=True)
    o = pd.read_csv(tmp_path / "m" / "rsa_oracle.csv")
    assert list(o.layer) == ["temporal0", "temporal0"]
    assert set(figs) == {
        "oracle_similarity",
        "cka_trained_vs_untrained",
        f"rdms/{S_NAME}_1",
        f"rdms/{S_NAME}_1r",
    }
    assert not (tmp_path / "m" / "rsa_decoding.csv").exists()


def test_tsne_seeds_embed_only_the_models_of_those_seeds(tmp_path, run_inputs, caplog):
    """rsa.tsne_seeds = [2]: the seed-2 model's layers are embedded (as they are with every seed on),
    the seed-1 models' are not; RDMs and everything else cover every model."""
    test_path, paths, test, idx = run_inputs
    paths = [*paths, _write_activations(tmp_path / "d.h5", f"{S_NAME}_2", "art", True, test, idx, 4)]
    figs = stage.run_rsa(_cfg(tmp_path, tsne_seeds=[2]), paths, test_path, tmp_path / "two", quiet=True)
    stage.run_rsa(_cfg(tmp_path), paths, test_path, tmp_path / "all", quiet=True)
    assert {k for k in figs if k.startswith("tsne/")} == {"tsne/inputs", f"tsne/{S_NAME}_2"}
    assert {k for k in figs if k.startswith("rdms/")} >= {f"rdms/{S_NAME}_1", f"rdms/{S_NAME}_2"}
    with (
        h5py.File(tmp_path / "two" / stage.RESULTS_NAME) as two,
        h5py.File(tmp_path / "all" / stage.RESULTS_NAME) as a,
    ):
        assert set(two["tsne"]) == {"input", "label", "positions", f"{S_NAME}_2"}
        assert f"{S_NAME}_1" in a["tsne"] and f"{S_NAME}_1r" in a["tsne"]
        for layer in two[f"tsne/{S_NAME}_2"]:
            np.testing.assert_array_equal(
                two[f"tsne/{S_NAME}_2/{layer}"][()], a[f"tsne/{S_NAME}_2/{layer}"][()]
            )
    with pytest.raises(DeepDrawError, match="rsa.tsne_seeds"):
        _cfg(tmp_path, tsne_seeds=[-1])
    with caplog.at_level("WARNING", logger="deepdraw.rsa.stage"):
        figs = stage.run_rsa(_cfg(tmp_path, tsne_seeds=[7]), paths, test_path, tmp_path / "none", quiet=True)
    assert "matches no model's seed (1, 2)" in caplog.text
    assert {k for k in figs if k.startswith("tsne/")} == {"tsne/inputs"}


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_gram_on_cuda_matches_cpu():
    X = np.random.default_rng(0).standard_normal((300, 500)).astype(np.float32)
    a = rdm.layer_gram(X, "float32", "cpu").rdm()
    b = rdm.layer_gram(X, "float32", "cuda").rdm()
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_run_rsa_missing_layer(tmp_path, run_inputs):
    test_path, paths, _, _ = run_inputs
    with pytest.raises(DeepDrawError, match="temporal9"):
        stage.run_rsa(
            _cfg(tmp_path, layers=["spatial0", "temporal9"]), paths, test_path, tmp_path / "o", quiet=True
        )
    # layer listed in layer_names but its dataset is missing
    with h5py.File(paths[1], "a") as f:
        del f["layers/spatial0"]
    with pytest.raises(DeepDrawError, match="layers/spatial0"):
        stage.run_rsa(_cfg(tmp_path), paths, test_path, tmp_path / "o", quiet=True)


def test_run_rsa_mismatched_samples(tmp_path, run_inputs):
    test_path, paths, test, idx = run_inputs
    other = idx.copy()
    other[0] = np.setdiff1d(np.arange(N_TEST), idx)[0]
    bad = _write_activations(tmp_path / "d.h5", f"{S_NAME}_2", "art", True, test, np.sort(other), 4)
    with pytest.raises(DeepDrawError, match="sample_index"):
        stage.run_rsa(_cfg(tmp_path, tsne=False), [paths[0], bad], test_path, tmp_path / "o", quiet=True)


def test_parse_and_pair_models():
    assert stage.parse_model_name(f"{S_NAME}_1r") == ("spatial_temporal", S_NAME, "1")
    assert stage.parse_model_name("spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_2") == (
        "spatial_temporal",
        S_NAME,
        "2",
    )
    assert stage.parse_model_name("lstm_3_8-16-16_256_5") == ("lstm", "lstm_3_8-16-16_256", "5")
    assert stage.parse_model_name("spatiotemporal_4_8-8-32-64_7272") == (
        "spatiotemporal",
        "spatiotemporal_4_8-8-32-64_7272",
        "",
    )

    def mk(name, task, tr):
        return stage.ModelInfo(None, name, *stage.parse_model_name(name), task, tr, ["input"])

    ms = [
        mk(f"{S_NAME}_1", "art", True),
        mk(f"{S_NAME}_1r", "art", False),
        mk(f"{S_NAME}_2", "art", True),
        mk("spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1", "tdt", True),
    ]
    kinds = [(k, a.name, b.name) for k, a, b in stage.pair_models(ms)]
    assert ("trained_vs_untrained", f"{S_NAME}_1", f"{S_NAME}_1r") in kinds
    assert ("art_vs_tdt", f"{S_NAME}_1", "spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_1") in kinds
    # the TDT model falls back on the ART untrained control of its seed
    assert len(kinds) == 3
