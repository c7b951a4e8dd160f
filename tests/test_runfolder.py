"""A run folder you can trust (issue 17): the pipeline never deletes results without --force, configs
without dataset sections never make a dataset, one writer per folder (lock), dead writers' temporary
files are removed, and a full disk is one clear error."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepdraw import lock, pipeline, store
from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.paths import RunPaths

# --------------------------------------------------------------------------- pipeline, toy stages


def _write(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture
def toy_stages(monkeypatch):
    """Two stages with the real stage names: 'assemble' (writes the PCRT files) and 'svm' (reads them);
    ``calls`` counts their runs."""
    calls = {"assemble": 0, "svm": 0}

    def assemble(cfg):
        calls["assemble"] += 1
        rp = RunPaths(cfg.out_dir)
        _write(rp.pcrt_train, f"train n={cfg.assembly.n_samples}")
        _write(rp.pcrt_test, f"test n={cfg.assembly.n_samples}")

    def svm(cfg):
        calls["svm"] += 1
        _write(RunPaths(cfg.out_dir).svm / "summary.json", json.dumps({"max_iter": cfg.svm.max_iter}))

    stages = {
        "assemble": pipeline.Stage(
            "assemble",
            ["assembly"],
            assemble,
            lambda c: [RunPaths(c.out_dir).pcrt_train, RunPaths(c.out_dir).pcrt_test],
        ),
        "svm": pipeline.Stage(
            "svm", ["svm"], svm, lambda c: [RunPaths(c.out_dir).svm / "summary.json"], after=["assemble"]
        ),
    }
    monkeypatch.setattr(pipeline, "STAGES", stages)
    return calls


def _cfg(tmp_path, **sections):
    data = {"run": {"out_dir": str(tmp_path / "run")}, "assembly": {"n_samples": 100}}
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None}, str(tmp_path / "c.toml"))


def test_unchanged_rerun_skips(tmp_path, toy_stages):
    cfg = _cfg(tmp_path)
    recs = pipeline.run_pipeline(cfg)
    assert not recs["assemble"]["skipped"] and not recs["svm"]["skipped"]
    done = json.loads((RunPaths(cfg.out_dir).stamps / "svm.done.json").read_text())
    assert done["config"]["svm.max_iter"] == 100 and set(done["inputs"]) == {
        "dataset/pcrt_train.h5",
        "dataset/pcrt_test.h5",
    }
    assert all(r["skipped"] for r in pipeline.run_pipeline(cfg).values())
    assert toy_stages == {"assemble": 1, "svm": 1}
    assert pipeline.status(cfg) == {"assemble": "done", "svm": "done"}
    assert not (RunPaths(cfg.out_dir).root / ".lock").exists()  # released


def test_changed_config_is_refused_then_forced(tmp_path, toy_stages):
    pipeline.run_pipeline(_cfg(tmp_path))
    out = RunPaths(tmp_path / "run").svm / "summary.json"
    before = out.read_text()
    cfg = _cfg(tmp_path, svm={"max_iter": 5})
    assert pipeline.status(cfg)["svm"] == "stale"
    with pytest.raises(DeepDrawError) as e:
        pipeline.run_pipeline(cfg)
    msg = str(e.value)
    assert "stage 'svm'" in msg and "svm.max_iter: 100 -> 5" in msg and "svm/summary.json" in msg
    assert "--force" in msg and "run.out_dir" in msg and "stage 'assemble'" not in msg
    assert out.read_text() == before and toy_stages["svm"] == 1  # nothing ran, nothing was deleted
    recs = pipeline.run_pipeline(cfg, force=True)
    assert recs["assemble"]["skipped"] and not recs["svm"]["skipped"]
    assert json.loads(out.read_text()) == {"max_iter": 5}


def test_changed_dataset_config_puts_every_stage_at_stake(tmp_path, toy_stages):
    pipeline.run_pipeline(_cfg(tmp_path))
    cfg = _cfg(tmp_path, assembly={"n_samples": 50})
    with pytest.raises(DeepDrawError) as e:
        pipeline.run_pipeline(cfg)
    msg = str(e.value)
    assert "stage 'assemble': config changed: assembly.n_samples: 100 -> 50" in msg
    assert "stage 'svm': upstream stage(s) assemble changed" in msg
    assert RunPaths(cfg.out_dir).pcrt_train.read_text() == "train n=100"
    assert toy_stages == {"assemble": 1, "svm": 1}


def test_changed_input_file_is_refused(tmp_path, toy_stages):
    cfg = _cfg(tmp_path)
    pipeline.run_pipeline(cfg)
    RunPaths(cfg.out_dir).pcrt_test.write_text("another dataset, same config")
    with pytest.raises(
        DeepDrawError, match=r"stage 'svm': input files changed since it ran: dataset/pcrt_test\.h5"
    ):
        pipeline.run_pipeline(cfg)
    assert pipeline.run_pipeline(cfg, force=True)["svm"]["skipped"] is False


def test_outputs_without_stamps_are_not_deleted(tmp_path, toy_stages):
    cfg = _cfg(tmp_path)
    _write(RunPaths(cfg.out_dir).svm / "summary.json", "made by 'deepdraw svm'")
    with pytest.raises(
        DeepDrawError, match="stage 'svm': its outputs exist but no pipeline run recorded them"
    ):
        pipeline.run_pipeline(cfg)
    assert (RunPaths(cfg.out_dir).svm / "summary.json").read_text() == "made by 'deepdraw svm'"
    assert toy_stages == {"assemble": 0, "svm": 0}  # refused before anything ran


def test_stages_that_check_their_outputs_adopt_unrecorded_ones(tmp_path, toy_stages):
    """Models made by 'deepdraw train' (no stamps) are resumed from under the pipeline (the stage keeps
    finished runs and refuses other settings), not put at stake."""
    pipeline.STAGES["svm"].adopts = True
    cfg = _cfg(tmp_path)
    _write(RunPaths(cfg.out_dir).svm / "summary.json", "made by 'deepdraw svm'")
    assert pipeline.plan(cfg)["svm"].action == "resume"
    assert not pipeline.run_pipeline(cfg)["svm"]["skipped"] and toy_stages["svm"] == 1


def test_stage_only_config_uses_the_dataset_and_never_makes_one(tmp_path, toy_stages):
    full = _cfg(tmp_path)
    stage_only = _cfg(tmp_path, assembly=None, svm={"max_iter": 7})
    assert pipeline.external_dataset(stage_only) and not pipeline.external_dataset(full)
    with pytest.raises(DeepDrawError, match=r"c\.toml: has no dataset sections.*pcrt_train\.h5 is missing"):
        pipeline.run_pipeline(stage_only)
    assert toy_stages["assemble"] == 0 and not RunPaths(full.out_dir).dataset.exists()
    assert pipeline.status(stage_only)["assemble"] == "missing"
    pipeline.run_pipeline(full, only=["assemble"])  # the config that defines the dataset makes it
    recs = pipeline.run_pipeline(stage_only, force=True)  # even --force never regenerates it
    assert recs["assemble"]["external"] and not recs["svm"]["skipped"] and toy_stages["assemble"] == 1
    assert RunPaths(full.out_dir).pcrt_train.read_text() == "train n=100"
    assert pipeline.status(stage_only) == {"assemble": "external", "svm": "done"}


def test_cli_pipeline_refusal_and_force(tmp_path, toy_stages, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[run]\nout_dir = "{tmp_path / "run"}"\n[assembly]\nn_samples = 100\n')
    assert main(["-q", "pipeline", str(toml)]) == 0
    toml.write_text(
        f'[run]\nout_dir = "{tmp_path / "run"}"\n[assembly]\nn_samples = 100\n[svm]\nmax_iter = 3\n'
    )
    assert main(["-q", "pipeline", str(toml)]) == 2
    err = capsys.readouterr().err
    assert f"deepdraw pipeline {toml} --force" in err and "svm.max_iter: 100 -> 3" in err
    assert main(["-q", "pipeline", str(toml), "--force"]) == 0
    assert toy_stages["svm"] == 2


# ---------------------------------------------------------------------------------------------- lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_is_taken_and_released(tmp_path):
    with lock.run_lock(tmp_path / "run", command="test") as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with lock.run_lock(tmp_path / "run"):  # re-entrant in one process
            pass
        assert path.exists()
    assert not path.exists()
    with pytest.raises(RuntimeError), lock.run_lock(tmp_path / "run") as path:
        raise RuntimeError("a stage failed")
    assert not path.exists()  # released on exceptions too


def test_second_writer_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    planted = {"pid": os.getppid(), "host": socket.gethostname(), "command": "deepdraw pipeline a.toml"}
    (run / ".lock").write_text(json.dumps(planted))
    with pytest.raises(
        DeepDrawError, match=rf"being written by pid {os.getppid()} on host .*deepdraw pipeline a\.toml"
    ):
        lock.acquire(run)
    assert json.loads((run / ".lock").read_text()) == planted  # the holder's lock is untouched
    (run / ".lock").write_text(json.dumps({**planted, "host": "elsewhere.example"}))
    with pytest.raises(DeepDrawError, match=r"locked by pid .* on host elsewhere\.example.*delete .*\.lock"):
        lock.acquire(run)


def test_second_process_is_refused(tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys, time; from deepdraw.lock import acquire; acquire(sys.argv[1]); "
        "print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(lock.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DeepDrawError, match=rf"pid {proc.pid}"):
            lock.acquire(run)
    finally:
        proc.kill()
        proc.wait()
    with lock.run_lock(run) as path:  # the killed holder's lock is now stale
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    dead = _dead_pid()
    (run / ".lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING), lock.run_lock(run) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"stale lock of pid {dead}" in caplog.text


def test_cli_writer_refused_while_locked(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    toml = tmp_path / "c.toml"
    toml.write_text(f'[run]\nout_dir = "{run}"\n[characters]\n')
    assert main(["-q", "dataset", "characters", str(toml)]) == 2
    assert f"being written by pid {os.getppid()}" in capsys.readouterr().err
    assert not (run / "dataset").exists()


def test_dead_writers_temp_files_are_removed(tmp_path):
    run = tmp_path / "run"
    dead, alive = _dead_pid(), os.getppid()
    planted_dead = [
        run / "dataset" / f".pcrt_train.h5.tmp-{dead}",
        run / "dataset" / "candidates" / f".shard_00001.h5.tmp-{dead}",
        run / "models" / "m_1" / f"metrics.json.tmp{dead}",
        run / "svm" / f".svm_pairs.tmp-{dead}.png",
        run / f".report.tmp-{dead}" / "index.html",
    ]
    kept = [
        run / "dataset" / f".pcrt_test.h5.tmp-{alive}",
        run / "dataset" / "pcrt_train.h5",
        run / "models" / "m_1" / "best.pt",
    ]
    for p in planted_dead + kept:
        _write(p, "x" * 100)
    with lock.run_lock(run):
        pass
    assert all(p.exists() for p in kept)
    assert not any(p.exists() for p in planted_dead) and not (run / f".report.tmp-{dead}").exists()


# ----------------------------------------------------------------------------------------- disk full


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_in_an_artifact_is_one_error(tmp_path, monkeypatch):
    out = tmp_path / "out" / "a.h5"
    with pytest.raises(
        DeepDrawError, match=rf"^{tmp_path / 'out'}: disk full .*while writing a\.h5; .* GB free"
    ):
        with store.ArtifactWriter(out, kind="demo") as f:
            f.create_dataset("x", data=np.ones(3))
            _enospc()
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor its temporary file
    h5_message = "Can't write data (file write failed: errno = 28, error message = 'No space left on device')"
    monkeypatch.setattr(
        store.artifacts._ArtifactFile,
        "create_dataset",
        lambda *a, **k: (_ for _ in ()).throw(OSError(h5_message)),
    )
    with pytest.raises(DeepDrawError, match="disk full"):
        store.write_artifact(out, {"x": np.ones(3)}, kind="demo")
    assert list((tmp_path / "out").iterdir()) == []


def test_free_space_is_checked_before_a_long_write(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10**9))
    with pytest.raises(
        DeepDrawError, match=r"disk full .*pcrt_train\.h5; 1\.00 GB free there, about 5\.00 GB needed"
    ):
        store.require_space(tmp_path, 5 * 10**9, "pcrt_train.h5")
    store.require_space(tmp_path, 10**8, "pcrt_train.h5")


def test_cli_disk_full_names_the_folder(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    toml = tmp_path / "c.toml"
    toml.write_text(f'[run]\nout_dir = "{run}"\n[characters]\n')
    monkeypatch.setattr(store.artifacts._ArtifactFile, "create_dataset", _enospc)
    assert main(["-q", "dataset", "characters", str(toml)]) == 2
    err = capsys.readouterr().err
    assert f"deepdraw: error: {run / 'dataset'}: disk full" in err and "Traceback" not in err
    assert list((run / "dataset").iterdir()) == [] and not (run / ".lock").exists()

    def json_write_fails(cfg, overwrite=False):  # a write outside the store: the CLI's safety net
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "models" / "summary.csv"))

    monkeypatch.setattr("deepdraw.dataset.stage.run_characters", json_write_fails)
    assert main(["-q", "dataset", "characters", str(toml)]) == 2
    assert (
        f"{run / 'models'}: disk full (no space left on device) while writing summary.csv"
        in capsys.readouterr().err
    )


# ------------------------------------------------------------------------- one stage contract, verified


def test_single_stage_command_is_the_pipeline_stage(tmp_path, toy_stages, capsys):
    """`deepdraw svm` runs the pipeline's svm stage: the same stamps, and another config's outputs are
    refused (naming `deepdraw svm ... --force`) instead of being overwritten behind the stamps' back."""
    toml = tmp_path / "c.toml"
    toml.write_text(f'[run]\nout_dir = "{tmp_path / "run"}"\n[assembly]\nn_samples = 100\n')
    assert main(["-q", "pipeline", str(toml), "--only", "assemble"]) == 0
    assert main(["-q", "svm", str(toml)]) == 0
    rp = RunPaths(tmp_path / "run")
    done = json.loads((rp.stamps / "svm.done.json").read_text())
    assert done["config"]["svm.max_iter"] == 100 and done["outputs"] == {
        "svm/summary.json": len('{"max_iter": 100}')
    }
    assert pipeline.status(_cfg(tmp_path)) == {"assemble": "done", "svm": "done"}
    assert main(["-q", "pipeline", str(toml)]) == 0 and toy_stages["svm"] == 1  # the pipeline skips it
    other = tmp_path / "other.toml"
    other.write_text(toml.read_text() + "[svm]\nmax_iter = 9\n")
    assert main(["-q", "svm", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"deepdraw svm {other} --force" in err and "svm.max_iter: 100 -> 9" in err
    assert json.loads((rp.svm / "summary.json").read_text()) == {"max_iter": 100}
    assert main(["-q", "svm", str(other), "--force"]) == 0
    assert json.loads((rp.stamps / "svm.done.json").read_text())["config"]["svm.max_iter"] == 9
    assert pipeline.status(_cfg(tmp_path))["svm"] == "stale"  # the first config sees the change


def test_damaged_output_is_reported_and_only_it_is_recomputed(tmp_path, toy_stages):
    cfg = _cfg(tmp_path)
    pipeline.run_pipeline(cfg)
    rp = RunPaths(cfg.out_dir)
    rp.pcrt_train.write_text("train n=1")  # truncated after the stage finished
    state, reasons = pipeline.status_details(cfg)["assemble"]
    assert state == "damaged" and "dataset/pcrt_train.h5: 9 bytes, 11 when the stage finished" in reasons[0]
    with pytest.raises(
        DeepDrawError,
        match=r"stage 'assemble': output\(s\) damaged .*outputs at stake: "
        r"dataset/pcrt_train\.h5\n",
    ):
        pipeline.run_pipeline(cfg)
    assert rp.pcrt_test.read_text() == "test n=100" and toy_stages == {"assemble": 1, "svm": 1}
    pipeline.run_pipeline(cfg, force=True)
    assert rp.pcrt_train.read_text() == "train n=100" and toy_stages == {"assemble": 2, "svm": 2}
    assert pipeline.status(cfg) == {"assemble": "done", "svm": "done"}


def test_stamp_without_output_record_checks_hdf5_files_open(tmp_path, toy_stages):
    """Stamps of an older deepdraw record no output sizes: an .h5 output that does not open is damaged."""
    cfg = _cfg(tmp_path)
    pipeline.run_pipeline(cfg)
    stamp = RunPaths(cfg.out_dir).stamps / "assemble.done.json"
    done = json.loads(stamp.read_text())
    assert done["outputs_hdf5"] == []  # the toy stage's "PCRT files" are text
    del done["outputs"], done["outputs_hdf5"]
    stamp.write_text(json.dumps(done))
    state, reasons = pipeline.status_details(cfg)["assemble"]
    assert state == "damaged" and "dataset/pcrt_train.h5: not a readable HDF5 file" in reasons[0]
    with h5py.File(RunPaths(cfg.out_dir).pcrt_train, "w"), h5py.File(RunPaths(cfg.out_dir).pcrt_test, "w"):
        pass  # readable HDF5 files (the svm stage's inputs changed, so it is stale now)
    assert pipeline.status(cfg) == {"assemble": "done", "svm": "stale"}


def test_keys_that_only_select_outputs_extend_instead_of_refusing(tmp_path, monkeypatch):
    """Adding a seed to [train] trains that seed: the keys that choose which runs exist (Stage.selects)
    are not in the digest, so the finished runs are not put at stake; other keys still are."""
    written: list[str] = []

    def run(cfg):
        for c in cfg.svm.c_grid:
            p = RunPaths(cfg.out_dir).svm / f"c_{c:g}.json"
            if not p.exists():
                written.append(p.name)
                _write(p, json.dumps({"c": c, "max_iter": cfg.svm.max_iter}))

    stage = pipeline.Stage(
        "svm",
        ["svm"],
        run,
        lambda c: [RunPaths(c.out_dir).svm / f"c_{x:g}.json" for x in c.svm.c_grid],
        adopts=True,
        selects=("svm.c_grid",),
    )
    monkeypatch.setattr(pipeline, "STAGES", {"svm": stage})
    pipeline.run_pipeline(_cfg(tmp_path, svm={"c_grid": [1.0]}))
    more = _cfg(tmp_path, svm={"c_grid": [1.0, 2.0]})
    assert pipeline.status(more) == {"svm": "partial"}
    pipeline.run_pipeline(more)
    assert written == ["c_1.json", "c_2.json"] and pipeline.status(more) == {"svm": "done"}
    assert pipeline.status(_cfg(tmp_path, svm={"c_grid": [1.0]})) == {"svm": "done"}  # fewer: still done
    other = _cfg(tmp_path, svm={"c_grid": [1.0, 2.0], "max_iter": 7})
    with pytest.raises(DeepDrawError, match=r"stage 'svm': config changed: svm.max_iter: 100 -> 7"):
        pipeline.run_pipeline(other)


def test_a_stage_whose_outputs_change_during_the_run_stops_the_next(tmp_path, monkeypatch):
    """A stage run earlier in the same pipeline run that is no longer complete when the next stage
    starts (its planned outputs grew: a model added to the zoo meanwhile) stops the pipeline with an
    error naming it, before the next stage runs; a rerun completes it, then runs the next."""
    planned = ["a"]
    ran: list[str] = []

    def train(cfg):
        for n in planned:
            _write(RunPaths(cfg.out_dir).models / f"{n}.pt", n)
        if planned == ["a"]:
            planned.append("b")  # the zoo ships one more model while the pipeline runs

    def activations(cfg):
        ran.append("activations")
        _write(RunPaths(cfg.out_dir).activations / "done.json", "{}")

    stages = {
        "train": pipeline.Stage(
            "train", ["train"], train, lambda c: [RunPaths(c.out_dir).models / f"{n}.pt" for n in planned]
        ),
        "activations": pipeline.Stage(
            "activations",
            ["activations"],
            activations,
            lambda c: [RunPaths(c.out_dir).activations / "done.json"],
            after=["train"],
        ),
    }
    monkeypatch.setattr(pipeline, "STAGES", stages)
    cfg = _cfg(tmp_path)
    with pytest.raises(
        DeepDrawError, match=r"stage\(s\) train ran in this pipeline run but are no longer complete"
    ):
        pipeline.run_pipeline(cfg)
    assert ran == [] and pipeline.status(cfg)["train"] == "partial"
    pipeline.run_pipeline(cfg)
    assert ran == ["activations"] and (RunPaths(cfg.out_dir).models / "b.pt").is_file()
