"""The whole pipeline at a tiny scale: end to end, rerun with nothing to do, a changed config reruns only
the stages it affects, and a run killed in the middle of a stage resumes to the same bytes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepdraw.cli import main
from deepdraw.config import load_config
from deepdraw.errors import DeepDrawError
from deepdraw.pipeline import run_pipeline, status

pytestmark = pytest.mark.slow

TINY = """
[run]
out_dir = "{out}"
seed = 2
quiet = true
[parallel]
mode = "sync"
[kinematics]
n_candidates = 240
shard_size = 60
[assembly]
n_samples = 160
chunk = 40
[svm]
inputs = ["spindle_firing"]
[train]
models = ["spatial_temporal_1_4_8_5233"]
tasks = ["art", "tdt"]
seeds = [1]
max_epochs = {epochs}
num_threads = 1
[activations]
n_samples = 40
[rsa]
per_class = 1
tsne_per_class = 1
[tuning]
min_plane_units = 1
"""

STAGES = [
    "characters",
    "startpoints",
    "kinematics",
    "assemble",
    "svm",
    "train",
    "activations",
    "rsa",
    "tuning",
    "report",
]


def _toml(tmp: Path, name: str, epochs: int = 2) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(TINY.format(out=tmp / name, epochs=epochs))
    return p


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    toml = _toml(tmp, "a")
    assert main(["-q", "pipeline", str(toml)]) == 0
    return tmp, toml


def test_end_to_end_outputs(full_run):
    tmp, toml = full_run
    run = tmp / "a"
    cfg = load_config(toml)
    assert set(status(cfg).values()) == {"done"}
    with h5py.File(run / "dataset" / "pcrt_train.h5") as f:
        n_train = f["label"].shape[0]
        assert f["spindle_info"].shape == (n_train, 25, 320, 2)
        info = f["spindle_info"][:4].astype(np.float64)
        # the velocity channel is the time derivative of the length channel (dt = 0.015 s)
        np.testing.assert_allclose(
            info[..., 1], np.gradient(info[..., 0], 0.015, axis=-1), rtol=1e-3, atol=1e-2
        )
        labels = f["label"][()]
    with h5py.File(run / "dataset" / "pcrt_test.h5") as f:
        labels = np.concatenate([labels, f["label"][()]])
    assert len(labels) == 160 and np.bincount(labels, minlength=20).tolist() == [8] * 20  # balanced
    summary = json.loads((run / "svm" / "summary.json").read_text())
    assert 0.5 < summary["pairwise_mean_acc_spindle_firing"] <= 1.0
    import pandas as pd

    models = pd.read_csv(run / "models" / "summary.csv")
    assert len(models) == 4  # art + tdt, trained + untrained
    assert len(list((run / "activations").glob("*.h5"))) == 4
    assert (run / "rsa" / "rsa_results.h5").exists() and (run / "tuning" / "tuning_results.h5").exists()
    for png in ("sample_train_0.png", "dataset_summary.png"):  # the paper's Figure 2 and the summary
        data = (run / "figures" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    out = run / "figures" / "cli_inspect.png"
    assert (
        main(["-q", "dataset", "inspect", str(toml), "--source", "test", "--sample", "3", "--png", str(out)])
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["-q", "dataset", "inspect", str(toml), "--source", "test", "--sample", "100000"]) == 2
    html = (run / "report" / "index.html").read_text()
    assert "Paper vs this run" in html or "paper vs this run" in html.lower()


def test_rerun_has_nothing_to_do(full_run):
    tmp, toml = full_run
    run = tmp / "a"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.h5")}
    t0 = time.perf_counter()
    recs = run_pipeline(load_config(toml))
    assert all(r["skipped"] for r in recs.values()) and list(recs) == STAGES
    assert time.perf_counter() - t0 < 30
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.h5")} == before


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_changed_config_is_refused_then_forced(full_run, tmp_path):
    """A changed [train] section stops the pipeline before anything is touched (it deleted models/
    and every later output before issue 17); --force recomputes exactly the affected stages."""
    tmp, _ = full_run
    import shutil

    shutil.copytree(tmp / "a", tmp_path / "a")
    toml = _toml(tmp_path, "a", epochs=3)
    before = _files(tmp_path / "a")
    assert main(["-q", "pipeline", str(toml)]) == 2
    with pytest.raises(DeepDrawError) as e:
        run_pipeline(load_config(toml))
    msg = str(e.value)
    assert "stage 'train': config changed: train.max_epochs: 2 -> 3" in msg and "models/summary.csv" in msg
    for later in ("activations", "rsa", "tuning", "report"):
        assert f"stage '{later}': upstream stage(s)" in msg
    assert "stage 'svm'" not in msg and f"deepdraw pipeline {toml} --force" in msg
    assert _files(tmp_path / "a") == before  # nothing deleted, nothing written
    recs = run_pipeline(load_config(toml), force=True)
    ran = [k for k, r in recs.items() if not r["skipped"]]
    assert ran == ["train", "activations", "rsa", "tuning", "report"]


def test_stage_only_config_uses_the_runs_dataset(full_run, tmp_path):
    """A config without dataset sections (as configs/paper-svm.toml) uses the dataset of its out_dir,
    with the digests recorded by the run that made it, and never makes one."""
    tmp, _ = full_run
    import shutil

    shutil.copytree(tmp / "a", tmp_path / "a")
    svm_only = tmp_path / "svm.toml"
    svm_only.write_text(
        f'[run]\nout_dir = "{tmp_path / "a"}"\nseed = 2\nquiet = true\n[parallel]\nmode = "sync"\n'
        '[svm]\ninputs = ["spindle_firing"]\n'
    )
    cfg = load_config(svm_only)
    st = status(cfg)
    assert [st[s] for s in STAGES[:4]] == ["external"] * 4 and st["svm"] == "done"
    recs = run_pipeline(cfg, only=[*STAGES[:4], "svm"])
    assert all(r["skipped"] for r in recs.values()) and recs["assemble"]["external"]
    elsewhere = tmp_path / "svm2.toml"
    elsewhere.write_text(svm_only.read_text().replace(str(tmp_path / "a"), str(tmp_path / "empty")))
    assert main(["-q", "pipeline", str(elsewhere)]) == 2  # no dataset there: an error, not a new dataset
    assert not (tmp_path / "empty" / "dataset").exists()


def test_killed_run_resumes_to_the_same_bytes(full_run, tmp_path):
    tmp, _ = full_run
    toml = _toml(tmp_path, "a")  # same config as the full run, other folder
    proc = subprocess.Popen([sys.executable, "-m", "deepdraw.cli", "-q", "pipeline", str(toml)])
    shards = tmp_path / "a" / "dataset" / "candidates"
    t0 = time.time()
    while len(list(shards.glob("shard_*.h5"))) < 1 and time.time() - t0 < 300:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cfg = load_config(toml)
    st = status(cfg)
    assert st["kinematics"] == "partial" and st["assemble"] == "todo"
    recs = run_pipeline(cfg, only=["characters", "startpoints", "kinematics", "assemble"])
    assert recs["characters"]["skipped"] and not recs["kinematics"]["skipped"]
    for name in ("pcrt_train.h5", "pcrt_test.h5"):
        a = (tmp / "a" / "dataset" / name).read_bytes()
        b = (tmp_path / "a" / "dataset" / name).read_bytes()
        assert a == b, name
