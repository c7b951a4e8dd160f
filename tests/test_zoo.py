"""The model zoo: shipped checkpoints load, verify and generalise to freshly generated data; packaging
a run round-trips; tampered files are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from nn_toy import make_pcrt, train_config

from deepdraw import zoo
from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.zoo.package import add_to_zoo

SHIPPED = zoo.available()


def test_the_zoo_ships_models_with_complete_cards():
    assert SHIPPED, "no model is shipped in src/deepdraw/zoo/checkpoints"
    for name in SHIPPED:
        c = zoo.card(name)
        assert c["name"] == name and c["task"] in ("art", "tdt") and c["seed"] >= 1
        assert c["dataset"]["config"]["assembly"]["n_samples"] == 200_000  # paper-scale dataset
        assert c["training"]["epochs"] >= c["training"]["best_epoch"] >= 1
        assert c["licence"]["data"]["musculoskeletal_model"].startswith("MoBL-ARMS")
        assert len(c["checkpoint"]["sha256"]) == 64


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_its_untrained_control_is_rebuilt_exactly(name):
    model, c = zoo.load(name)
    assert not model.training and model.task == c["task"]
    assert sum(p.numel() for p in model.parameters()) == c["n_parameters"]
    control, _ = zoo.load(name, untrained=True)
    assert zoo.state_digest(control.state_dict()) == c["untrained"]["state_sha256"]
    # the control is the run's initial state, not the trained weights
    differ = [
        not torch.equal(a, b) for a, b in zip(model.state_dict().values(), control.state_dict().values())
    ]
    assert any(differ)


@pytest.fixture(scope="module")
def fresh_dataset(tmp_path_factory):
    """300 samples made by the project's generator with a seed unrelated to the training data's."""
    from deepdraw.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("fresh") / "run"
    cfg = config_from_dict(
        {
            "run": {"out_dir": str(out), "seed": 20261202, "quiet": True},
            "parallel": {"mode": "sync"},
            "kinematics": {"n_candidates": 1500, "shard_size": 500},  # 1 in 5 kept, as the paper
            "assembly": {"n_samples": 300, "chunk": 300},
        }
    )
    run_pipeline(cfg, only=["characters", "startpoints", "kinematics", "assemble"])
    return [out / "dataset" / "pcrt_train.h5", out / "dataset" / "pcrt_test.h5"]


def _pooled(checkpoint, files) -> dict:
    from deepdraw.nn.train import evaluate

    parts = [evaluate(checkpoint, f) for f in files]
    n = sum(p["n"] for p in parts)
    return {k: sum(p[k] * p["n"] for p in parts) / n for k in parts[0] if k != "n"} | {"n": n}


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_generalises_to_freshly_generated_movements(name, fresh_dataset, one_torch_thread):
    c = zoo.card(name)
    m = _pooled(zoo.verify(name), fresh_dataset)
    assert m["n"] == 300
    if c["task"] == "art":
        assert m["accuracy"] >= 0.95
    else:
        assert m["error_cm"] <= 0.6


def test_tampered_or_truncated_checkpoint_is_refused(tmp_path):
    name = SHIPPED[0]
    d = tmp_path / "zoo"
    shutil.copytree(zoo.ZOO_DIR, d)
    pt = d / f"{name}.pt"
    raw = bytearray(pt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pt.write_bytes(bytes(raw))
    with pytest.raises(DeepDrawError, match="sha256"):
        zoo.load(name, zoo_dir=d)
    pt.write_bytes(bytes(raw[:1000]))
    with pytest.raises(DeepDrawError, match="truncated"):
        zoo.load(name, zoo_dir=d)
    pt.unlink()
    with pytest.raises(DeepDrawError, match="missing"):
        zoo.verify(name, zoo_dir=d)


def test_unknown_name_suggests_the_closest_shipped_one():
    name = SHIPPED[0]
    # one character dropped: the shipped name itself is the closest (other seeds differ in one more)
    with pytest.raises(DeepDrawError, match=f"did you mean '{name}'"):
        zoo.card(name[:10] + name[11:])


def test_a_finished_run_round_trips_through_the_zoo(tmp_path, one_torch_thread):
    from deepdraw.nn.checkpoints import read_checkpoint
    from deepdraw.nn.train import train_model

    files = (make_pcrt(tmp_path / "tr.h5", 64, 1), make_pcrt(tmp_path / "te.h5", 32, 2))
    run = tmp_path / "models" / "toy"
    res = train_model(train_config([str(f) for f in files], str(run), max_epochs=2))
    (run / "untrained_metrics.json").write_text(json.dumps({"test": {"accuracy": 0.25, "n": 32}}))
    d = tmp_path / "zoo"
    card_path = add_to_zoo(run, d)
    name = res.metrics["model_name"]
    assert card_path.name == f"{name}.json" and zoo.available(d) == [name]
    with pytest.raises(DeepDrawError, match="already in the zoo"):
        add_to_zoo(run, d)
    model, c = zoo.load(name, zoo_dir=d)
    best = read_checkpoint(run / "best.pt")
    for k, v in best["state_dict"].items():
        assert torch.equal(model.state_dict()[k], v)
    assert "optimizer" not in read_checkpoint(d / f"{name}.pt")  # weights only
    assert c["metrics"]["test"]["accuracy"] == pytest.approx(res.metrics["test"]["accuracy"])
    assert c["training"]["epochs"] == res.metrics["epochs_run"]
    control, _ = zoo.load(name, untrained=True, zoo_dir=d)
    first = read_checkpoint(run / "untrained.pt")["state_dict"]
    for k, v in first.items():
        assert torch.equal(control.state_dict()[k], v)
    # a card whose untrained digest does not match (another initialisation) is an error
    c["untrained"]["state_sha256"] = "0" * 64
    (d / f"{name}.json").write_text(json.dumps(c))
    with pytest.raises(DeepDrawError, match="initialises differently"):
        zoo.load(name, untrained=True, zoo_dir=d)
    # a run whose dataset is gone is refused before anything is written to the zoo
    files[1].unlink()
    other = tmp_path / "zoo2"
    with pytest.raises(DeepDrawError, match="te.h5: the test file of the run's dataset is missing"):
        add_to_zoo(run, other)
    assert not other.exists() or not any(other.iterdir())


def test_unfinished_run_is_not_packaged(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"model_name": "x", "finished": False}))
    with pytest.raises(DeepDrawError, match="not finished"):
        add_to_zoo(run, tmp_path / "zoo")


def test_cli_lists_and_shows_the_zoo(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in SHIPPED)
    assert main(["zoo", "show", SHIPPED[0]]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == SHIPPED[0]
    assert main(["zoo", "show", "no_such_model"]) == 2
    assert "not in the zoo" in capsys.readouterr().err


def test_state_digest_sees_values_dtypes_and_names():
    a = {"w": torch.zeros(3)}
    assert zoo.state_digest(a) == zoo.state_digest({"w": torch.zeros(3)})
    assert zoo.state_digest(a) != zoo.state_digest({"w": torch.tensor([0.0, 0.0, np.float32(1e-30)])})
    assert zoo.state_digest(a) != zoo.state_digest({"w": torch.zeros(3, dtype=torch.float64)})
    assert zoo.state_digest(a) != zoo.state_digest({"v": torch.zeros(3)})


def _zoo_cfg(out, dataset, **train):
    return config_from_dict(
        {
            "run": {"out_dir": str(out), "seed": 4, "quiet": True, "dataset_dir": str(dataset)},
            "parallel": {"mode": "sync"},
            "train": {
                "models": [SHIPPED_ART_S],
                "tasks": ["art", "tdt"],
                "seeds": [1, 2],
                "source": "zoo",
                **train,
            },
            "activations": {"n_samples": 40},
        }
    )


SHIPPED_ART_S = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"


@pytest.mark.slow
def test_train_source_zoo_installs_shipped_models_on_another_runs_dataset(
    fresh_dataset, tmp_path, one_torch_thread
):
    """A run with run.dataset_dir and train.source = "zoo": no dataset made, shipped models installed,
    evaluated on that dataset's test file, their activations extracted."""
    from deepdraw.nn.checkpoints import read_checkpoint
    from deepdraw.nn.stage import planned_runs, run_activations, run_train
    from deepdraw.store import file_sha256

    dataset = fresh_dataset[0].parent
    before = {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()}
    cfg = _zoo_cfg(tmp_path / "zoo_run", dataset)
    runs = planned_runs(cfg)
    shipped = set(zoo.available())
    assert runs and all(r.name in shipped for r in runs)
    table = run_train(cfg)
    assert set(table["source"]) == {"zoo"} and len(table) == 2 * len(runs)
    for r in runs:
        c = zoo.card(r.name)
        assert file_sha256(r.directory / "best.pt") == c["checkpoint"]["sha256"]
        assert (
            zoo.state_digest(read_checkpoint(r.directory / "untrained.pt")["state_dict"])
            == c["untrained"]["state_sha256"]
        )
        # the fresh dataset has another config than the paper's: the card's metrics do not apply
        check = json.loads((r.directory / "metrics.json").read_text())["dataset_check"]
        assert check["status"] == "another dataset"
        row = table[(table.model == r.name)].iloc[0]
        if c["task"] == "art":
            assert row.test_accuracy >= 0.95
        else:  # a TDT model: a fraction of a cm on the fresh test set, its control tens of cm
            assert row.test_error_cm <= 0.6
            control = table[(table.state == "untrained") & (table.task == c["task"])]
            assert (control.test_error_cm > 10).all()
    untrained = table[(table.state == "untrained") & (table.task == "art")]
    assert len(untrained) and (untrained.test_accuracy < 0.3).all()
    # installed again: reused, not rewritten
    m = {r.name: (r.directory / "metrics.json").stat().st_mtime_ns for r in runs}
    run_train(cfg)
    assert m == {r.name: (r.directory / "metrics.json").stat().st_mtime_ns for r in runs}
    paths = run_activations(cfg)
    assert len(paths) == 2 * len(runs) and all(p.is_file() for p in paths)
    assert before == {p.name: p.stat().st_mtime_ns for p in dataset.iterdir()}  # the dataset untouched


@pytest.mark.slow
def test_train_source_auto_installs_what_ships_and_trains_the_rest(fresh_dataset, tmp_path, one_torch_thread):
    """train.source = "auto" (how configs/paper-zoo.toml resumes on a machine without runs/): the shipped
    seed is installed, the other one trained; a started run of this run folder is never replaced."""
    from deepdraw.nn.stage import planned_runs, run_train
    from deepdraw.nn.train_stage import _from_zoo

    dataset = fresh_dataset[0].parent
    # seed 9: never shipped (the zoo's seeds are the paper's 1-5)
    cfg = _zoo_cfg(
        tmp_path / "auto", dataset, source="auto", tasks=["art"], seeds=[1, 9], max_epochs=1, min_epochs=0
    )
    runs = planned_runs(cfg)
    assert [r.seed for r in runs] == [1, 9] and runs[0].name in zoo.available()
    assert runs[1].name not in zoo.available()
    table = run_train(cfg)
    by = table.set_index("model")
    assert by.loc[runs[0].name, "source"] == "zoo" and by.loc[runs[1].name, "source"] == "run"
    assert list(table["model"]) == [
        runs[0].name,
        runs[0].untrained_name,
        runs[1].name,
        runs[1].untrained_name,
    ]
    assert by.loc[runs[1].name, "epochs"] == 1
    # a shipped run whose folder holds training of this run (a last.pt to resume) is trained, not installed
    other = _zoo_cfg(tmp_path / "auto2", dataset, source="auto", tasks=["art"], seeds=[1])
    (r,) = planned_runs(other)
    assert _from_zoo(other, [r]) == {r.name}
    r.directory.mkdir(parents=True)
    (r.directory / "last.pt").write_bytes(b"")
    assert _from_zoo(other, [r]) == set()
    train_only = _zoo_cfg(tmp_path / "auto3", dataset, source="train", tasks=["art"], seeds=[1])
    assert _from_zoo(train_only, planned_runs(train_only)) == set()


def test_zoo_source_refuses_a_folder_with_a_model_trained_here(tmp_path, fresh_dataset):
    from deepdraw.zoo.install import install_run

    d = tmp_path / "m"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"model_name": SHIPPED[0], "finished": True}))
    with pytest.raises(DeepDrawError, match="trained in this run"):
        install_run(SHIPPED[0], d, fresh_dataset[1])


def test_dataset_dir_excludes_dataset_sections_and_requires_the_dataset(tmp_path):
    from deepdraw.config import load_config
    from deepdraw.pipeline import run_pipeline

    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nout_dir = "x"\ndataset_dir = "y/dataset"\n[kinematics]\nn_candidates = 10\n')
    with pytest.raises(DeepDrawError, match="run.dataset_dir"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text(
        f'[run]\nout_dir = "{tmp_path / "out"}"\ndataset_dir = "{tmp_path / "none" / "dataset"}"\n'
    )
    with pytest.raises(DeepDrawError, match="run.dataset_dir"):
        run_pipeline(load_config(good), only=["assemble", "svm"])
    assert not (tmp_path / "none").exists()


def test_dataset_match_tells_same_samples_from_a_same_config_regeneration(tmp_path):
    """A dataset of the card's config but other samples (another CPU kind: docs/zoo.md) is told apart,
    by the candidate ids where the card has their digest, else by the test loss."""
    import h5py

    from deepdraw.zoo.dataset_match import compare_with_card, samples_digest

    def files(tag, test_seed=2, config=None):
        tr, te = (
            make_pcrt(tmp_path / f"{tag}_tr.h5", 40, 1),
            make_pcrt(tmp_path / f"{tag}_te.h5", 20, test_seed),
        )
        for p in (tr, te):
            with h5py.File(p, "a") as f:
                f.attrs["config"] = json.dumps(config or {"run": {"seed": 12}})
                f.attrs["inputs"] = json.dumps({"characters.h5": "ab"})
        return tr, te

    tr, te = files("a")
    digest = samples_digest(tr, te)
    card = {
        "dataset": {
            "config": {"run": {"seed": 12}},
            "inputs": {"characters.h5": "ab"},
            "samples_sha256": digest,
        },
        "metrics": {"test": {"loss": 0.5, "n": 20}},
    }
    assert compare_with_card(card, te, {"loss": 0.9}, tr)[0] == "same samples"  # the ids decide
    # one row moved from test to train (the same union of ids): another digest
    tr2, te2 = files("b")
    with h5py.File(tr2, "a") as ftr, h5py.File(te2, "a") as fte:
        moved = int(fte["candidate_id"][0])
        ftr["candidate_id"][0] = moved
        fte["candidate_id"][0] = 100_000
    assert samples_digest(tr2, te2) != digest
    assert compare_with_card(card, te2, {"loss": 0.5}, tr2)[0] == "different samples"
    # identical content in other files: the same digest
    assert samples_digest(*files("c")) == digest
    # a card without the digest (made before it existed): the test loss decides, 1 % tolerance
    old = {k: v for k, v in card.items()}
    old["dataset"] = {k: v for k, v in card["dataset"].items() if k != "samples_sha256"}
    assert compare_with_card(old, te, {"loss": 0.5 * 1.009}, tr)[0] == "metrics match"
    assert compare_with_card(old, te, {"loss": 0.25}, tr)[0] == "metrics differ"
    assert compare_with_card(old, te, {"loss": float("nan")}, tr)[0] == "not checked"  # no false alarm
    # files without candidate ids (converted from the original): the loss decides too
    with h5py.File(tr2, "a") as f:
        del f["candidate_id"]
    assert samples_digest(tr2, te2) is None
    assert compare_with_card(card, te2, {"loss": 0.25}, tr2)[0] == "metrics differ"
    # another dataset config (the demo's test set, say): the card's metrics do not apply
    tr3, te3 = files("d", config={"run": {"seed": 1}})
    assert compare_with_card(card, te3, {"loss": 0.25}, tr3)[0] == "another dataset"


def test_install_warns_when_the_dataset_holds_other_samples_than_the_models(
    tmp_path, caplog, one_torch_thread
):
    """The regenerated paper dataset on an AVX2-only CPU held many of the shipped models' training rows in
    its test file: the install says so (metrics.json dataset_check, a warning)."""
    import logging

    from deepdraw.nn.train import train_model
    from deepdraw.zoo.install import install_run

    files = (make_pcrt(tmp_path / "tr.h5", 64, 1), make_pcrt(tmp_path / "te.h5", 32, 2))
    run = tmp_path / "models" / "toy"
    res = train_model(train_config([str(f) for f in files], str(run), max_epochs=1))
    (run / "untrained_metrics.json").write_text(json.dumps({"test": {"accuracy": 0.25, "n": 32}}))
    d = tmp_path / "zoo"
    card = json.loads(add_to_zoo(run, d).read_text())
    name = res.metrics["model_name"]
    assert len(card["dataset"]["samples_sha256"]) == 64
    with caplog.at_level(logging.WARNING, logger="deepdraw.zoo.install"):
        m = install_run(name, tmp_path / "same", files[1], train_path=files[0], zoo_dir=d)
    assert m["dataset_check"]["status"] == "same samples" and "not held out" not in caplog.text
    # an install of an older deepdraw (no dataset_check) is evaluated and checked again, not reused
    mpath = tmp_path / "same" / "metrics.json"
    older = {k: v for k, v in json.loads(mpath.read_text()).items() if k != "dataset_check"}
    mpath.write_text(json.dumps(older))
    again = install_run(name, tmp_path / "same", files[1], train_path=files[0], zoo_dir=d)
    assert again["dataset_check"]["status"] == "same samples"
    assert "dataset_check" in json.loads(mpath.read_text())
    # the same config, other samples: another test file of the same size
    other = (make_pcrt(tmp_path / "tr2.h5", 64, 3), make_pcrt(tmp_path / "te2.h5", 32, 4))
    with caplog.at_level(logging.WARNING, logger="deepdraw.zoo.install"):
        m = install_run(name, tmp_path / "other", other[1], train_path=other[0], zoo_dir=d)
    assert m["dataset_check"]["status"] == "different samples"
    assert f"{name}: this run's dataset has the shipped model's config but not its samples" in caplog.text
    assert (
        json.loads((tmp_path / "other" / "metrics.json").read_text())["dataset_check"] == m["dataset_check"]
    )
    # reused on the next run, and said again
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deepdraw.zoo.install"):
        again = install_run(name, tmp_path / "other", other[1], train_path=other[0], zoo_dir=d)
    assert again == m and "not its samples" in caplog.text
