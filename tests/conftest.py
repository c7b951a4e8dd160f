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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module: tiny models gain nothing from more, and on a
    shared 2-core machine oversubscribed OpenMP threads are tens of times slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
