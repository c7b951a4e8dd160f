"""The dataset check: single-frame muscle-length jumps found exactly where planted, smooth fast
muscles and padding left alone, the same in blocks as whole; the demo keeps the paper's ratio."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from deepdraw.cli import main
from deepdraw.config import load_config
from deepdraw.dataset.checks import find_jumps, muscle_jumps
from deepdraw.errors import DeepDrawError


def _lengths(n=5, muscles=4, frames=320, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(frames) * 0.015
    base = 100 + 5 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0, (n, muscles, 1)) * t)
    return base.astype(np.float32)


def test_planted_jumps_are_found_and_nothing_else():
    x = _lengths()
    x[1, 3, 101:] += 20.0  # a step of 20 mm between frames 100 and 101
    x[4, 0, 250:] -= 7.5
    x[2, 2, :] = 100 + 6.0 * np.arange(320)  # a fast smooth muscle: 6 mm every frame, no jump
    x[3, 1, 200:] = np.nan  # padding
    s, m, f, step = find_jumps(x)
    assert sorted(zip(s.tolist(), m.tolist(), f.tolist())) == [(1, 3, 100), (4, 0, 249)]
    assert sorted(step.round(3).tolist()) == pytest.approx([7.5, 20.0], abs=0.5)  # + the sinusoid's own step
    # a higher threshold keeps only the large one
    assert find_jumps(x, jump_mm=10)[0].tolist() == [1]


def test_bad_arguments_are_refused():
    with pytest.raises(DeepDrawError, match="shape"):
        find_jumps(np.zeros((3, 320)))
    with pytest.raises(DeepDrawError, match="jump_mm"):
        find_jumps(np.zeros((1, 1, 10)), jump_mm=0)


def _pcrt(path, x, names):
    with h5py.File(path, "w") as f:
        f["muscle_coords"] = x
        f.attrs["muscle_names"] = json.dumps(names)
    return path


def test_file_report_counts_samples_per_muscle_and_is_block_independent(tmp_path):
    x = _lengths(n=7)
    x[0, 1, 50:] += 30.0
    x[0, 1, 60:] -= 30.0  # two jumps, one sample
    x[5, 1, 10:] += 12.0
    x[6, 2, 300:] += 9.0
    p = _pcrt(tmp_path / "f.h5", x, ["A", "LAT3", "TMIN", "D"])
    whole = muscle_jumps(p)
    blocks = muscle_jumps(p, block=2)
    assert whole == blocks
    assert whole["samples_with_jumps"] == 3 and whole["jumps"] == 4 and whole["n_samples"] == 7
    assert whole["by_muscle"] == {"LAT3": 2, "TMIN": 1}
    assert whole["largest_mm"] == pytest.approx(30.0, abs=0.5)
    assert whole["examples"][0]["row"] == 0 and whole["examples"][0]["muscle"] == "LAT3"


def test_cli_check_reports_and_strict_fails(tmp_path, capsys):
    x = _lengths()
    clean = _pcrt(tmp_path / "clean.h5", x, ["A", "B", "C", "D"])
    x[2, 0, 9:] += 50
    dirty = _pcrt(tmp_path / "dirty.h5", x, ["A", "B", "C", "D"])
    assert main(["dataset", "check", "--file", str(clean), "--strict"]) == 0
    assert "0 of 5 samples" in capsys.readouterr().out
    assert main(["dataset", "check", "--file", str(dirty), "--strict"]) == 2
    out = capsys.readouterr()
    assert "1 of 5 samples" in out.out and "largest 50." in out.out and "--strict" in out.err
    assert main(["dataset", "check", "--file", str(tmp_path / "none.h5")]) == 2


def test_demo_keeps_the_papers_selection_ratio():
    """1 candidate in 5 kept, lowest muscle jerk first: what keeps the wrapping jumps out (docs/dataset.md)."""
    cfg = load_config("configs/demo.toml")
    assert cfg.kinematics.n_candidates >= 5 * cfg.assembly.n_samples
