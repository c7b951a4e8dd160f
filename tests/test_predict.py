"""``deepdraw predict``: the cross-validated ridge against sklearn, planted-truth populations, NWB Units."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from deepdraw import store
from deepdraw.cli import main
from deepdraw.config import Config
from deepdraw.encode.neural import read_neurons
from deepdraw.encode.predict import run_predict
from deepdraw.encode.ridge import block_folds, cv_explained_variance

DT = 0.015


@pytest.mark.parametrize("k", [5, 8])  # 30 features > 4 folds x 5 (rows projected); <= 4 x 8 (XᵀY projected)
def test_cv_explained_variance_equals_a_per_neuron_sklearn_loop(k):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    n, D, N, K = 900, 30, 5, 4
    x = rng.standard_normal((n, D)) @ rng.standard_normal((D, D))
    y = x[:, :4] @ rng.standard_normal((4, N)) + 3 * rng.standard_normal((n, N))
    fold = block_folds(np.zeros(n, int), np.arange(n), 50, K, 0)
    alphas = [1e-3, 1e-1, 1.0, 10.0, 100.0]
    ev, chosen = cv_explained_variance(x, y, fold, k, alphas)
    sse = np.zeros(N)
    for f in range(K):
        tr, te = fold != f, fold == f
        pca = PCA(k).fit(x[tr])
        ztr, zte = pca.transform(x[tr]), pca.transform(x[te])
        scale = np.linalg.eigvalsh(np.cov(ztr.T, bias=True) * tr.sum()).mean()
        for j in range(N):
            errs = []
            for a in alphas:  # inner CV: each other training fold once
                e = 0.0
                for h in np.unique(fold[tr]):
                    m = fold[tr] != h
                    r = Ridge(alpha=a * scale).fit(ztr[m], y[tr][m, j])
                    e += ((r.predict(ztr[~m]) - y[tr][~m, j]) ** 2).sum()
                errs.append(e)
            a = alphas[int(np.argmin(errs))]
            assert chosen[f, j] == a
            r = Ridge(alpha=a * scale).fit(ztr, y[tr, j])
            sse[j] += ((r.predict(zte) - y[te, j]) ** 2).sum()
    ref = 1 - sse / ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(ev, ref, atol=1e-9)


def test_block_folds_keep_blocks_together_and_balance_folds():
    mov = np.repeat([0, 1, 2], 400)
    fr = np.tile(np.arange(400), 3)
    f = block_folds(mov, fr, 100, 4, seed=3)
    for m in range(3):
        for b in range(4):
            assert len(set(f[(mov == m) & (fr // 100 == b)])) == 1
    assert sorted(np.bincount(f).tolist()) == [300, 300, 300, 300]


def _smooth(rng, shape, width=8):
    """Random signals smoothed in time (axis -2)."""
    x = rng.standard_normal(shape)
    k = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    return np.apply_along_axis(lambda v: np.convolve(v, k / k.sum(), mode="same"), -2, x) * 3


def synthetic_encode_dir(root, rng, n_mov=16, T=300, models=("A", "B")):
    """An encode folder with synthetic activations: per model, layers L1..L3 = tanh(previous @ W), L3 at
    half the frame rate; every movement in one window at frames [10, 10 + T)."""
    F, rows, ch = 320, 3, 10
    D = rows * ch
    store.write_artifact(
        root / "encoded.h5",
        {
            "movement": np.arange(n_mov),
            "first_frame": np.zeros(n_mov, int),
            "start_id": np.full(n_mov, 10),
            "end_id": np.full(n_mov, 10 + T),
            "masked": np.zeros(n_mov, np.int8),
            "jump": np.zeros(n_mov, np.int8),
            "movement_frames": np.full(n_mov, T),
            "movement_t0": np.arange(n_mov) * 10.0,
        },  # fmt: skip
        "encoded",
        attrs={"movement_names": json.dumps([f"f.csv:m{i}" for i in range(n_mov)]), "dt": DT},
    )
    layers = {}
    (root / "activations").mkdir()
    for name in models:
        h = _smooth(rng, (n_mov, F, D))
        acts = {"input": h}
        for la in ("L1", "L2", "L3"):
            w = rng.standard_normal((D, D)) * 1.5 / np.sqrt(D)
            h = np.tanh(h @ w)
            acts[la] = h
        layers[name] = acts
        with h5py.File(root / "activations" / f"{name}.h5", "w") as f:
            for la, a in acts.items():
                a = a.reshape(n_mov, F, rows, ch).transpose(0, 2, 1, 3)  # (n, rows, frames, ch)
                cen = np.arange(F)
                if la == "L3":
                    a, cen = a[:, :, 1::2], cen[1::2]
                f[f"layers/{la}"] = a.astype(np.float32)
                f[f"centres/{la}"] = cen
            f.attrs["model_name"], f.attrs["trained"] = name, name == "A"
            f.attrs["layer_names"] = list(acts)
    return layers


def planted(rng, z, n_neurons, base=2.0, gain=0.8):
    """Poisson counts driven linearly by the columns of ``z`` (rows, units); returns (counts, rates)."""
    w = rng.standard_normal((z.shape[1], n_neurons))
    drive = z @ w
    drive = (drive - drive.mean(0)) / drive.std(0)
    lam = np.maximum(base + gain * drive, 0.05)
    return rng.poisson(lam).astype(float), lam


@pytest.mark.parametrize("layer", ["L1", "L2", "L3"])  # L3: half the frame rate
def test_a_population_driven_by_one_layer_is_predicted_best_from_it(tmp_path, layer):
    rng = np.random.default_rng(11)
    T = 300
    acts = synthetic_encode_dir(tmp_path, rng, T=T)
    z = acts["A"][layer][:, 10 : 10 + T].reshape(-1, 30)
    y, lam = planted(rng, z, 60)
    np.save(tmp_path / "y.npy", y)
    cfg = Config()
    cfg.run.quiet = True
    cfg.predict.n_components = 30
    cfg.predict.block_frames = 150
    out = run_predict(tmp_path, tmp_path / "y.npy", cfg, tmp_path / "pred")
    summary = pd.read_csv(tmp_path / "pred" / "summary.csv")
    top = summary.sort_values("median").iloc[-1]
    assert (top["model"], top["layer"]) == ("A", layer)
    best = pd.read_csv(tmp_path / "pred" / "best_layers.csv")
    assert (best.loc[best["model"] == "A", "layer"] == layer).mean() >= 0.9
    # explained variance near the planted one: 1 - Σ(y - λ)² / Σ(y - ȳ)²
    ev_true = 1 - ((y - lam) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    with h5py.File(out, "r") as f:
        models, layers = json.loads(f.attrs["models"]), json.loads(f.attrs["layers"])
        ev = f["ev"][models.index("A"), layers["A"].index(layer)]
    assert abs(np.median(ev) - np.median(ev_true)) < 0.03
    assert np.median(ev_true) > 0.15  # the planted signal is substantial
    # the other model explains far less
    other = summary.loc[summary["model"] == "B", "median"].max()
    assert other < 0.5 * np.median(ev_true)
    assert (tmp_path / "pred" / "heatmap.png").stat().st_size > 1000
    assert (tmp_path / "pred" / "best_layer.png").stat().st_size > 1000


def test_nwb_units_with_trials_bin_on_the_movement_frames(tmp_path):
    from datetime import UTC, datetime

    from pynwb import NWBHDF5IO, NWBFile

    rng = np.random.default_rng(5)
    t0 = np.array([1.0, 5.0, 9.5])
    frames = np.array([100, 150, 80])
    nwb = NWBFile("units", "u", datetime(2026, 1, 1, tzinfo=UTC))
    for a, T in zip(t0, frames):
        nwb.add_trial(start_time=a, stop_time=a + T * DT)
    spikes = [np.sort(rng.uniform(0, 12, size=n)) for n in (300, 50, 900)]
    for s in spikes:
        nwb.add_unit(spike_times=s)
    with NWBHDF5IO(str(tmp_path / "u.nwb"), "w") as io:
        io.write(nwb)
    y, ids = read_neurons(tmp_path / "u.nwb", ["u.nwb:trial_0000", "u.nwb:trial_0001", "u.nwb:trial_0002"],
                          frames, t0, DT)  # fmt: skip
    assert y.shape == (frames.sum(), 3) and ids == ["0", "1", "2"]
    # reference: the frame whose 15 ms bin centred on it holds each spike, counted one by one
    ref = np.zeros_like(y)
    offs = np.concatenate([[0], np.cumsum(frames)])
    for u, s in enumerate(spikes):
        for t in s:
            for m, (a, T) in enumerate(zip(t0, frames)):
                k = int(np.floor((t - a) / DT + 0.5))
                if 0 <= k < T:
                    ref[offs[m] + k, u] += 1
    np.testing.assert_array_equal(y, ref)


def test_predict_cli_on_hdf5_neurons_and_a_length_mismatch(tmp_path, capsys):
    rng = np.random.default_rng(2)
    acts = synthetic_encode_dir(tmp_path, rng, n_mov=6, T=200, models=("A",))
    y, _ = planted(rng, acts["A"]["L2"][:, 10:210].reshape(-1, 30), 8)
    with h5py.File(tmp_path / "n.h5", "w") as f:
        for i in range(6):
            f[f"neurons/m{i}"] = y[i * 200 : (i + 1) * 200]
        f.attrs["neuron_names"] = json.dumps([f"n{j}" for j in range(8)])
    assert (
        main(["-q", "predict", str(tmp_path), str(tmp_path / "n.h5"), "--folds", "3", "--components", "10"])
        == 0
    )
    df = pd.read_csv(tmp_path / "predict" / "predict.csv")
    assert set(df["neuron"]) == {f"n{j}" for j in range(8)} and set(df["layer"]) == {
        "input",
        "L1",
        "L2",
        "L3",
    }
    np.save(tmp_path / "short.npy", y[:-5])
    assert (
        main(["-q", "predict", str(tmp_path), str(tmp_path / "short.npy"), "--out", str(tmp_path / "p2")])
        == 2
    )
    err = capsys.readouterr().err
    assert "short.npy" in err and "1200 frames" in err


def test_frames_take_the_most_central_window_and_masked_windows_are_left_out(tmp_path):
    from deepdraw.encode.predict import frame_map

    # movement 0: 500 frames in windows at 0 and 180 (overlap 140); movement 1: 100 frames, masked
    with h5py.File(tmp_path / "e.h5", "w") as f:
        for k, v in {
            "movement": [0, 0, 1], "first_frame": [0, 180, 0], "start_id": [0, 0, 110], "end_id": [320, 320, 210],
            "masked": [0, 0, 1], "movement_frames": [500, 100],
        }.items():  # fmt: skip
            f[k] = np.asarray(v)
        win, pos, mov, fr = frame_map(f)
    assert len(win) == 600 and (mov[:500] == 0).all() and (fr[500:] == np.arange(100)).all()
    assert (win[500:] == -1).all()  # masked
    # frames 180..319 are in both windows: the first half of the overlap (up to 249) from window 0
    assert (win[:250] == 0).all() and (win[251:500] == 1).all()
    assert (pos[300:500] == np.arange(300, 500) - 180).all()


def test_split_half_noise_ceiling_of_repeated_trials(tmp_path):
    from deepdraw.encode.neural import split_half_ceiling

    rng = np.random.default_rng(4)
    R, n, N = 8, 4000, 5
    signal = rng.standard_normal((n, N)) * np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    trials = signal + rng.standard_normal((R, n, N)) * 2.0
    # the repeatable share of the trial average's variance: var(s) / (var(s) + σ² / R)
    want = signal.var(0) / (signal.var(0) + 4.0 / R)
    np.testing.assert_allclose(split_half_ceiling(trials), want, atol=0.04)
    # through predict: repeats of a planted population -> a ceiling per neuron next to its EV
    acts = synthetic_encode_dir(tmp_path, rng, n_mov=6, T=200, models=("A",))
    _, lam = planted(rng, acts["A"]["L1"][:, 10:210].reshape(-1, 30), 6)
    with h5py.File(tmp_path / "rep.h5", "w") as f:
        f["repeats"] = rng.poisson(np.broadcast_to(lam, (4, *lam.shape))).astype(float)
    cfg = Config()
    cfg.run.quiet, cfg.predict.figures, cfg.predict.folds = True, False, 3
    run_predict(tmp_path, tmp_path / "rep.h5", cfg, tmp_path / "p")
    df = pd.read_csv(tmp_path / "p" / "predict.csv")
    best = df[df["layer"] == "L1"]
    assert best["noise_ceiling"].between(0.3, 1).all()
    assert (best["ev"] <= best["noise_ceiling"] + 0.05).all()  # no better than repeatable
