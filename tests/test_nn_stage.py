"""Stage-3 orchestration on a tiny synthetic PCRT pair: run_train (summary, untrained controls, skip on
rerun), run_activations (shared rows, names, layout), the CLI commands, bad input (the search:
test_search.py)."""

from __future__ import annotations

import json
import re
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from nn_toy import make_pcrt

from deepdraw import store
from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.nn.models import build_model
from deepdraw.nn.stage import (
    SUMMARY_COLUMNS,
    activation_indices,
    activation_paths,
    planned_runs,
    run_activations,
    run_evaluate,
    run_train,
    train_output_paths,
)
from deepdraw.nn.train import load_checkpoint
from deepdraw.paths import RunPaths

TINY = "spatial_temporal_1_4_4_5233"  # spatial0 (13, 320, 4) -> temporal0 (13, 107, 4)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_cfg(root, **sections):
    data = {
        "run": {"out_dir": str(root), "seed": 5, "quiet": True},
        "parallel": {"mode": "sync"},
        "train": {
            "models": [TINY],
            "tasks": ["art", "tdt"],
            "seeds": [1, 2],
            "max_epochs": 2,
            "lr": 5e-3,
            "batch_size": 16,
            "device": "cpu",
        },
        "activations": {"n_samples": 20, "batch_size": 8},
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


def write_toml(path, cfg_dict):
    lines = []
    for sec, values in cfg_dict.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    rp = RunPaths(root)
    rp.dataset.mkdir(parents=True)
    make_pcrt(rp.pcrt_train, 120, 0)
    make_pcrt(rp.pcrt_test, 48, 1)
    cfg = make_cfg(root)
    t0 = time.perf_counter()
    table = run_train(cfg)
    return cfg, table, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ train
def test_summary_table(run):
    cfg, table, _ = run
    on_disk = pd.read_csv(RunPaths(cfg.out_dir).models / "summary.csv")
    assert list(on_disk.columns) == SUMMARY_COLUMNS
    assert len(on_disk) == len(table) == 2 * 2 * 2  # tasks x seeds x (trained, untrained)
    assert set(on_disk["model"]) == {
        f"{TINY}_1",
        f"{TINY}_2",
        f"{TINY}_1r",
        f"{TINY}_2r",
        "spatial_temporal_r_1_4_4_5233_1",
        "spatial_temporal_r_1_4_4_5233_2",
        "spatial_temporal_r_1_4_4_5233_1r",
        "spatial_temporal_r_1_4_4_5233_2r",
    }
    art = on_disk[on_disk.task == "art"]
    tdt = on_disk[on_disk.task == "tdt"]
    assert art["test_accuracy"].notna().all() and art["test_error_cm"].isna().all()
    assert tdt["test_error_cm"].notna().all() and tdt["test_accuracy"].isna().all()
    assert (on_disk[on_disk.trained].epochs == 2).all()
    assert set(on_disk[on_disk.trained].stopped_by) == {"max_epochs"}
    for _, r in art.iterrows():
        assert r["val_accuracy"] == r["val_accuracy"]  # not NaN
        assert (RunPaths(cfg.out_dir).root / r["checkpoint"]).is_file()
    assert all(p.exists() for p in train_output_paths(cfg))


def test_trained_beats_untrained(run):
    cfg, table, _ = run
    art = table[table.task == "art"].set_index("model")
    for s in (1, 2):
        trained, untrained = art.loc[f"{TINY}_{s}", "test_accuracy"], art.loc[f"{TINY}_{s}r", "test_accuracy"]
        assert trained > untrained and trained > 0.5, (trained, untrained)
        assert untrained < 0.6  # chance is 0.25 on the toy set
    tdt = table[table.task == "tdt"].set_index("model")
    assert (
        tdt.loc["spatial_temporal_r_1_4_4_5233_1", "test_error_cm"]
        < tdt.loc["spatial_temporal_r_1_4_4_5233_1r", "test_error_cm"]
    )


def test_untrained_is_initial_weights(run):
    cfg, _, _ = run
    for r in planned_runs(cfg):
        model, ck = load_checkpoint(r.checkpoint(False))
        assert ck["model_name"] == r.untrained_name and not ck["trained"]
        fresh = build_model(r.architecture, r.task, seed=r.seed)
        for k, v in fresh.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), (r.name, k)


def test_rerun_skips(run, tmp_path):
    cfg, table, first_s = run
    metrics = RunPaths(cfg.out_dir).models / f"{TINY}_1" / "metrics.json"
    before = metrics.read_text()
    toml = write_toml(
        tmp_path / "c.toml",
        {
            "run": {"out_dir": str(cfg.out_dir), "seed": 5},
            "parallel": {"mode": "sync"},
            "train": cfg.to_dict(["train"])["train"],
        },
    )
    t0 = time.perf_counter()
    assert main(["-q", "train", str(toml)]) == 0
    again_s = time.perf_counter() - t0
    assert metrics.read_text() == before
    again = pd.read_csv(RunPaths(cfg.out_dir).models / "summary.csv")
    pd.testing.assert_frame_equal(again, table.reset_index(drop=True), check_dtype=False)
    assert again_s < max(0.5 * first_s, 2.0), (again_s, first_s)


def test_seeds_trained_together(run, tmp_path):
    """[train] group = "seeds": one group per (architecture, task); seed 1 (the group's batch order)
    ends as the same model as alone, seed 2 is another model trained on seed 1's batch order."""
    cfg, table, _ = run
    root = tmp_path / "grouped"
    rp = RunPaths(root)
    rp.dataset.mkdir(parents=True)
    for p in (rp.pcrt_train, rp.pcrt_test):
        p.write_bytes((RunPaths(cfg.out_dir).dataset / p.name).read_bytes())
    grouped = run_train(make_cfg(root, train={"group": "seeds"}))
    assert set(grouped["model"]) == set(table["model"])
    for task in ("art", "tdt"):
        for r in planned_runs(cfg):
            if r.task != task:
                continue
            g = json.loads((root / r.directory.relative_to(cfg.out_dir) / "metrics.json").read_text())
            assert g["data_seed"] == 1 and g["finished"]
            if r.seed == 1:
                a = torch.load(r.checkpoint(True), weights_only=True)["state_dict"]
                b = torch.load(root / r.checkpoint(True).relative_to(cfg.out_dir), weights_only=True)[
                    "state_dict"
                ]
                assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), r.name


def test_changed_settings_refused(run):
    cfg, _, _ = run
    changed = make_cfg(cfg.out_dir, train={"max_epochs": 3})
    with pytest.raises(DeepDrawError, match="max_epochs=2"):
        run_train(changed)


# ------------------------------------------------------------------------------------------ activations
def test_activations(run):
    cfg, table, _ = run
    paths = run_activations(cfg)
    assert paths == activation_paths(cfg) and len(paths) == 8
    idx = activation_indices(cfg, 48)
    assert len(idx) == 20 and np.all(np.diff(idx) > 0)
    names = set()
    for p in paths:
        with h5py.File(p, "r") as f:
            np.testing.assert_array_equal(f["sample_index"][()], idx)
            name = f.attrs["model_name"]
            names.add(name)
            assert p.stem == name and f.attrs["trained"] == (not name.endswith("r"))
            layers = list(f.attrs["layer_names"])
            assert layers == ["input", "spatial0", "temporal0"]
            assert f["layers/input"].shape == (20, 25, 320, 2)
            assert f["layers/spatial0"].shape == (20, 13, 320, 4)
            assert f["layers/temporal0"].shape == (20, 13, 107, 4)
            assert f["centres/temporal0"].shape == (107,)
            assert f["kinematics/endeffector_coords"].shape == (20, 3, 320)
            assert f["plane"].dtype.kind == "S" and f["label"].shape == (20,)
    assert set(table["model"]) == names
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert run_activations(cfg) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes  # skipped
    # a checkpoint that changed (a resumed training rewrites best.pt) makes its file stale
    ck = RunPaths(cfg.out_dir).root / table["checkpoint"].iloc[0]
    target = next(p for p in paths if p.stem == table["model"].iloc[0])
    original = ck.read_bytes()
    try:
        state = torch.load(ck, map_location="cpu", weights_only=False)
        key = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
        state["state_dict"][key] = state["state_dict"][key] + 0.5
        torch.save(state, ck)
        assert run_activations(cfg) == paths
        changed = [p.stat().st_mtime_ns != m for p, m in zip(paths, mtimes)]
        assert changed == [p == target for p in paths]  # only that model's file was rewritten
        with h5py.File(target, "r") as f:
            assert f.attrs["checkpoint_sha256"] == store.file_sha256(ck)
    finally:
        ck.write_bytes(original)
    run_activations(cfg)  # back to the original weights for the tests below


def test_activation_files_record_config_seeds_and_are_refused_under_another_name(run, tmp_path):
    """Provenance of run_activations' files; a file copied under another model's name is refused by the
    RSA and tuning readers with an error naming the file, the recorded and the expected model."""
    import shutil

    from deepdraw.rsa.stage import read_model_info
    from deepdraw.tuning import ActivationsFile

    cfg, table, _ = run
    paths = run_activations(cfg)
    a = store.read_attrs(paths[0])
    assert a["kind"] == "activations" and a["config"] == cfg.to_dict(["activations"])
    assert a["seeds"] == {"seed": 5, "spawn_key": [6]}
    ck = RunPaths(cfg.out_dir).root / table.set_index("model").loc[paths[0].stem, "checkpoint"]
    assert a["inputs"] == {ck.name: store.file_sha256(ck)}
    with ActivationsFile(paths[0]) as act:  # the right name is accepted
        assert act.model_name == paths[0].stem
    other = next(p for p in paths if p.stem != paths[0].stem)
    moved = tmp_path / other.name
    shutil.copyfile(paths[0], moved)
    msg = f"{moved}: attribute 'model_name' is '{paths[0].stem}'; expected '{other.stem}'"
    with pytest.raises(DeepDrawError, match=re.escape(msg)):
        ActivationsFile(moved)
    with pytest.raises(DeepDrawError, match=re.escape(msg)):
        read_model_info(moved, [], True)
    shutil.copyfile(paths[0], tmp_path / "mine.h5")  # a name that is not a model name: no expectation
    assert read_model_info(tmp_path / "mine.h5", [], True).name == paths[0].stem


def test_a_checkpoint_of_another_model_is_refused(run, tmp_path):
    """A best.pt copied into another run's folder: an error naming both models, no activations file."""
    import shutil

    cfg, table, _ = run
    root = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, root, ignore=shutil.ignore_patterns("activations"))
    c2 = make_cfg(root)
    trained = table[table["state"] == "trained"]
    a, b = (root / trained["checkpoint"].iloc[k] for k in (0, 1))
    shutil.copyfile(b, a)
    with pytest.raises(DeepDrawError, match=f"'model_name' is '{trained['model'].iloc[1]}'; expected"):
        run_activations(c2)
    assert not (RunPaths(root).activations / f"{trained['model'].iloc[0]}.h5").exists()


def test_a_truncated_checkpoint_of_a_finished_run_is_an_error(run, tmp_path):
    import shutil

    cfg, table, _ = run
    root = tmp_path / "trunc"
    shutil.copytree(cfg.out_dir, root, ignore=shutil.ignore_patterns("activations"))
    ck = root / table[table["state"] == "trained"]["checkpoint"].iloc[0]
    ck.write_bytes(ck.read_bytes()[:500])
    with pytest.raises(DeepDrawError, match="says the run finished, but"):
        run_train(make_cfg(root))


def test_activation_indices_all_rows_when_small(run):
    cfg, _, _ = run
    np.testing.assert_array_equal(activation_indices(cfg, 12), np.arange(12))
    other = make_cfg(cfg.out_dir, run={"seed": 6})
    assert not np.array_equal(activation_indices(other, 48), activation_indices(cfg, 48))


# ---------------------------------------------------------------------------------------------- evaluate
def test_cli_evaluate(run, capsys):
    cfg, table, _ = run
    rp = RunPaths(cfg.out_dir)
    ck = rp.models / f"{TINY}_1" / "best.pt"
    capsys.readouterr()
    assert main(["-q", "evaluate", str(ck), str(rp.pcrt_test), "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_name"] == f"{TINY}_1" and out["task"] == "art" and out["n"] == 48
    row = table.set_index("model").loc[f"{TINY}_1"]
    assert out["accuracy"] == pytest.approx(row["test_accuracy"])
    assert run_evaluate(ck, rp.pcrt_test, device="cpu")["accuracy"] == out["accuracy"]


# -------------------------------------------------------------------------------------------- bad input
def test_unknown_family_exits_2(run, tmp_path, capsys):
    cfg, _, _ = run
    toml = write_toml(
        tmp_path / "bad.toml",
        {
            "run": {"out_dir": str(cfg.out_dir)},
            "parallel": {"mode": "sync"},
            "search": {"families": ["spatial_temporl"], "n_per_family": 1},
        },
    )
    capsys.readouterr()
    assert main(["-q", "search", str(toml), "--no-seeds"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "spatial_temporl" in err and "spatial_temporal" in err
    toml = write_toml(
        tmp_path / "bad2.toml",
        {"run": {"out_dir": str(cfg.out_dir)}, "train": {"models": ["spatial_temporl_1_4_4_5233"]}},
    )
    assert main(["-q", "train", str(toml)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_checkpoint_for_activations(tmp_path):
    rp = RunPaths(tmp_path)
    rp.dataset.mkdir(parents=True)
    make_pcrt(rp.pcrt_test, 8, 2)
    with pytest.raises(DeepDrawError, match="deepdraw train"):
        run_activations(make_cfg(tmp_path))
