"""Candidate generation: determinism across workers, resume after SIGKILL, a real Dask cluster, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from deepdraw import store
from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.dataset import arm
from deepdraw.dataset.stage import run_characters, run_kinematics, run_startpoints
from deepdraw.errors import DeepDrawError

BASE = {
    "run": {"seed": 5, "quiet": True},
    "kinematics": {"n_candidates": 30, "shard_size": 10, "max_attempts": 4},
    "assembly": {"n_samples": 20},
}


def _cfg(root: Path, **parallel):
    d = {k: dict(v) for k, v in BASE.items()}
    d["run"]["out_dir"] = str(root)
    d["parallel"] = parallel or {"mode": "sync"}
    return config_from_dict(d)


def _prepare(cfg):
    run_characters(cfg)
    run_startpoints(cfg)


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "dataset" / "candidates").glob("shard_*.h5"))}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    cfg = _cfg(root)
    _prepare(cfg)
    run_kinematics(cfg, with_muscles=False)
    return root, _shard_bytes(root)


def test_shards_content(reference_run):
    root, shards = reference_run
    assert list(shards) == ["shard_00000.h5", "shard_00001.h5", "shard_00002.h5"]
    with h5py.File(root / "dataset" / "candidates" / "shard_00001.h5") as f:
        assert f["candidate_id"][()].tolist() == list(range(10, 20))
        acc = f["accepted"][()].astype(bool)
        assert acc.sum() >= 8  # nearly every candidate passes within 4 attempts
        # accepted candidates satisfy both criteria (the paper's acceptance; the original used `and`)
        assert np.all(f["tracing_error"][()][acc] <= 1e-2) and np.all(f["joint_jerk"][()][acc] <= 1.0)
        assert np.all(f["attempts"][()] >= 1) and np.all(f["attempts"][()] <= 4)
        # the stored joints reproduce the stored hand path through the forward kinematics
        hand = f["endeffector_coords"][()]
        q = f["joint_coords"][()]
        L = f["length"][()]
        for i in np.flatnonzero(acc):
            w = arm.fk_world(q[i, :, : L[i]].T.astype(np.float64))
            np.testing.assert_allclose(w, hand[i, :, : L[i]].T, atol=2e-3)  # float32 storage
        # planes alternate, start points belong to the plane's table
        assert f["plane"][()].tolist() == [0, 1] * 5


def test_same_bytes_with_two_local_workers(reference_run, tmp_path):
    _, ref = reference_run
    cfg = _cfg(tmp_path, mode="local", workers=2)
    _prepare(cfg)
    run_kinematics(cfg, with_muscles=False)
    assert _shard_bytes(tmp_path) == ref


def test_real_scheduler_and_two_worker_processes(reference_run, tmp_path):
    """A scheduler and two workers started as separate processes on 127.0.0.1."""
    _, ref = reference_run
    port = 8786 + os.getpid() % 500
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bindir = Path(sys.executable).parent
    dask = [str(bindir / "dask")]
    procs = [
        subprocess.Popen(
            dask + ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        time.sleep(3)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    dask + ["worker", addr, "--nthreads", "1", "--no-dashboard"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        cfg = _cfg(tmp_path, mode="scheduler", scheduler=addr)
        _prepare(cfg)
        run_kinematics(cfg, with_muscles=False)
        assert _shard_bytes(tmp_path) == ref
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_resume_after_sigkill(tmp_path):
    """Kill a run (SIGKILL) in the middle; the restarted run ends with the bytes of an uninterrupted one."""

    def toml_for(root: Path) -> Path:
        t = root / "c.toml"
        root.mkdir(exist_ok=True)
        t.write_text(
            f'[run]\nout_dir = "{root}"\nseed = 5\nquiet = true\n[parallel]\nmode = "sync"\n'
            "[kinematics]\nn_candidates = 9\nshard_size = 3\nmax_attempts = 4\n[assembly]\nn_samples = 5\n"
            '[muscles]\nengine = "exact"\n'  # OpenSim per frame: slow enough to kill mid-run
        )
        return t

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for root in (whole, killed):
        t = toml_for(root)
        assert main(["-q", "dataset", "characters", str(t)]) == 0
        assert main(["-q", "dataset", "startpoints", str(t)]) == 0
    assert main(["-q", "dataset", "kinematics", str(toml_for(whole))]) == 0
    cand = killed / "dataset" / "candidates"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepdraw.cli", "-q", "dataset", "kinematics", str(killed / "c.toml")]
    )
    t0 = time.time()
    while not list(cand.glob("shard_*.h5")) and time.time() - t0 < 120:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(cand.glob("shard_*.h5"))
    assert 1 <= len(done) < 3, "the run should have been killed in the middle"
    for p in done:  # every file that looks complete is complete and valid
        with store.open_artifact(p, kind="candidates") as f:
            assert f["candidate_id"].shape == (3,)
    assert main(["-q", "dataset", "kinematics", str(killed / "c.toml")]) == 0
    assert not list(cand.glob(".*tmp*"))
    assert _shard_bytes(killed) == _shard_bytes(whole)
    with h5py.File(cand / "shard_00000.h5") as f:
        assert np.isfinite(f["muscle_jerk"][()][f["accepted"][()] == 1]).all()


def test_bad_inputs_leave_no_output(tmp_path):
    cfg = _cfg(tmp_path)
    # missing inputs
    with pytest.raises(DeepDrawError, match="characters.h5: file not found"):
        run_kinematics(cfg, with_muscles=False)
    _prepare(cfg)
    # NaN in a trajectory of the characters file
    ch = tmp_path / "dataset" / "characters.h5"
    a = store.read_arrays(ch)
    a["trajectories"][0, 0, 3] = np.nan
    bad = tmp_path / "bad"
    store.write_artifact(bad / "dataset" / "characters.h5", a, kind="characters")
    (bad / "dataset" / "startpoints.h5").write_bytes((tmp_path / "dataset" / "startpoints.h5").read_bytes())
    with pytest.raises(DeepDrawError, match="characters.h5: trajectory 0 holds NaN/inf within its length"):
        run_kinematics(_cfg(bad), with_muscles=False)
    assert not list((bad / "dataset").glob("candidates/*"))
    # truncated start points file
    sp = tmp_path / "dataset" / "startpoints.h5"
    data = sp.read_bytes()
    sp.write_bytes(data[:100])
    with pytest.raises(DeepDrawError, match="startpoints.h5: not a readable HDF5 file"):
        run_kinematics(cfg, with_muscles=False)
    assert not (tmp_path / "dataset" / "candidates").exists() or not list(
        (tmp_path / "dataset" / "candidates").iterdir()
    )


def test_cli_bad_plane_name(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text(f'[run]\nout_dir = "{tmp_path}/r"\n[kinematics]\nplanes = ["sagittal"]\n')
    assert main(["-q", "dataset", "kinematics", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "kinematics.planes" in err and "sagittal" in err and "horizontal, vertical" in err
    assert not (tmp_path / "r").exists()
