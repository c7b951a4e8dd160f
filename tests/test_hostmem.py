"""deepdraw.nn.hostmem: freed buffers are reused (not mapped afresh), released at the end, the opt-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deepdraw.nn import hostmem

# a child process: allocate, touch and free a 64 MB buffer, then measure how much resident memory a
# second allocation of the same size adds (a fresh mapping: its 64 MB, zeroed by the kernel; reused heap
# memory: nothing), and how much the final release gives back (rss_mb: the child's resident memory)
_RSS = """
import os
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
"""

_CHILD = (
    _RSS
    + """
import json, os, sys
import numpy as np
from deepdraw.nn import hostmem
applied = hostmem.reuse_freed_memory() if sys.argv[1] == "reuse" else False
a = np.ones(16 * 1024 * 1024, dtype=np.float32); del a
before = rss_mb()
b = np.ones(16 * 1024 * 1024, dtype=np.float32)
grown = rss_mb() - before
del b
held = rss_mb()
hostmem.release_free_memory()
print(json.dumps({"applied": applied, "grown_mb": grown, "released_mb": held - rss_mb()}))
"""
)


def _child(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(hostmem._glibc() is None, reason="glibc only")
def test_freed_buffers_are_reused_not_mapped_afresh():
    default = _child("default")
    reused = _child("reuse")
    assert not default["applied"] and reused["applied"]
    assert default["grown_mb"] > 48  # glibc maps a 64 MB block afresh and returns it on free
    assert reused["grown_mb"] < 8  # served from the freed heap memory, already resident
    assert reused["released_mb"] > 48  # malloc_trim gives the kept memory back at the end


def test_opt_out_and_idempotence(monkeypatch):
    monkeypatch.setenv(hostmem.ENV, "system")
    assert hostmem._glibc() is None
    # the opt-out in a child process: nothing applied, the default faults
    res = _child("reuse", {hostmem.ENV: "system"})
    assert not res["applied"]
    monkeypatch.delenv(hostmem.ENV)
    if hostmem._glibc() is not None:
        assert hostmem.reuse_freed_memory() and hostmem.reuse_freed_memory()


# a child process: a 256 MB "cache" in the heap with a small block after it (so that freeing it leaves
# a hole glibc keeps resident), then the cache budget of the next run
_CHILD_BUDGET = (
    _RSS
    + """
import json, os
import torch
from deepdraw.nn import hostmem
from deepdraw.nn.trainer import _cache_budget
hostmem.reuse_freed_memory()
cache = torch.ones(64 * 1024 * 1024)
after = torch.ones(1024 * 1024)
del cache
held = rss_mb()
_cache_budget(None, torch.device("cpu"))
print(json.dumps({"released_mb": held - rss_mb()}))
"""
)


@pytest.mark.skipif(hostmem._glibc() is None, reason="glibc only")
def test_cache_budget_counts_memory_freed_by_earlier_runs():
    # the second run of a process streamed its data from disk (18 % slower) because the first run's
    # freed cache stayed resident and did not count as available; the budget now hands it back first
    out = subprocess.run([sys.executable, "-c", _CHILD_BUDGET], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["released_mb"] > 200


def test_cuda_cache_budget_counts_memory_freed_by_earlier_runs(monkeypatch):
    # on CUDA the first run's freed cache stays reserved by torch's caching allocator, outside what
    # mem_get_info reports free: the budget empties that cache before it measures (no GPU needed here)
    import torch

    from deepdraw.nn.trainer import _cache_budget

    state = {"reserved": 6 * 2**30, "free": 2 * 2**30}

    def empty_cache():
        state["free"] += state["reserved"]
        state["reserved"] = 0

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 80 * 2**30))
    assert _cache_budget(None, torch.device("cuda:0")) == 4 * 2**30  # half of 2 + 6 GiB
    assert _cache_budget(1.5, torch.device("cuda:0")) == int(1.5 * 2**30)  # an explicit budget wins
