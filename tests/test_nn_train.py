"""deepdraw.nn training, schedule, checkpoints/resume, streaming data, evaluation and activations
on tiny synthetic PCRT files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from nn_toy import N_CLASSES, TINY
from nn_toy import make_pcrt as _make_pcrt
from nn_toy import train_config as cfg

import deepdraw.nn.trainer as train_mod
from deepdraw.errors import DeepDrawError
from deepdraw.nn.data import BatchStream, check_pcrt
from deepdraw.nn.models import build_model, parse_model_name
from deepdraw.nn.targets import TargetSpec, layer_centres
from deepdraw.nn.train import (
    PlateauSchedule,
    evaluate,
    extract_activations,
    load_checkpoint,
    load_into,
    train_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_pcrt(path, n, seed, n_classes=N_CLASSES):
    """A toy PCRT file without the rot / shear latents."""
    return _make_pcrt(path, n, seed, n_classes, angles=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pcrt")
    return make_pcrt(d / "pcrt_train.h5", 80, 0), make_pcrt(d / "pcrt_test.h5", 40, 1)


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train_model(cfg(files, out, max_epochs=4))


# ---------------------------------------------------------------------------------------- training
def test_training_beats_chance(trained, files):
    m = trained.metrics
    assert m["test_accuracy"] >= 0.9  # chance 0.25
    assert m["finished"] and m["epochs_run"] >= 1 and m["n_train"] == 72 and m["n_val"] == 8
    assert m["model_name"] == TINY + "_1"
    on_disk = json.loads(trained.metrics_path.read_text())
    assert on_disk["test_accuracy"] == m["test_accuracy"]
    for row in on_disk["epochs"]:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time_s"} <= set(row)
    again = evaluate(trained.best_path, files[1])
    assert again["accuracy"] == pytest.approx(m["test_accuracy"])


def test_untrained_snapshot_is_initial_weights(trained):
    model, ck = load_checkpoint(trained.untrained_path)
    assert ck["kind"] == "untrained" and ck["trained"] is False and ck["model_name"] == TINY + "_1r"
    fresh = build_model(TINY, "art", seed=1)
    for k, v in fresh.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    best, _ = load_checkpoint(trained.best_path)
    assert not torch.equal(best.readout.weight, model.readout.weight)


def test_resume_equals_uninterrupted(files, tmp_path, caplog):
    with caplog.at_level("INFO", logger="deepdraw.nn.train"):
        full = train_model(cfg(files, tmp_path / "full", max_epochs=3, chunk_rows=10))
    assert "streaming" not in caplog.text  # the toy file fits the default budget: cached
    # "killed" after one epoch, then resumed; this run streams from HDF5 (no cache) with 10-row blocks,
    # the uninterrupted one trains from the cached tensor: the batches must be identical too
    part = dict(cache_gb=0.0, chunk_rows=10)
    with caplog.at_level("INFO", logger="deepdraw.nn.train"):
        train_model(cfg(files, tmp_path / "part", max_epochs=1, **part))
    # a run that cannot cache says so, with the size it needs and the budget
    assert f"streaming {files[0]} from disk every epoch" in caplog.text
    assert "the budget is 0.0 GiB" in caplog.text
    resumed = train_model(cfg(files, tmp_path / "part", max_epochs=3, **part))
    for name in ("last.pt", "best.pt", "untrained.pt"):
        a = torch.load(tmp_path / "full" / name, weights_only=True)
        b = torch.load(tmp_path / "part" / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), (name, k)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    for k, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    assert [r["train_loss"] for r in full.metrics["epochs"]] == [
        r["train_loss"] for r in resumed.metrics["epochs"]
    ]
    assert full.metrics["test_accuracy"] == resumed.metrics["test_accuracy"]
    assert not list((tmp_path / "part").glob("*.tmp*"))


def test_existing_run_is_not_overwritten(files, trained):
    with pytest.raises(DeepDrawError, match="already holds a training run"):
        train_model(cfg(files, trained.out_dir, resume=False))


# ---------------------------------------------------------------------------------------- schedule
def test_schedule_scripted_sequence():
    s = PlateauSchedule(1e-3, patience=2, divisor=4, max_plateaus=2)
    losses = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.75]
    actions = [s.step(v, e + 1) for e, v in enumerate(losses)]
    assert actions == ["improved", "improved", "wait", "decay", "improved", "wait", "stop"]
    assert s.lr == pytest.approx(2.5e-4) and s.stopped and s.best == 0.7 and s.best_epoch == 5
    # constant schedule (the original's effective behaviour) never decays or stops
    c = PlateauSchedule(1.0, patience=1, enabled=False)
    assert {c.step(v, e + 1) for e, v in enumerate([1, 2, 3, 4])} == {"improved", "wait"} and c.lr == 1.0
    r = PlateauSchedule(1.0)
    r.load_state_dict(s.state_dict())
    assert r.state_dict() == s.state_dict()


def test_schedule_min_epochs():
    # the original's 40-epoch rule: a final plateau before min_epochs decays again instead of stopping
    s = PlateauSchedule(1.0, patience=1, divisor=2, max_plateaus=2, min_epochs=4)
    acts = [s.step(v, e + 1) for e, v in enumerate([1.0, 2.0, 2.0, 2.0])]
    assert acts == ["improved", "decay", "decay", "stop"] and s.lr == 0.25


def test_training_drops_lr_and_reloads_best(files, tmp_path, monkeypatch):
    real = train_mod.evaluate_stream
    scripted = iter([1.0, 2.0, 2.0, 2.0, 2.0])

    def fake(model, stream, targets, quiet, desc, **kw):
        r = real(model, stream, targets, quiet, desc, **kw)
        if desc == "val":
            r["loss"] = next(scripted)
        return r

    monkeypatch.setattr(train_mod, "evaluate_stream", fake)
    # epoch 1 best; epoch 2 plateau (patience 1): lr / 4 and the epoch-1 weights are reloaded
    train_model(cfg(files, tmp_path / "a", max_epochs=2, patience=1))
    last = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == 2
    for k in best["state_dict"]:
        assert torch.equal(last["state_dict"][k], best["state_dict"][k]), k
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-3 / 4)
    # resumed: epoch 3 runs at lr/4 and the second plateau stops training
    scripted = iter([2.0, 2.0])
    res = train_model(cfg(files, tmp_path / "a", max_epochs=10, patience=1))
    acts = [(r["epoch"], r["action"], r["lr"]) for r in res.metrics["epochs"]]
    assert acts == [(1, "improved", 5e-3), (2, "decay", 5e-3), (3, "stop", pytest.approx(5e-3 / 4))]
    assert res.metrics["stopped_by"] == "schedule" and res.metrics["best_epoch"] == 1


# ------------------------------------------------------------------------------------------ TDT
def test_tdt_and_tdt_pv(files, tmp_path):
    r = train_model(cfg(files, tmp_path / "tdt", task="tdt", max_epochs=2, lr=1e-2))
    m = r.metrics
    model, ck = load_checkpoint(r.best_path)
    assert m["model_name"] == ck["model_name"] == "spatial_temporal_r_1_4_4_5233_1"
    np.testing.assert_array_equal(m["target_frames"], layer_centres(model)["temporal0"])
    assert np.isfinite(m["test_error_cm"]) and m["test_error_cm"] > 0
    assert evaluate(r.best_path, files[1])["error_cm"] == pytest.approx(m["test_error_cm"], rel=1e-5)

    r = train_model(cfg(files, tmp_path / "pv", task="tdt_pv", max_epochs=1, target_alignment="original"))
    ck = torch.load(r.best_path, weights_only=True)
    tg = TargetSpec.from_state(ck["targets"])
    assert (
        tg.task == "tdt_pv"
        and len(tg.scale_min) == 6
        and np.all(tg.scale_max[[0, 1, 3, 4]] > tg.scale_min[[0, 1, 3, 4]])
    )
    np.testing.assert_array_equal(tg.frames, np.arange(0, 320, 3)[:107])
    # the scaler maps the training rows (first 72) into [0, 1]; velocity is np.gradient at dt 0.015 s
    with h5py.File(files[0]) as f:
        ee = f["endeffector_coords"][:72]
    y = tg(ee)
    assert y.min() == pytest.approx(0, abs=1e-6) and y.max() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(
        tg.unscale(y)[:, :, 3:],
        np.gradient(ee, 0.015, axis=-1)[:, :, tg.frames].transpose(0, 2, 1),
        rtol=1e-4,
        atol=1e-3,
    )
    assert {"test_error_cm", "test_rmse_scaled"} <= set(r.metrics)


# -------------------------------------------------------------------------------------- streaming
def test_stream_blocks_cached_equals_streamed(files):
    tg = TargetSpec("art")
    kw = dict(shuffle=True, seed=3, chunk_rows=7, drop_last=False)
    streamed = BatchStream(files[0], (5, 60), 6, tg, **kw)
    cached = BatchStream(files[0], (5, 60), 6, tg, cache_bytes=2**30, **kw)
    assert cached.cached and not streamed.cached and len(streamed) == 10
    with h5py.File(files[0]) as f:
        x_all, y_all = f["spindle_info"][:], f["label"][:]
    for epoch in (1, 2):
        a, b = list(streamed.epoch(epoch)), list(cached.epoch(epoch))
        assert len(a) == len(b) == 10
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        xs = torch.cat([x for x, _ in a]).numpy()
        rows = [int(np.flatnonzero((x_all == r).all(axis=(1, 2, 3)))[0]) for r in xs]
        assert sorted(rows) == list(range(5, 60))  # every row once
        np.testing.assert_array_equal(torch.cat([y for _, y in a]).numpy(), y_all[rows])
        # contiguous blocks: consecutive rows come from the same 7-row block most of the time
        same_block = np.mean([(r - 5) // 7 == (s - 5) // 7 for r, s in zip(rows, rows[1:])])
        assert same_block > 0.8
    assert [r for r in torch.cat([x for x, _ in streamed.epoch(1)]).flatten()[:5]] != [
        r for r in torch.cat([x for x, _ in streamed.epoch(2)]).flatten()[:5]
    ]
    assert len(BatchStream(files[0], (0, 20), 6, tg, drop_last=True)) == 3


# ------------------------------------------------------------------------------------ activations
def test_activations_file_carries_provenance(trained, files, tmp_path):
    """Written through the artifact store: kind, code and library versions, inputs with the checkpoint's
    sha256, the caller's config and seeds, and the architecture of the model."""
    import deepdraw
    from deepdraw import store
    from deepdraw.nn.checkpoints import read_checkpoint

    out = extract_activations(
        trained.best_path, files[1], [1, 2], tmp_path / "act.h5", quiet=True,
        config={"activations": {"n_samples": 2}}, seeds={"seed": 3},
    )  # fmt: skip
    a = store.read_attrs(out)
    assert a["kind"] == "activations" and a["git_commit"] == store.git_commit()
    assert a["deepdraw_version"] == deepdraw.__version__ and a["versions"]["numpy"] == np.__version__
    assert a["versions"]["torch"] not in ("", "absent")
    assert a["inputs"] == {trained.best_path.name: store.file_sha256(trained.best_path)}
    assert a["checkpoint_sha256"] == a["inputs"][trained.best_path.name]
    assert a["config"] == {"activations": {"n_samples": 2}} and a["seeds"] == {"seed": 3}
    assert json.loads(a["spec"]) == read_checkpoint(trained.best_path)["spec"]
    assert a["model_name"] == TINY + "_1"
    assert not list(tmp_path.glob(".act.h5.tmp-*"))  # the temporary name is gone


def test_activations_file(trained, files, tmp_path):
    idx = [7, 2, 30, 2, 11]
    out = extract_activations(trained.best_path, files[1], idx, tmp_path / "act.h5", batch=2, quiet=True)
    model, _ = load_checkpoint(trained.best_path)
    with h5py.File(out) as f, h5py.File(files[1]) as src:
        assert f.attrs["model_name"] == TINY + "_1" and f.attrs["task"] == "art" and bool(f.attrs["trained"])
        assert list(f.attrs["layer_names"]) == ["input", "spatial0", "temporal0"]
        np.testing.assert_array_equal(f["sample_index"][:], idx)
        x = src["spindle_info"][:][idx]
        np.testing.assert_array_equal(f["layers/input"][:], x)
        assert f["layers/spatial0"].shape == (5, 13, 320, 4) and f["layers/temporal0"].shape == (
            5,
            13,
            107,
            4,
        )
        assert f["layers/temporal0"].dtype == np.float32
        np.testing.assert_array_equal(f["centres/temporal0"][:], 3 * np.arange(107) + 1)
        np.testing.assert_array_equal(f["centres/input"][:], np.arange(320))
        with torch.no_grad():
            logits, layers = model(torch.from_numpy(x), return_layers=True)
        np.testing.assert_allclose(
            f["layers/temporal0"][:], layers["temporal0"].numpy(), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(f["outputs"][:], logits.numpy(), rtol=1e-5, atol=1e-5)
        for k in ("label", "plane", "start_id", "end_id", "size", "speed"):
            np.testing.assert_array_equal(f[k][:], src[k][:][idx])
        np.testing.assert_array_equal(
            f["kinematics/endeffector_coords"][:], src["endeffector_coords"][:][idx]
        )
        assert "kinematics/joint_coords" in f and "rot" not in f
    assert not (tmp_path / "act.h5.tmp").exists()
    with pytest.raises(DeepDrawError, match="already exists"):
        extract_activations(trained.best_path, files[1], idx, out, quiet=True)
    # untrained control and an LSTM model object: recurrent_out is stored as (n, 1, 320, units)
    u = extract_activations(trained.untrained_path, files[1], [0, 1], tmp_path / "u.h5", quiet=True)
    with h5py.File(u) as f:
        assert not bool(f.attrs["trained"]) and f.attrs["model_name"].endswith("_1r")
    lstm = build_model(parse_model_name("lstm_1_4_8_2r"), "tdt", seed=2)
    p = extract_activations(lstm, files[1], [3, 4, 5], tmp_path / "lstm.h5", quiet=True)
    with h5py.File(p) as f:
        assert f["layers/recurrent_out"].shape == (3, 1, 320, 8) and f["layers/spatial0"].shape == (
            3,
            25,
            320,
            4,
        )
        np.testing.assert_array_equal(f["centres/recurrent_out"][:], np.arange(320))
        assert not bool(f.attrs["trained"]) and f["outputs"].shape == (3, 320, 3)


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs(files, trained, tmp_path):
    p = tmp_path / "nokey.h5"
    with h5py.File(p, "w") as f:
        f["label"] = np.zeros(4, np.int64)
    with pytest.raises(DeepDrawError, match=r"nokey\.h5 has no dataset 'spindle_info'"):
        train_model(cfg((p, None), tmp_path / "x"))
    p = tmp_path / "shape.h5"
    with h5py.File(p, "w") as f:
        f["spindle_info"] = np.zeros((4, 25, 320), np.float32)
    with pytest.raises(
        DeepDrawError,
        match=r"shape\.h5: dataset 'spindle_info' has shape \(4, 25, 320\); expected \(N, 25, 320, 2\)",
    ):
        check_pcrt(p)
    p = tmp_path / "labels.h5"
    with h5py.File(p, "w") as f:
        f["spindle_info"] = np.zeros((4, 25, 320, 2), np.float32)
        f["label"] = np.arange(1, 5) * 5
    with pytest.raises(DeepDrawError, match="expected 0..19"):
        check_pcrt(p, "art")
    with pytest.raises(DeepDrawError, match="does not exist"):
        check_pcrt(tmp_path / "missing.h5")
    p = tmp_path / "nan.h5"
    make_pcrt(p, 8, 0)
    with h5py.File(p, "r+") as f:
        f["spindle_info"][5, 3, 10, 1] = np.nan
    with pytest.raises(DeepDrawError, match=r"nan\.h5: dataset 'spindle_info' row 5 holds NaN"):
        evaluate(build_model(TINY), p)
    with pytest.raises(DeepDrawError, match="marks a regression model"):
        train_model(cfg(files, tmp_path / "r", model="spatial_temporal_r_1_4_4_5233"))
    with pytest.raises(DeepDrawError, match="did you mean 'spatiotemporal'"):
        train_model(cfg(files, tmp_path / "y", model="spatiotemporl_1_4_5252"))
    # a checkpoint loaded into another architecture or task
    with pytest.raises(
        DeepDrawError,
        match=r"best\.pt holds model 'spatial_temporal_1_4_4_5233_1', but the expected architecture is 'spatial_temporal_1_8_8_5233'",
    ):
        load_checkpoint(trained.best_path, expected="spatial_temporal_1_8_8_5233")
    with pytest.raises(DeepDrawError, match="expected architecture"):
        load_into(build_model("spatial_temporal_1_4_4_3232"), trained.best_path)
    with pytest.raises(DeepDrawError, match="task 'tdt'"):
        load_into(build_model(TINY, "tdt"), trained.best_path)
    load_checkpoint(trained.best_path, expected=TINY + "_5r")  # seed / untrained suffix do not matter
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepDrawError, match="bad.pt could not be read"):
        load_checkpoint(bad)
    with pytest.raises(DeepDrawError, match="expected 0..39"):
        extract_activations(trained.best_path, files[1], [0, 40], tmp_path / "z.h5", quiet=True)
