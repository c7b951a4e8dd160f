"""The paper's paired t-tests beside the run's: planted effects over seeds, t checked with scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from deepdraw.report.stats import PAPER_TESTS, compare_tests, paired_tests_html
from deepdraw.tuning import paired_tests

ARCH = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"


def _long_table(seeds=(1, 2, 3, 4, 5), n_layers=9, seed=0):
    """Median direction scores higher for ART than TDT from layer 1 on (planted), position the reverse;
    uniformity lower for trained ART than untrained."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        for task, trained in (("art", True), ("tdt", True), ("art", False)):
            for li in range(n_layers):
                base = {"arch": ARCH, "task": task, "trained": trained, "seed": s, "layer": f"l{li}",
                        "layer_index": li}  # fmt: skip
                d = 0.5 if (task == "art" and trained and li >= 1) else 0.2
                p = 0.6 if (task == "tdt" and li >= 1) else 0.3
                u = 0.5 if (trained and task == "art" and li >= 3) else 0.9
                for ttype, metric, v, o in (
                    ("dir", "median", d, "horizontal"),
                    ("pos_cart", "median", p, "horizontal"),
                    ("dir", "uniformity", u, "horizontal"),
                ):
                    rows.append({**base, "orientation": o, "tuning_type": ttype, "metric": metric,
                                 "value": v + 0.02 * rng.standard_normal()})  # fmt: skip
    return pd.DataFrame(rows)


def test_run_t_statistics_sit_beside_the_papers():
    df = _long_table()
    cmp = compare_tests(paired_tests(df))
    dirs = cmp[(cmp.tuning_type == "dir") & (cmp.metric == "median")]
    assert list(dirs.layer_index) == list(range(1, 9))
    assert list(dirs.paper_t) == [10.44, 17.15, 41.46, 37.63, 25.05, 14.32, 3.47, 7.61]
    # t of layer 4 recomputed independently
    a = df[
        (df.task == "art")
        & df.trained
        & (df.layer_index == 4)
        & (df.tuning_type == "dir")
        & (df.metric == "median")
    ]
    b = df[(df.task == "tdt") & (df.layer_index == 4) & (df.tuning_type == "dir") & (df.metric == "median")]
    ref = st.ttest_rel(a.sort_values("seed").value.to_numpy(), b.sort_values("seed").value.to_numpy())
    assert dirs[dirs.layer_index == 4].t.item() == pytest.approx(ref.statistic)
    assert (dirs.df == 4).all() and dirs.agrees.all()  # 5 seeds; planted effect, same sign as the paper
    pos = cmp[cmp.tuning_type == "pos_cart"]
    assert (pos.t < 0).all() and pos.agrees.all()
    uni = cmp[(cmp.metric == "uniformity") & (cmp.family == "spatial_temporal")]
    assert list(uni.layer_index) == [3, 4, 5, 6] and (uni.t < 0).all()
    # families absent from the run give no rows; the layers the paper tests are all listed
    assert set(cmp.family) == {"spatial_temporal"}
    assert "spatiotemporal" in {p.family for p in PAPER_TESTS}
    html = paired_tests_html(cmp)
    assert html.count("<tr>") == len(cmp) + 1 and "10.44" in html


def test_opposite_effect_does_not_agree_and_missing_layers_stay_untested():
    df = _long_table(n_layers=4)
    flip = (df.tuning_type == "dir") & (df.metric == "median")
    df.loc[flip, "value"] = -df.loc[flip, "value"]  # ART now lower than TDT
    cmp = compare_tests(paired_tests(df))
    dirs = cmp[(cmp.tuning_type == "dir") & (cmp.metric == "median")]
    assert not dirs[dirs.layer_index <= 3].agrees.any()
    untested = dirs[dirs.layer_index > 3]
    assert len(untested) == 5 and untested.t.isna().all() and "not tested" in paired_tests_html(cmp)


def test_empty_or_single_seed_runs_say_what_is_missing():
    assert compare_tests(None).empty
    one = compare_tests(paired_tests(_long_table(seeds=(1,))))
    assert one.t.isna().all()  # one pair per layer: no t
    assert "at least 2 seeds" in paired_tests_html(compare_tests(None))
