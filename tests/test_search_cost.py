"""The search-cost benchmark's estimate (benchmarks/search_cost.py), against hand-computed figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def search_cost():
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("bench_search_cost", ROOT / "benchmarks" / "search_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_estimate_by_hand(search_cost):
    rows = [
        {"family": "a", "name": "a1", "samples_per_s": 100.0, "gflop_per_sample": 1.0},
        {"family": "a", "name": "a2", "samples_per_s": 50.0, "gflop_per_sample": 2.0},
        {"family": "b", "name": "b1", "samples_per_s": 10.0, "gflop_per_sample": 0.5},
    ]
    # 9,000 training + 3,000 validation rows: 10,000 training-step equivalents per epoch and task
    e = search_cost.estimate(rows, n_train=9000, n_val=3000, n_tasks=2, epochs=4, workers=2)
    a = (10000 / 100 + 10000 / 50) * 2 / 3600  # 600 s
    b = 10000 / 10 * 2 / 3600  # 2,000 s
    assert e["core_hours_per_epoch_a"] == pytest.approx(a, abs=1e-3)
    assert e["core_hours_per_epoch_b"] == pytest.approx(b, abs=1e-3)
    assert e["core_hours_per_epoch"] == pytest.approx(a + b, abs=1e-3)
    assert e["core_hours"] == pytest.approx(4 * (a + b), abs=0.05)
    assert e["wall_hours"] == pytest.approx(2 * (a + b), abs=0.05)
    # 3.5 GFLOP per sample-pass x 10,000 step equivalents x 2 tasks x 4 epochs = 280 TFLOP
    assert e["pflop"] == pytest.approx(0.28, abs=0.005)


def test_candidate_rate_is_positive_and_slower_for_a_bigger_model(search_cost, tmp_path):
    """A wider network (40x the FLOPs per sample) trains fewer samples per second than a narrow one."""
    search_cost._toy_file(tmp_path / "toy.h5", 64)
    small = search_cost.candidate_rate("spatiotemporal_1_8_3131", "auto", 8, 0.05, tmp_path)
    big = search_cost.candidate_rate("spatiotemporal_2_16-64_3131", "auto", 8, 0.05, tmp_path)
    assert small > 0 and big > 0
    assert small > 3 * big
