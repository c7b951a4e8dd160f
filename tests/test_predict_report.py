"""The HTML report of a ``deepdraw predict`` folder (index.html, ``deepdraw predict-report``) and the
pipeline report's links to the predict folders of a run."""

from __future__ import annotations

import hashlib
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import numpy as np
import pandas as pd
import pytest
from test_predict import planted, synthetic_encode_dir

from deepdraw.cli import main
from deepdraw.config import Config, config_from_dict
from deepdraw.encode.predict import run_predict

THR = 0.3  # predict.ev_threshold of the planted run (between the layers' medians)


class _Page(HTMLParser):
    """Rows of the summary and pair tables (cells by column), image sources, link targets, text."""

    def __init__(self) -> None:
        super().__init__()
        self.summary: dict[tuple[str, str], dict[str, str]] = {}
        self.pairs: dict[tuple[str, str], list[list[str]]] = {}
        self.imgs: list[str] = []
        self.links: list[str] = []
        self.bold_rows: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._row: tuple[str, str] | None = None
        self._col: str | None = None
        self._pair: tuple[str, str] | None = None
        self._cells: list[str] | None = None
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "a":
            self.links.append(a["href"])
        if tag == "table" and "pair" in (a.get("class") or ""):
            self._pair = (a["data-trained"], a["data-untrained"])
            self.pairs[self._pair] = []
        if tag == "tr" and "data-model" in a:
            self._row = (a["data-model"], a["data-layer"])
            self.summary[self._row] = {}
        if tag == "tr" and self._pair is not None:
            self._cells = []
        if tag == "td":
            self._col, self._in_td = a.get("data-col"), True
            if self._cells is not None:
                self._cells.append("")
        if tag == "b" and self._row is not None:
            self.bold_rows.append(self._row)

    def handle_endtag(self, tag):
        if tag == "td":
            self._col, self._in_td = None, False
        if tag == "tr":
            if self._pair is not None and self._cells:
                self.pairs[self._pair].append(self._cells)
            self._row, self._cells = None, None
        if tag == "table":
            self._pair = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._col is not None:
            self.summary[self._row][self._col] = self.summary[self._row].get(self._col, "") + data
        if self._cells is not None and self._in_td:
            self._cells[-1] += data


def _parse(index: Path) -> _Page:
    p = _Page()
    p.feed(index.read_text(encoding="utf-8"))
    return p


def _value(cell: str) -> float:
    """A table cell: ``0.312``, ``58.3 %`` (-> 0.583), ``1,200``."""
    s = cell.strip().replace(",", "")
    return float(s[:-1]) / 100 if s.endswith("%") else float(s)


def _run(root: Path, figures: bool = True) -> Path:
    """A planted run: model A (trained) drives 12 Poisson neurons from layer L2, 4 repeats; its control
    A_untrained has other random weights."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    acts = synthetic_encode_dir(root, rng, n_mov=6, T=200, models=("A", "A_untrained"))
    _, lam = planted(rng, acts["A"]["L2"][:, 10:210].reshape(-1, 30), 12)
    with h5py.File(root / "rep.h5", "w") as f:
        f["repeats"] = rng.poisson(np.broadcast_to(lam, (4, *lam.shape))).astype(float)
    cfg = Config()
    cfg.run.quiet, cfg.predict.folds, cfg.predict.n_components = True, 3, 10
    cfg.predict.ev_threshold, cfg.predict.figures = THR, figures
    run_predict(root, root / "rep.h5", cfg, root / "pred")
    return root / "pred"


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("planted") / "enc")


def _non_blank(png: Path) -> None:
    from matplotlib.image import imread

    img = imread(png)[..., :3]
    assert img.std() > 0.05, f"{png.name} looks blank"
    assert (img.min(axis=-1) < 0.9).mean() > 0.01, f"{png.name}: almost every pixel white"


def test_report_tables_equal_the_csvs_and_figures_are_drawn(planted_run):
    out = planted_run
    index = out / "index.html"
    page = _parse(index)
    summary = pd.read_csv(out / "summary.csv")
    per = pd.read_csv(out / "predict.csv")
    # every (model file, layer) of summary.csv is a row with the same statistics (3 decimals shown)
    assert set(page.summary) == set(zip(summary["model"], summary["layer"]))
    for r in summary.itertuples():
        cells = page.summary[(r.model, r.layer)]
        for col in ("median", "mean", "q90"):
            assert _value(cells[col]) == pytest.approx(getattr(r, col), abs=6e-4), (r.model, r.layer, col)
        assert int(_value(cells["n"])) == r.n
        ev = per.loc[(per["model"] == r.model) & (per["layer"] == r.layer), "ev"]
        assert _value(cells["frac_above"]) == pytest.approx((ev > THR).mean(), abs=6e-4)
    assert f"EV > {THR:g}" in "".join(page.text)
    # each model file's layer of highest median EV is in bold; the trained model beats its control
    tops = summary.loc[summary.groupby("model")["median"].idxmax()]
    assert sorted(page.bold_rows) == sorted(zip(tops["model"], tops["layer"]))
    rows = {c[0]: c for c in page.pairs[("A", "A_untrained")]}
    assert set(rows) == {"input", "L1", "L2", "L3"}
    for la, cells in rows.items():
        a = per[(per["model"] == "A") & (per["layer"] == la)].set_index("neuron")["ev"]
        b = per[(per["model"] == "A_untrained") & (per["layer"] == la)].set_index("neuron")["ev"]
        assert _value(cells[1]) == pytest.approx(a.median(), abs=6e-4)
        assert _value(cells[2]) == pytest.approx(b.median(), abs=6e-4)
        assert _value(cells[4]) == pytest.approx((a > b.loc[a.index]).mean(), abs=6e-4)
    assert _value(rows["L2"][3]) > 0.2
    # noise ceiling: its median as in predict.csv
    ceiling = per.drop_duplicates("neuron")["noise_ceiling"]
    assert f"median {ceiling.median():.3f}" in "".join(page.text)
    # figures: the four apply (a pair, repeats), exist and are not blank
    assert page.imgs == ["heatmap.png", "best_layer.png", "trained_untrained.png", "noise_ceiling.png"]
    for src in page.imgs:
        _non_blank(out / src)
    # self-contained: every link is relative and resolves inside the folder; no script, no web address
    for url in page.links + page.imgs:
        u = urlparse(url)
        assert not u.scheme and not u.netloc and not url.startswith("/"), url
        if u.path:
            target = (out / unquote(u.path)).resolve()
            assert target.is_file() and out.resolve() in target.parents, url
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text and "http://" not in text and "https://" not in text
    # provenance: the encode folder, the neural file and its sha256, the resolved config
    sha = hashlib.sha256((out.parent / "rep.h5").read_bytes()).hexdigest()
    assert str(out.parent.resolve()) in text and str((out.parent / "rep.h5").resolve()) in text
    assert sha in text and "n_components = 10" in text and f"ev_threshold = {THR}" in text


def test_rebuild_is_idempotent_and_draws_missing_figures(tmp_path, capsys, monkeypatch):
    out = _run(tmp_path / "enc", figures=False)
    first = (out / "index.html").read_bytes()
    page = _parse(out / "index.html")
    assert page.imgs == [] and "not drawn" in "".join(page.text)
    assert not list(out.glob("*.png"))
    # the rebuild draws the missing figures; the page then shows them
    assert main(["-q", "predict-report", str(out)]) == 0
    second = (out / "index.html").read_bytes()
    assert second != first and len(_parse(out / "index.html").imgs) == 4
    pngs = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(pngs) == 4
    # same folder, same page and figures (named by a relative path, from another working directory)
    monkeypatch.chdir(out.parent)
    assert main(["-q", "predict-report", out.name]) == 0
    assert (out / "index.html").read_bytes() == second
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == pngs
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary file left behind"
    # another threshold: the column and its values follow, the rest does not change
    assert main(["-q", "predict-report", str(out), "--threshold", "0.05"]) == 0
    page = _parse(out / "index.html")
    per = pd.read_csv(out / "predict.csv")
    ev = per.loc[(per["model"] == "A") & (per["layer"] == "input"), "ev"]
    assert _value(page.summary[("A", "input")]["frac_above"]) == pytest.approx((ev > 0.05).mean(), abs=6e-4)
    assert "EV > 0.05" in "".join(page.text)
    capsys.readouterr()


def test_missing_or_corrupt_predict_h5_is_one_error_naming_the_file(tmp_path, planted_run, capsys):
    def err(folder: Path) -> str:
        assert main(["-q", "predict-report", str(folder)]) == 2
        return capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    e = err(empty)
    assert str(empty / "predict.h5") in e and "file not found" in e and "Traceback" not in e
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "predict.h5").write_bytes(b"not hdf5 at all" * 100)
    e = err(corrupt)
    assert str(corrupt / "predict.h5") in e and "not a readable HDF5 file" in e
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (planted_run / "predict.h5").read_bytes()
    (truncated / "predict.h5").write_bytes(data[: len(data) // 2])
    assert str(truncated / "predict.h5") in err(truncated)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(planted_run.parent / "encoded.h5", wrong / "predict.h5")
    e = err(wrong)
    assert str(wrong / "predict.h5") in e and "'kind'" in e and "'predict'" in e
    noattr = tmp_path / "noattr"
    noattr.mkdir()
    shutil.copy(planted_run / "predict.h5", noattr / "predict.h5")
    with h5py.File(noattr / "predict.h5", "r+") as f:
        del f.attrs["layers"]
    e = err(noattr)
    assert str(noattr / "predict.h5") in e and "attribute 'layers'" in e
    assert not (empty / "index.html").exists() and not (corrupt / "index.html").exists()


def test_pipeline_report_links_the_predict_folders_of_a_run(tmp_path, planted_run):
    from deepdraw.report import build_report

    root = tmp_path / "run"
    cfg = config_from_dict({"run": {"out_dir": str(root), "quiet": True}})
    root.mkdir()
    assert 'id="predict-links"' not in build_report(cfg).read_text()  # none: no paragraph
    shutil.copytree(planted_run, root / "predict" / "lab1")
    bad = root / "encode" / "lab2" / "predict"
    bad.mkdir(parents=True)
    (bad / "predict.h5").write_bytes(b"garbage")
    index = build_report(cfg)
    text = index.read_text()
    assert 'href="../predict/lab1/index.html"' in text
    assert (index.parent / "../predict/lab1/index.html").resolve().is_file()
    best = pd.read_csv(planted_run / "summary.csv").sort_values("median").iloc[-1]
    assert f"best: {best['model']}, {best['layer']} (median EV {best['median']:.3f})" in text
    # an unreadable one is named with its error, the report is still built
    assert "encode/lab2/predict/" in text and "not a readable HDF5 file" in text
