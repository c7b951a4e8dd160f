"""Shared fixtures: a tiny run config in a temporary folder."""

from __future__ import annotations

import pytest

from deepdraw.config import config_from_dict


@pytest.fixture
def tiny_cfg(tmp_path):
    """A config for a few dozen candidates, run in-process, writing under tmp_path."""
    return config_from_dict(
        {
            "run": {"out_dir": str(tmp_path / "run"), "seed": 3, "quiet": True},
            "parallel": {"mode": "sync"},
            "kinematics": {"n_candidates": 24, "shard_size": 8, "max_attempts": 3},
            "assembly": {"n_samples": 12},
        }
    )
