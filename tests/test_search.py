"""The architecture search stage on a tiny synthetic PCRT pair: candidates on ART and TDT, the table, the
ranking on the validation metric (planted tables where validation and test disagree), resuming,
``[train] models = "search"`` through the pipeline, the CLI, the figures and the report section, and bad
config values."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from nn_toy import make_pcrt

from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.names import split_model_name
from deepdraw.nn import search as search_mod
from deepdraw.nn.models import build_model
from deepdraw.nn.search_figures import art_vs_tdt, search_figures, spearman
from deepdraw.nn.search_stage import (
    RANKING_COLUMNS,
    SEARCH_COLUMNS,
    SearchResultsMissing,
    best_per_family,
    rank_candidates,
    run_search,
    search_candidates,
    search_dir,
    search_winners,
)
from deepdraw.nn.stage import planned_runs
from deepdraw.paths import RunPaths
from deepdraw.pipeline import plan, run_pipeline, stage_digest, status

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_GRID = search_mod.Grid(
    layers=(1, 2), channels=(4, 8), kernel_sizes=(3, 5), s_strides=(2,), t_strides=(3,)
)
FAMILIES = ["spatial_temporal", "spatiotemporal"]


@pytest.fixture(autouse=True, scope="module")
def _tiny_grid_and_commands():
    search_mod.GRIDS["tiny"] = TINY_GRID
    yield
    del search_mod.GRIDS["tiny"]


def cfg_dict(root, **sections):
    data = {
        "run": {"out_dir": str(root), "seed": 4, "quiet": True},
        "parallel": {"mode": "sync"},
        "train": {
            "models": "search",
            "tasks": ["art"],
            "seeds": [1],
            "max_epochs": 1,
            "lr": 5e-3,
            "batch_size": 16,
            "device": "cpu",
        },
        "search": {"families": FAMILIES, "n_per_family": 2, "max_epochs": 1, "grid": "tiny"},
        "activations": {"n_samples": 12, "batch_size": 8},
    }
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return data


def make_cfg(root, **sections):
    return config_from_dict(cfg_dict(root, **sections))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A run folder with a toy dataset and a finished search (2 families x 2 candidates x ART, TDT)."""
    root = tmp_path_factory.mktemp("search")
    rp = RunPaths(root)
    rp.dataset.mkdir(parents=True)
    make_pcrt(rp.pcrt_train, 120, 0)
    make_pcrt(rp.pcrt_test, 48, 1)
    cfg = make_cfg(root)
    table = run_search(cfg, seeds=False)
    return cfg, table


# --------------------------------------------------------------------------------------------- the table
def test_table_has_both_tasks(searched):
    cfg, table = searched
    csv = pd.read_csv(search_dir(cfg) / "search_results.csv")
    assert list(csv.columns) == SEARCH_COLUMNS + ["best"] and len(csv) == 2 * 2 * 2
    assert csv.groupby(["family", "task"]).size().to_dict() == {
        (f, t): 2 for f in FAMILIES for t in ("art", "tdt")
    }
    art, tdt = csv[csv.task == "art"], csv[csv.task == "tdt"]
    assert art[["train_accuracy", "val_accuracy", "test_accuracy"]].notna().all().all()
    assert art[["train_error_cm", "val_error_cm", "test_error_cm"]].isna().all().all()
    assert tdt[["train_error_cm", "val_error_cm", "test_error_cm"]].gt(0).all().all()
    assert tdt[["train_accuracy", "test_accuracy"]].isna().all().all()
    assert (csv.epochs == 1).all() and (csv.wall_s > 0).all()
    for _, r in csv.iterrows():
        # independent counts: the network built here, its readout left out, its layers
        model = build_model(r["name"], r.task)
        n = sum(p.numel() for p in model.parameters())
        assert r.parameters == n
        assert r.parameters_no_readout == n - sum(p.numel() for p in model.readout.parameters())
        assert r.depth == (2 * r.n_layers if r.family == "spatial_temporal" else r.n_layers)
        parts = split_model_name(r.model_name)
        assert (parts.arch, parts.regression, parts.seed) == (r["name"], r.task == "tdt", 4)
        run_dir = search_dir(cfg) / r.directory
        assert json.loads((run_dir / "search.json").read_text())["task"] == r.task
        assert ("_r_" in r.directory) == (r.task == "tdt")
    # the same architectures on both tasks; the readout-free count does not depend on the task
    a = art.set_index("name").sort_index()
    t = tdt.set_index("name").sort_index()
    assert list(a.index) == list(t.index)
    assert (a.parameters_no_readout == t.parameters_no_readout).all()
    assert (a.parameters != t.parameters).all()  # 20 logits vs 3 coordinates per frame
    assert set(a.index) == {s.name for s in search_candidates(cfg)}


def test_winners_ranked_on_validation(searched):
    cfg, table = searched
    ranking = pd.read_csv(search_dir(cfg) / "ranking.csv")
    assert list(ranking.columns) == RANKING_COLUMNS and len(ranking) == len(table)
    best = pd.read_csv(search_dir(cfg) / "best_per_family.csv")
    for fam in FAMILIES:
        art = table[(table.family == fam) & (table.task == "art")]
        top = art.sort_values(["val_accuracy", "parameters", "name"], ascending=[False, True, True]).iloc[0]
        assert best.set_index("family").loc[fam, "name"] == top["name"]
        assert set(table[table.best & (table.family == fam)]["name"]) == {top["name"]}
        tdt = ranking[(ranking.family == fam) & (ranking.task == "tdt")].sort_values("rank")
        assert list(tdt["rank"]) == [1, 2] and (tdt.metric == "val_error_cm").all()
        assert tdt.value.iloc[0] <= tdt.value.iloc[1]  # lower error ranks first
    assert ranking.selected.sum() == 2 and (ranking[ranking.selected].task == "art").all()
    assert search_winners(cfg) == list(best["name"])


def _planted():
    """Two candidates per family where the validation and test rankings disagree."""
    rows = []
    for fam, (a, b) in {"spatial_temporal": ("st_a", "st_b"), "lstm": ("l_a", "l_b")}.items():
        # a: better on validation, worse on test; b: the reverse
        rows += [
            dict(name=a, family=fam, task="art", parameters=100, val_accuracy=0.9, test_accuracy=0.7),
            dict(name=b, family=fam, task="art", parameters=50, val_accuracy=0.8, test_accuracy=0.95),
            dict(name=a, family=fam, task="tdt", parameters=90, val_error_cm=0.5, test_error_cm=0.1),
            dict(name=b, family=fam, task="tdt", parameters=40, val_error_cm=0.2, test_error_cm=0.9),
        ]
    return pd.DataFrame(rows)


def test_selection_uses_validation_not_test():
    t = _planted()
    assert list(best_per_family(t).name) == ["st_a", "l_a"]  # ART validation accuracy
    assert list(best_per_family(t, select_by="test").name) == ["st_b", "l_b"]  # the original's choice
    assert list(best_per_family(t, select_task="tdt").name) == ["st_b", "l_b"]  # lower validation error
    assert list(best_per_family(t, "test", "tdt").name) == ["st_a", "l_a"]
    r = rank_candidates(t).set_index(["family", "task", "name"])
    assert r.loc[("lstm", "art", "l_a"), "rank"] == 1 and r.loc[("lstm", "tdt", "l_a"), "rank"] == 2
    # ties go to fewer parameters; a missing metric ranks last
    t.loc[t.name.isin(["st_a", "st_b"]) & (t.task == "art"), "val_accuracy"] = 0.85
    assert best_per_family(t).name.iloc[0] == "st_b"
    t.loc[(t.name == "st_b") & (t.task == "art"), "val_accuracy"] = np.nan
    assert best_per_family(t).name.iloc[0] == "st_a"
    with pytest.raises(DeepDrawError, match="no 'tdt_pv' candidates"):
        best_per_family(t, select_task="tdt_pv")


# ------------------------------------------------------------------------------------------- resuming
def test_rerun_skips_finished_candidates(searched):
    cfg, table = searched
    sd = search_dir(cfg)
    redo = sd / table.directory.iloc[0]
    (redo / "search.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in sd.glob("*/best.pt") if p.parent != redo}
    t0 = time.perf_counter()
    again = run_search(cfg, seeds=False)
    assert time.perf_counter() - t0 < 10.0
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), table.drop(columns="wall_s"))
    assert (redo / "search.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the others were not trained again
    other = make_cfg(cfg.out_dir, train={"lr": 1e-2})  # a candidate folder of other settings is refused
    with pytest.raises(DeepDrawError, match=r"holds a run trained with lr="):
        run_search(other, seeds=False)


# ----------------------------------------------------------------------------- models = "search", pipeline
def test_models_search_resolves_the_winners(searched, tmp_path):
    cfg, _ = searched
    best = pd.read_csv(search_dir(cfg) / "best_per_family.csv")
    runs = planned_runs(make_cfg(cfg.out_dir, train={"tasks": ["art", "tdt"], "seeds": [1, 2]}))
    assert {r.architecture for r in runs} == set(best.name) and len(runs) == 2 * 2 * 2
    tdt_pick = make_cfg(cfg.out_dir, search={"select_task": "tdt"})
    table = pd.read_csv(search_dir(cfg) / "search_results.csv")
    want = [
        table[(table.family == f) & (table.task == "tdt")].sort_values("val_error_cm")["name"].iloc[0]
        for f in FAMILIES
    ]
    assert [r.architecture for r in planned_runs(tdt_pick)] == want
    fixed = make_cfg(cfg.out_dir, train={"models": ["spatial_temporal_1_4_4_5233"]})
    assert [r.architecture for r in planned_runs(fixed)] == ["spatial_temporal_1_4_4_5233"]
    empty = make_cfg(tmp_path)
    with pytest.raises(SearchResultsMissing) as e:
        planned_runs(empty)
    msg = str(e.value)
    assert str(tmp_path / "search" / "search_results.csv") in msg and "deepdraw search" in msg
    assert main(["-q", "train", str(_toml(tmp_path, cfg_dict(tmp_path)))]) == 2


def _toml(tmp_path, data):
    p = tmp_path / "c.toml"
    p.write_text(
        "\n".join(
            f"[{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items())
            for s, vals in data.items()
        )
        + "\n"
    )
    return p


def test_pipeline_search_then_winners(searched):
    """The search stage adopts the search made above (no stamp), then train, activations use its winners."""
    cfg, _ = searched
    best = pd.read_csv(search_dir(cfg) / "best_per_family.csv")
    cfg = make_cfg(cfg.out_dir)
    cfg.given = ["run", "parallel", "train", "search", "activations"]  # no dataset sections: uses this one
    assert list(plan(cfg, ["search", "train", "activations"])) == ["search", "train", "activations"]
    recs = run_pipeline(cfg, only=["search", "train", "activations"])
    assert not any(r["skipped"] for r in recs.values())
    summary = pd.read_csv(RunPaths.of(cfg).models / "summary.csv")
    assert set(summary.architecture) == set(best.name)
    assert {p.stem for p in RunPaths.of(cfg).activations.glob("*.h5")} == set(summary.model)
    stamps = RunPaths.of(cfg).stamps
    assert set(json.loads((stamps / "train.done.json").read_text())["after"]) == {"assemble", "search"}
    st = status(cfg)
    assert st["search"] == "done" and st["train"] == "done" and st["activations"] == "done"
    again = run_pipeline(cfg, only=["search", "train", "activations"])
    assert all(r["skipped"] for r in again.values())
    # a changed search setting reruns the search and everything that uses its winners: refused first
    changed = make_cfg(cfg.out_dir, search={"select_by": "test"})
    changed.given = cfg.given
    with pytest.raises(DeepDrawError, match=r"stage 'search': config changed: search.select_by"):
        run_pipeline(changed, only=["search", "train", "activations"])
    # a fixed list: no search stage, and train does not depend on it (digests as before this stage)
    off = make_cfg(cfg.out_dir, search={"n_per_family": 0}, train={"models": ["spatial_temporal_1_4_4_5233"]})
    off.given = cfg.given
    assert "search" not in plan(off) and "search" not in status(off)
    on = make_cfg(cfg.out_dir, train={"models": ["spatial_temporal_1_4_4_5233"]})
    on.given = cfg.given
    assert stage_digest(off, "train") == stage_digest(on, "train")
    with pytest.raises(
        DeepDrawError, match=r"stage\(s\) search are off in this config: key .search.n_per_family. is 0"
    ):
        plan(off, ["search"])


def test_cli_search_trains_the_winners_seeds(searched, capsys):
    """``deepdraw search`` on 2 local Dask worker processes: one candidate (removed) trained again in a
    worker, the others read back; then the winners' seeds."""
    import shutil

    cfg, table = searched
    gone = search_dir(cfg) / table.directory.iloc[-1]
    shutil.rmtree(gone)
    data = cfg_dict(cfg.out_dir, train={"tasks": ["tdt"], "seeds": [3]})
    toml = _toml(cfg.out_dir.parent, data)
    assert main(["-q", "search", str(toml), "--workers", "2"]) == 0
    assert (gone / "search.json").is_file() and (gone / "best.pt").is_file()
    again = pd.read_csv(search_dir(cfg) / "search_results.csv")
    assert list(again.name) == list(table.name) and list(again.task) == list(table.task)
    seeds = pd.read_csv(search_dir(cfg) / "seeds_summary.csv")
    best = pd.read_csv(search_dir(cfg) / "best_per_family.csv")
    assert set(seeds.architecture) == set(best.name) and set(seeds.task) == {"tdt"} and len(seeds) == 4
    data["search"]["n_per_family"] = 0
    data["train"]["models"] = ["spatial_temporal_1_4_4_5233"]
    capsys.readouterr()
    assert main(["-q", "search", str(_toml(cfg.out_dir.parent, data)), "--no-seeds"]) == 2
    assert "are off in this config: key 'search.n_per_family' is 0" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- figures, report
def test_spearman_and_pairing():
    assert spearman(np.arange(5), -(np.arange(5) ** 3)) == pytest.approx(-1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([1, 3, 2, 4.0])) == pytest.approx(0.8)  # 1 - 6*2/60
    assert np.isnan(spearman(np.ones(4), np.arange(4)))
    d = art_vs_tdt(_planted().assign(best=False)).set_index("name")
    assert d.loc["st_b", "art"] == 0.95 and d.loc["st_b", "tdt"] == 0.9 and d.loc["l_a", "tdt"] == 0.1


def test_figures_and_report_section(searched, tmp_path):
    from deepdraw.report.build import build_report

    cfg, _ = searched
    table = pd.read_csv(search_dir(cfg) / "search_results.csv")
    made = search_figures(table, tmp_path)
    assert [p.name for p, _ in made] == ["search_art_vs_tdt.png", "search_depth.png"]
    for p, cap in made:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "Paper Fig. 3" in cap
    html = build_report(cfg).read_text()
    assert "architecture search" in html and "figures/search/search_art_vs_tdt.png" in html
    assert (RunPaths.of(cfg).report / "figures" / "search" / "search_depth.png").is_file()
    best = pd.read_csv(search_dir(cfg) / "best_per_family.csv")
    assert all(n in html for n in best.name)
