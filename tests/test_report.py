"""The HTML report: built from a fake run folder, self-contained, honest about what is missing."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import numpy as np
import pandas as pd
import pytest

from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError
from deepdraw.report import build_report
from deepdraw.report.facts import FACTS

FAMS = {
    "spatial_temporal": "spatial_temporal_4_8-16-16-32_32-32-64-64_7293",
    "spatiotemporal": "spatiotemporal_4_8-8-32-64_7272",
    "lstm": "lstm_3_8-16-16_256",
}


# ------------------------------------------------------------------------------------ fake run folder
def _png(path: Path, kind: str = "line", w: float = 3.0, h: float = 2.0) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(w, h), dpi=50)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(len(path.name))
    if kind == "image":
        ax.imshow(rng.random((20, 20)))
    else:
        ax.plot(np.cumsum(rng.standard_normal(30)))
    ax.set_title(path.stem, fontsize=7)
    fig.savefig(path)


def _pcrt(path: Path, n: int, cfg_dict: dict) -> None:
    rng = np.random.default_rng(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["label"] = np.arange(n) % 20
        plane = np.where(np.arange(n) % 2 == 0, b"horizontal", b"vertical").astype("S10")
        f["plane"] = plane
        st = rng.uniform(-30, 30, (n, 3))
        st[:, 2] = np.where(plane == b"horizontal", rng.choice([-3.0, 0.0, 3.0], n), st[:, 2])
        st[:, 0] = np.where(plane == b"vertical", rng.choice([27.0, 30.0], n), st[:, 0])
        f["startpt"] = st
        f.attrs.update(
            {
                "kind": "pcrt",
                "deepdraw_version": "0.1.0",
                "git_commit": "abc123",
                "config": json.dumps(cfg_dict),
                "versions": json.dumps({"python": "3.11.2", "numpy": "1.26.4", "torch": "2.3.0"}),
            }
        )


def _metrics(path: Path, name: str, task: str, family: str, epochs: int) -> None:
    rng = np.random.default_rng(epochs)
    hist = []
    for e in range(1, epochs + 1):
        row = {
            "epoch": e,
            "lr": 5e-4,
            "action": "improved",
            "time_s": 1.0,
            "train_loss": 3.0 / e,
            "val_loss": 3.2 / e + 0.01 * rng.random(),
        }
        if task == "art":
            row.update(train_accuracy=1 - 0.9 / e, val_accuracy=1 - 0.95 / e)
        else:
            row.update(train_error_cm=2.0 / e, val_error_cm=2.2 / e)
        hist.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model_name": name,
                "task": task,
                "family": family,
                "n_train": 2880,
                "epochs": hist,
                "epochs_run": epochs,
                "finished": True,
            }
        )
    )


def make_fake_run(root: Path, seeds=(1, 2), partial: bool = False, cfg=None) -> Path:
    """A run folder with every kind of output (or, with ``partial``, only the dataset and stamps).

    With ``cfg`` the stamps carry the stage digests of that config (the stages read as done)."""
    from deepdraw import pipeline

    def digest(stage: str) -> str:
        return pipeline.stage_digest(cfg, stage) if cfg is not None else "other"

    cfg_dict = {"run": {"out_dir": str(root), "seed": 1}, "assembly": {"n_samples": 200}}
    _pcrt(root / "dataset" / "pcrt_train.h5", 160, cfg_dict)
    _pcrt(root / "dataset" / "pcrt_test.h5", 40, cfg_dict)
    _png(root / "figures" / "sample_train_0.png", w=6, h=3)
    stamps = root / ".stamps"
    stamps.mkdir(parents=True, exist_ok=True)
    pipeline.write_stage_table(cfg if cfg is not None else _cfg(root))  # as a pipeline run does
    for i, st in enumerate(("characters", "startpoints", "kinematics", "assemble")):
        (stamps / f"{st}.done.json").write_text(
            json.dumps(
                {
                    "digest": digest(st),
                    "wall_s": 10.0 * (i + 1),
                    "peak_rss_mb": 300.0 + i,
                    "finished": "2024-01-01 10:00:00",
                }
            )
        )
    if partial:
        (stamps / "svm.started.json").write_text(json.dumps({"digest": digest("svm")}))
        return root
    _png(root / "figures" / "dataset_summary.png", w=6, h=3)
    for st in ("svm", "train", "activations", "rsa", "tuning"):
        (stamps / f"{st}.done.json").write_text(
            json.dumps(
                {
                    "digest": digest(st),
                    "wall_s": 125.5,
                    "peak_rss_mb": 1234.5,
                    "finished": "2024-01-01 11:00:00",
                }
            )
        )
    # svm
    (root / "svm").mkdir()
    (root / "svm" / "summary.json").write_text(
        json.dumps(
            {
                "pairwise_mean_acc_spindle_info": 0.812,
                "pairwise_std_acc_spindle_info": 0.121,
                "pairwise_mean_acc_spindle_firing": 0.77,
                "multiclass_acc_spindle_info": 0.231,
                "tdt_linear_error_cm": 1.93,
            }
        )
    )
    _png(root / "svm" / "figures" / "pairwise_accuracy.png", "image")
    _png(root / "svm" / "figures" / "multiclass_accuracy.png")
    pd.DataFrame({"a": ["a", "b"], "b": ["c", "d"], "accuracy": [0.9, 0.8]}).to_csv(
        root / "svm" / "pairwise.csv", index=False
    )
    # models
    rows = []
    for fam, arch in FAMS.items():
        for task in ("art", "tdt"):
            for s in seeds:
                name = (arch.replace(fam, fam + "_r", 1) if task == "tdt" else arch) + f"_{s}"
                acc = {"spatial_temporal": 0.93, "spatiotemporal": 0.90, "lstm": 0.95}[fam] + 0.01 * s
                for trained in (True, False):
                    rows.append(
                        {
                            "model": name + ("" if trained else "r"),
                            "architecture": arch,
                            "family": fam,
                            "task": task,
                            "seed": s,
                            "state": "trained" if trained else "untrained",
                            "trained": trained,
                            "epochs": 12 if trained else 0,
                            "wall_s": 300.0 if trained else 0.0,
                            "test_accuracy": (acc if trained else 0.05) if task == "art" else np.nan,
                            "test_error_cm": np.nan if task == "art" else (0.4 + 0.1 * s if trained else 3.5),
                        }
                    )
                _metrics(root / "models" / name / "metrics.json", name, task, fam, 12)
    pd.DataFrame(rows).to_csv(root / "models" / "summary.csv", index=False)
    # rsa (the real stage's summary.json keeps no numbers)
    (root / "rsa").mkdir()
    (root / "rsa" / "summary.json").write_text("{}")
    orows = [
        {
            "model": "input",
            "family": "input",
            "arch": "input",
            "seed": "",
            "task": "",
            "trained": False,
            "layer": "spindle_info",
            "layer_index": 0,
            "relative_depth": 0.0,
            "oracle_r": 0.02,
        }
    ]
    for fam, arch in FAMS.items():
        for s in seeds:
            for trained in (True, False):
                for li in range(4):
                    orows.append(
                        {
                            "model": f"{arch}_{s}" + ("" if trained else "r"),
                            "family": fam,
                            "arch": arch,
                            "seed": s,
                            "task": "art",
                            "trained": trained,
                            "layer": f"L{li}",
                            "layer_index": li,
                            "relative_depth": li / 3,
                            "oracle_r": (0.05 * li if trained else 0.01),
                        }
                    )
    pd.DataFrame(orows).to_csv(root / "rsa" / "rsa_oracle.csv", index=False)
    _png(root / "rsa" / "oracle_similarity.png")
    _png(root / "rsa" / f"rdms_{FAMS['spatial_temporal']}_1.png", "image", w=9, h=2)
    _png(root / "rsa" / "cka_trained_vs_untrained.png")
    # tuning
    (root / "tuning").mkdir()
    (root / "tuning" / "summary.json").write_text(
        json.dumps(
            {
                "spindle_length_position_median": 0.41,
                "spindle_velocity_direction_median": 0.55,
                "spindle_velocity_dirspeed_median": 0.79,
                "spindle_pd_invariance_horizontal": 0.25,
                "spindle_pd_invariance_vertical": 0.47,
                "n_models": 4,
            }
        )
    )
    trows = []
    for s in seeds:
        for li in range(3):
            trows.append(
                {
                    "model": f"{FAMS['spatial_temporal']}_{s}",
                    "arch": FAMS["spatial_temporal"],
                    "task": "art",
                    "trained": True,
                    "seed": s,
                    "layer": f"L{li}",
                    "layer_index": li,
                    "orientation": "all",
                    "tuning_type": "labels",
                    "median": 0.1 + 0.05 * li + 0.01 * s,
                }
            )
    pd.DataFrame(trows).to_csv(root / "tuning" / "tuning_summary.csv", index=False)
    _png(root / "tuning" / "figures" / f"{FAMS['spatial_temporal']}_1_scores.png")
    _png(root / "tuning" / "figures" / f"{FAMS['spatial_temporal']}_1_pd.png")
    _png(root / "tuning" / "figures" / f"{FAMS['spatial_temporal']}_directions.png")
    return root


# ------------------------------------------------------------------------------------------ parsing
class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.imgs: list[str] = []
        self.other_urls: list[str] = []
        self.rows: dict[str, list[str]] = {}  # data-key -> texts of span.num in the row
        self._row: str | None = None
        self._num = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("src", "href"):
            if k in a and tag not in ("a", "img"):
                self.other_urls.append(a[k])
        if tag == "tr":
            self._row = a.get("data-key")
            if self._row:
                self.rows[self._row] = []
        if tag == "span" and a.get("class") == "num" and self._row:
            self._num = True

    def handle_endtag(self, tag):
        if tag == "span":
            self._num = False
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._num and self._row:
            self.rows[self._row].append(data)


def _parse(index: Path) -> _Page:
    p = _Page()
    p.feed(index.read_text(encoding="utf-8"))
    return p


def _check_self_contained(index: Path, page: _Page) -> None:
    folder = index.parent.resolve()
    for url in [*page.links, *page.imgs, *page.other_urls]:
        u = urlparse(url)
        assert not u.scheme and not u.netloc, f"external or absolute URL {url!r}"
        assert not url.startswith("/"), f"absolute path {url!r}"
        if not u.path:  # in-page anchor
            continue
        target = (folder / unquote(u.path)).resolve()
        assert target.is_file(), f"{url} does not resolve to a file"
        assert folder in target.parents, f"{url} points outside the report folder"
    text = index.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()


def _cfg(root: Path):
    return config_from_dict(
        {
            "run": {"out_dir": str(root), "seed": 1, "quiet": True},
            "assembly": {"n_samples": 200},
            "kinematics": {"n_candidates": 400},
        }
    )


# --------------------------------------------------------------------------------------------- tests
def test_full_fake_run(tmp_path):
    root = tmp_path / "run"
    make_fake_run(root, cfg=_cfg(root))
    index = build_report(_cfg(root))
    assert index == root / "report" / "index.html" and index.is_file()
    page = _parse(index)
    _check_self_contained(index, page)
    assert len(page.imgs) >= 10
    assert all(src.startswith("figures/") for src in page.imgs)
    # training-curve and per-model figures made by the report
    assert "figures/models/training_curves_art.png" in page.imgs
    assert "figures/models/training_curves_tdt.png" in page.imgs
    assert "figures/models/test_performance.png" in page.imgs
    # the paper-vs-run table: a numeric cell for each value provided
    expected = {
        "dataset.n_samples": 200,
        "dataset.n_train": 160,
        "dataset.n_test": 40,
        "dataset.n_classes": 20,
        "dataset.n_horizontal_planes": 3,
        "dataset.n_vertical_planes": 2,
        "svm.pairwise_mean_acc_spindle_info": 81.2,
        "svm.tdt_linear_error_cm": 1.93,
        "models.art_test_accuracy.spatial_temporal": 94.5,
        "models.art_test_accuracy.lstm": 96.5,
        "models.tdt_test_error_cm.spatiotemporal": 0.55,
        "models.untrained_art_test_accuracy": 5.0,
        "rsa.oracle_final_art.spatial_temporal": 0.15,
        "rsa.oracle_untrained_max": 0.01,
        "rsa.oracle_input.spindle_info": 0.02,
        "tuning.spindle_length_position_median": 0.41,
        "tuning.spindle_pd_invariance_vertical": 0.47,
        "tuning.label_selectivity_final": 0.215,
    }
    for key, want in expected.items():
        cells = page.rows.get(key)
        assert cells, f"no numeric cell for {key}"
        assert float(cells[0].replace(",", "")) == pytest.approx(want, rel=1e-2), key
    # every registry fact has a row
    assert set(page.rows) == {f.key for f in FACTS}
    text = " ".join(page.text)
    assert "86.6 ± 12.5 %" in text and "Fig. 2" in text and "Fig. 4" in text and "Fig. 7" in text
    # provenance: commit and library versions from the artifacts, stage times
    assert "abc123" in text and "torch" in text and "1,234 MB" in text
    assert "stale" not in text and text.count("done") >= 9
    assert not list(root.glob(".report.*")), "temporary folder left behind"


def test_partial_run_reports_missing(tmp_path):
    root = make_fake_run(tmp_path / "run", partial=True)
    index = build_report(_cfg(root))
    page = _parse(index)
    _check_self_contained(index, page)
    text = " ".join(page.text)
    for part in (
        "svm/summary.json",
        "models/summary.csv",
        "rsa/*.png",
        "tuning/summary.json",
        "figures/dataset_summary.png",
    ):
        assert part in text, f"{part} not reported missing"
    assert "started, not finished" in text  # svm has a started stamp only
    assert "No paired test of the paper can be computed" in text  # no tuning_stats.csv
    assert "zoo/report/index.html" not in text  # no zoo sub-run: no link
    (root / "zoo" / "report").mkdir(parents=True)
    (root / "zoo" / "report" / "index.html").write_text("<html></html>")
    assert 'href="../zoo/report/index.html"' in build_report(_cfg(root)).read_text()
    assert "stale (other config)" in text  # the stamps hold another config's digests
    assert page.rows["dataset.n_samples"] == ["200"]
    assert page.rows["models.art_test_accuracy.spatial_temporal"] == []  # no number, marked missing
    assert "not in this run" in text


def test_empty_run_folder_and_rebuild(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    index = build_report(_cfg(root))
    page = _parse(index)
    _check_self_contained(index, page)
    assert "pcrt_train.h5" in " ".join(page.text)
    (index.parent / "stale.txt").write_text("old")
    index2 = build_report(_cfg(root))  # rebuild replaces the whole folder
    assert index2.is_file() and not (index2.parent / "stale.txt").exists()
    assert not list(root.glob(".report.*"))


def test_missing_run_folder_is_an_error(tmp_path):
    with pytest.raises(DeepDrawError, match="run folder not found"):
        build_report(_cfg(tmp_path / "nope"))


def test_facts_registry():
    keys = [f.key for f in FACTS]
    assert len(keys) == len(set(keys))
    for f in FACTS:
        assert f.source and f.what and f.paper_text  # the form of the source: tests/test_report_sources.py
        assert f.scale in ("dataset", "svm", "models", "rsa", "tuning")
    paper = {f.key: f.paper for f in FACTS}
    assert paper["svm.pairwise_mean_acc_spindle_info"] == 86.6
    assert paper["models.art_test_accuracy.lstm"] == 99.56
    assert paper["tuning.label_selectivity_final"] == 0.210


def test_label_selectivity_from_per_model_dict(tmp_path):
    """``label_selectivity_final`` as the tuning stage returns it: one median per model."""
    from deepdraw.report.build import collect_values

    root = tmp_path / "run"
    (root / "tuning").mkdir(parents=True)
    st = FAMS["spatial_temporal"]
    per_model = {f"{st}_1": 0.20, f"{st}_2": 0.22, f"{st}_1r": 0.9, f"{FAMS['lstm']}_1": 0.9}
    unit_max = {f"{st}_1": 0.31, f"{st}_2": 0.35, f"{st}_1r": 0.99}
    (root / "tuning" / "summary.json").write_text(
        json.dumps({"label_selectivity_final": per_model, "label_selectivity_final_unit_max": unit_max})
    )
    values, _ = collect_values(_cfg(root))
    assert values["tuning.label_selectivity_final"] == pytest.approx(0.21)
    assert values["tuning.label_selectivity_final_unit_max"] == pytest.approx(0.35)
    assert values["tuning.label_selectivity_final.n"] == 2


def test_parse_model_names():
    from deepdraw.report.build import describe_model, parse_model

    st = FAMS["spatial_temporal"]
    assert parse_model(st) == {
        "family": "spatial_temporal", "regression": False, "seed": None, "untrained": False, "arch": st
    }  # fmt: skip
    m = parse_model("spatial_temporal_r_4_8-16-16-32_32-32-64-64_7293_2r")
    assert (m["arch"], m["seed"], m["untrained"], m["regression"]) == (st, 2, True, True)
    assert parse_model("lstm_3_8-16-16_256_5")["seed"] == 5
    assert parse_model("oracle_similarity") is None
    assert describe_model(f"{FAMS['spatiotemporal']}_1") == "spatiotemporal, ART, seed 1, trained"


def test_stage_figures_are_those_its_summary_lists(tmp_path):
    """A figure an earlier run left in a stage folder (a model since removed, a seed no longer
    embedded) is not shown as this run's when the stage's summary lists its figures."""
    from deepdraw.report.common import RunView

    root = tmp_path / "run"
    cfg = _cfg(root)
    rsa = root / "rsa"
    for name in ("oracle_similarity.png", "tsne_m_1.png", "tsne_m_2.png"):
        _png(rsa / name)
    view = RunView(cfg, tmp_path / "dest")
    assert [p.name for p in view.pngs(rsa)] == ["oracle_similarity.png", "tsne_m_1.png", "tsne_m_2.png"]
    listed = {
        "figures": {"oracle_similarity": str(rsa / "oracle_similarity.png")},
        "tsne": [f"x/{rsa.name}/tsne_m_1.png"],
    }
    (rsa / "summary.json").write_text(json.dumps(listed))
    assert [p.name for p in view.pngs(rsa)] == ["oracle_similarity.png", "tsne_m_1.png"]
    (rsa / "summary.json").write_text(json.dumps({"n_models": 2}))  # a summary naming no figure
    assert len(view.pngs(rsa)) == 3


def test_models_table_flags_shipped_models_tested_on_their_training_rows():
    """A shipped model installed on a same-config dataset with other samples (docs/zoo.md): the report
    says its test metrics are not held out; on another dataset (the demo's) it says nothing of the kind."""
    from deepdraw.report.html import models_table_html

    def table(status):
        rows = [
            {"model": "m_1", "source": "zoo", "dataset_check": status, "state": s, "test_accuracy": a}
            for s, a in (("trained", 0.99), ("untrained", 0.05))
        ]
        rows.append(
            {"model": "t_1", "source": "run", "dataset_check": "", "state": "trained", "test_accuracy": 0.5}
        )
        return models_table_html(None, pd.DataFrame(rows))

    flagged = table("different samples")
    assert 'id="models-dataset-check">1 shipped models' in flagged  # the trained one, not its control
    assert "metrics differ" in table("metrics differ") and 'id="models-dataset-check"' in table(
        "metrics differ"
    )
    for ok in ("another dataset", "same samples", "metrics match"):
        assert 'id="models-dataset-check"' not in table(ok)
    assert "<td>another dataset</td>" in table("another dataset")  # the status is a column of the table
