"""The HTML report of a ``deepdraw predict`` output folder, and the pipeline report's links to them.

:func:`build_predict_report` writes ``<folder>/index.html`` next to ``predict.h5``, the CSV tables and
the figures of :mod:`deepdraw.encode.figures` (linked by relative paths, so the folder opens offline
and can be moved or zipped whole; inline CSS of the pipeline report, no script). Everything it shows
is read from ``predict.h5`` (:func:`deepdraw.encode.results.load_results`): a missing or corrupt file is
one error naming it. The page holds no time stamp: rebuilding it from the same folder gives the same
bytes. ``deepdraw predict`` writes it; ``deepdraw predict-report FOLDER`` rebuilds it (and draws the
figures that are missing).

:func:`predict_links_html` is the pipeline report's paragraph listing the predict folders of a run
folder: ``<out_dir>/predict/<name>/`` and ``<out_dir>/encode/<name>/predict/`` (docs/encode.md).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from .. import store
from ..encode.figures import applicable_figures, best_model_layer, draw_figures
from ..encode.results import PredictResults, load_results
from ..errors import DeepDrawError
from .common import FigureItem
from .common import esc as _esc
from .html import CSS as _CSS
from .html import fig_html
from .html import html_table as _table
from .html import to_toml as _toml

__all__ = ["build_predict_report", "predict_folders", "predict_links_html"]

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.1
"""``predict.ev_threshold`` for a ``predict.h5`` whose config does not record one."""

_CAPTIONS = {
    "heatmap.png": "Median explained variance over neurons, one row per model file, one column per layer "
    "(0 = the spindle inputs). The brightest cell is the model and layer that predict the population best.",
    "best_layer.png": "For each model file, how many neurons each layer predicts best (the layer of highest "
    "EV per neuron, best_layers.csv).",
    "trained_untrained.png": "Median EV per layer of each trained model (solid) and of its untrained control "
    "(dashed, same architecture, random weights).",
    "noise_ceiling.png": "Per neuron: EV of the best layer against the neuron's split-half noise ceiling; "
    "points on the diagonal are predicted as well as their repeatable part allows.",
}

_HOW_TO_READ = """
<p><b>Explained variance (EV)</b> of a neuron, for one layer of one model: the share of the variance of
its binned activity (15 ms frames) that a linear read-out of the layer predicts on frames it was not fitted
on, <code>1 − Σ(y − ŷ)² / Σ(y − ȳ)²</code>, pooled over the test folds (blocks of
<code>predict.block_frames</code> frames, so no test frame lies next to a training frame). Per fold, the
layer's units are reduced to <code>predict.n_components</code> principal components fitted on the
training folds and a ridge penalty is chosen by inner cross-validation. 1 is a perfect prediction, 0 is
no better than the neuron's mean rate, and a negative EV is worse than the mean (a fit that does not
generalise). Spiking noise keeps every EV below 1: with repeated trials the <b>noise ceiling</b> says how
far below.</p>
<p><b>The table</b> summarises each model file and layer over the neurons: the median and mean EV, the
90th percentile, and the share of neurons whose EV exceeds the threshold. Layer 0 (<code>input</code>) is
the muscle spindle inputs themselves: a layer above it that predicts better has turned the inputs into
something closer to what the neurons carry. The best layer of each model file (highest median) is in
bold.</p>
<p><b>Trained vs untrained</b>: the untrained control of a model has the same architecture and the same
inputs with random weights. Where a trained layer predicts the neurons better than the same layer
untrained, the task training (not the architecture alone) put there what the neurons carry. The input
layers of the two are identical, so their EV is too.</p>
<p><b>Caveats</b>: the EV of a layer depends on the number of components kept; compare layers and
models at the same settings. Neurons that fire rarely have low EV whatever the model. The answer is
about these movements: a layer best for reaching may not be best for other behaviour.</p>
"""


def _num(x: float, digits: int = 3) -> str:
    """A fixed-point cell (EV, shares): ``-0.015``, ``0.312``; ``—`` for NaN."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _cards(cards: list[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{_esc(a)}</b><span>{_esc(b)}</span></div>' for a, b in cards)
        + "</div>"
    )


def _threshold(res: PredictResults, threshold: float | None) -> float:
    if threshold is not None:
        return float(threshold)
    cfg = res.attrs.get("config")
    v = cfg.get("predict", {}).get("ev_threshold") if isinstance(cfg, dict) else None
    return float(v) if isinstance(v, int | float) else DEFAULT_THRESHOLD


def _summary_html(res: PredictResults, summary, thr: float) -> str:
    """The model x layer table: one group of rows per model file."""
    head = ["layer", "median EV", "mean EV", "90th pct", f"EV > {thr:g}", "neurons"]
    cols = ["median", "mean", "q90", "frac_above", "n"]
    th = "".join(f'<th class="n">{_esc(h)}</th>' if i else f"<th>{_esc(h)}</th>" for i, h in enumerate(head))
    body = []
    for i, m in enumerate(res.models):
        s = summary[summary["model"] == m]
        kind = "trained" if res.trained[i] else "untrained"
        name = "" if res.model_names[i] == m else f"{res.model_names[i]} · "
        body.append(
            f'<tr class="grp"><td colspan="6">{_esc(m)} <span class="muted">· {_esc(name)}{kind}</span></td></tr>'
        )
        top = s["median"].idxmax() if np.isfinite(s["median"]).any() else None
        for idx, r in s.iterrows():
            cells = []
            for c in cols:
                v = r[c]
                txt = _pct(v) if c == "frac_above" else (f"{int(v):,}" if c == "n" else _num(v))
                cells.append(f'<td class="n" data-col="{c}">{_esc(txt)}</td>')
            label = f"{int(r['layer_index'])} · {r['layer']}"
            label = f"<b>{_esc(label)}</b>" if idx == top else _esc(label)
            body.append(
                f'<tr data-model="{_esc(m)}" data-layer="{_esc(r["layer"])}"><td>{label}</td>{"".join(cells)}</tr>'
            )
    return f'<table id="summary-table"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _pairs_html(res: PredictResults, summary) -> str:
    pairs = res.pairs()
    if not pairs:
        return (
            '<p class="missing">No untrained control among the model files (`deepdraw encode` writes one per '
            "model unless --no-untrained).</p>"
        )
    out = []
    for tr, un in pairs:
        rows = []
        for la in res.layers[tr]:
            if la not in res.layers[un]:
                continue
            a, b = res.layer_ev(tr, la), res.layer_ev(un, la)
            ok = np.isfinite(a) & np.isfinite(b)
            ma, mb = (float(np.median(a[ok])), float(np.median(b[ok]))) if ok.any() else (np.nan, np.nan)
            better = float((a[ok] > b[ok]).mean()) if ok.any() else np.nan
            rows.append(
                (la, [_esc(la), _esc(_num(ma)), _esc(_num(mb)), _esc(_num(ma - mb)), _esc(_pct(better))])
            )
        t = _table(
            ["layer", "trained median EV", "untrained median EV", "difference", "neurons better trained"],
            [r for _, r in rows],
            [1, 2, 3, 4],
            f' class="pair" data-trained="{_esc(tr)}" data-untrained="{_esc(un)}"',
        )
        out.append(f'<h3>{_esc(tr)} <span class="muted">vs {_esc(un)}</span></h3>{t}')
    return "".join(out)


def _ceiling_html(res: PredictResults, summary) -> str:
    if not res.has_ceiling:
        return (
            '<p class="muted">No noise ceiling: the neural file has no repeated trials (HDF5 <code>repeats</code>, '
            "docs/formats.md).</p>"
        )
    c = res.ceiling
    ok = np.isfinite(c)
    rows = []
    for m in res.models:
        s = summary[summary["model"] == m]
        if not np.isfinite(s["median"]).any():
            continue
        la = str(s.loc[s["median"].idxmax(), "layer"])
        e = res.layer_ev(m, la)
        use = ok & np.isfinite(e) & (c > 0)
        ratio = float(np.median(e[use] / c[use])) if use.any() else np.nan
        rows.append(
            [
                _esc(m),
                _esc(la),
                _esc(_num(float(np.median(e[np.isfinite(e)])))),
                _esc(_num(ratio)),
                f"{int(use.sum()):,}",
            ]
        )
    intro = (
        f'<p class="sub">Split-half noise ceiling of {int(ok.sum()):,} neurons: median {_num(float(np.median(c[ok])))}'
        f" (range {_num(float(c[ok].min()))} to {_num(float(c[ok].max()))}). The ceiling is the share of the trial "
        "average's variance that repeats across trials (Spearman-Brown corrected correlation of odd and even "
        "trials): the most EV any model can reach. EV / ceiling: the median over the neurons with a positive "
        "ceiling.</p>"
    )
    t = _table(["model file", "best layer", "median EV", "median EV / ceiling", "neurons"], rows, [2, 3, 4],
               ' id="ceiling-table"')  # fmt: skip
    return intro + t


def _figures_html(res: PredictResults, folder: Path, names: list[str]) -> str:
    have = [n for n in names if (folder / n).is_file()]
    items = [FigureItem(n, _CAPTIONS[n], wide=n == "heatmap.png") for n in have]
    miss = [n for n in names if n not in have]
    out = fig_html(items)
    if miss:
        out += (
            '<ul class="miss">'
            + "".join(
                f'<li class="missing">{_esc(n)} not drawn (predict.figures = false?); '
                f"<code>deepdraw predict-report {_esc(folder.resolve())}</code> draws it</li>"
                for n in miss
            )
            + "</ul>"
        )
    return out


def _read_encode_config(encode_dir: str | None) -> dict | None:
    if not encode_dir:
        return None
    p = Path(encode_dir) / "encoded.h5"
    try:
        cfg = store.read_attrs(p).get("config")
    except (DeepDrawError, OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) and cfg else None


def _provenance_html(res: PredictResults) -> str:
    a = res.attrs
    enc = a.get("encode_dir")
    kv = [
        ("predict.h5", f"<code>{_esc(res.path.resolve())}</code>"),
        ("encode folder", f"<code>{_esc(enc)}</code>" if enc else '<span class="muted">not recorded</span>'),
        (
            "neural file",
            f"<code>{_esc(a['neural_file'])}</code>"
            if a.get("neural_file")
            else '<span class="muted">not recorded</span>',
        ),  # fmt: skip
        ("frames used", _esc(f"{int(a['n_frames']):,}") if "n_frames" in a else "—"),
        (
            "frames left out",
            _esc(f"{int(a['n_frames_left_out']):,} (masked or rejected windows)")
            if "n_frames_left_out" in a
            else "—",
        ),  # fmt: skip
        ("git commit", f"<code>{_esc(a.get('git_commit', 'unknown'))}</code>"),
        ("deepdraw version", _esc(a.get("deepdraw_version", "?"))),
    ]
    out = ['<table class="kv" id="prov"><tbody>']
    out += [f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in kv]
    out.append("</tbody></table>")
    ins = a.get("inputs")
    if isinstance(ins, dict) and ins:
        out.append("<h3>Input files</h3>")
        out.append(_table(["file", "sha256"], [[_esc(k), f"<code>{_esc(v)}</code>"] for k, v in ins.items()]))
    held = a.get("model_info")
    info: dict = held if isinstance(held, dict) else {}
    rows = []
    for i, m in enumerate(res.models):
        d = info.get(m, {})
        ck = d.get("inputs", {}) if isinstance(d.get("inputs"), dict) else {}
        rows.append(
            [
                f"<code>{_esc(m)}</code>",
                _esc(res.model_names[i]),
                "trained" if res.trained[i] else "untrained",
                _esc(d.get("entry", "—")),
                "<br>".join(f"{_esc(k)}: <code>{_esc(v)}</code>" for k, v in ck.items()) or "—",
                _esc(", ".join(res.layers[m])),
            ]
        )
    out.append("<h3>Models</h3>")
    out.append(
        _table(
            ["model file", "model", "weights", "zoo name or checkpoint", "checkpoint sha256", "layers"], rows
        )
    )
    cfg = a.get("config")
    out.append("<h3>Resolved configuration of <code>deepdraw predict</code></h3>")
    out.append(
        f"<pre>{_esc(_toml(cfg))}</pre>" if isinstance(cfg, dict) else '<p class="muted">not recorded</p>'
    )
    ecfg = _read_encode_config(enc)
    if ecfg is not None:
        out.append("<h3>Resolved configuration of <code>deepdraw encode</code> (encoded.h5)</h3>")
        out.append(f"<pre>{_esc(_toml(ecfg))}</pre>")
    vers = a.get("versions")
    if isinstance(vers, dict) and vers:
        out.append("<h3>Library versions</h3>")
        out.append(_table(["library", "version"], [[_esc(k), _esc(v)] for k, v in sorted(vers.items())]))
    return "".join(out)


def _data_html(folder: Path) -> str:
    items = []
    for n in ("predict.h5", "predict.csv", "summary.csv", "best_layers.csv"):
        p = folder / n
        if p.is_file():
            items.append(
                f'<li><a href="{_esc(n)}">{_esc(n)}</a> <span class="muted">({p.stat().st_size / 1024:.0f} kB)</span></li>'
            )
        else:
            items.append(f'<li class="missing">{_esc(n)}: not found</li>')
    return '<ul id="data-files">' + "".join(items) + "</ul>"


def render(res: PredictResults, folder: Path, threshold: float) -> str:
    """The page (a string) of the results ``res`` of ``folder``."""
    summary = res.summary(threshold)
    n_tr = sum(res.trained)
    top = best_model_layer(summary)
    cards = [
        (f"{len(res.neurons):,}", "neurons"),
        (f"{n_tr} / {len(res.models) - n_tr}", "model files trained / untrained"),
        (f"{sum(len(v) for v in res.layers.values())}", "layers compared"),
    ]
    if top is not None:
        r = summary[(summary["model"] == top[0]) & (summary["layer"] == top[1])].iloc[0]
        cards.append((_num(float(r["median"])), f"best median EV: {top[0]}, {top[1]}"))
        cards.append((_pct(float(r["frac_above"])), f"of neurons above EV {threshold:g} there"))
    if res.has_ceiling:
        cards.append((_num(float(np.nanmedian(res.ceiling))), "median noise ceiling"))
    title = f"deepdraw predict: {folder.resolve().name}"
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_esc(title)}</h1>",
        '<p class="sub">Which model and which layer best predict recorded neurons: PCA + ridge regression, '
        "cross-validated explained variance per neuron (docs/encode.md).</p>",
        '<nav><a href="#how">How to read this</a><a href="#summary">1 Summary</a><a href="#figures">2 Figures</a>'
        '<a href="#trained-untrained">3 Trained vs untrained</a><a href="#ceiling">4 Noise ceiling</a>'
        '<a href="#provenance">5 Provenance</a><a href="#data">Data</a></nav>',
        '<details id="how" open><summary>How to read this</summary>' + _HOW_TO_READ + "</details>",
        '<h2 id="summary">1. Summary per model and layer</h2>',
        _cards(cards),
        f'<p class="sub">Statistics over the neurons; “EV &gt; {threshold:g}”: the share of neurons whose EV '
        "exceeds it (predict.ev_threshold, or --threshold of deepdraw predict-report). The same numbers, "
        "without the share, are in summary.csv.</p>",
        _summary_html(res, summary, threshold),
        '<h2 id="figures">2. Figures</h2>',
        _figures_html(
            res, folder, [n for n in applicable_figures(res) if n in ("heatmap.png", "best_layer.png")]
        ),
        '<h2 id="trained-untrained">3. Trained vs untrained</h2>',
        _figures_html(res, folder, [n for n in applicable_figures(res) if n == "trained_untrained.png"]),
        _pairs_html(res, summary),
        '<h2 id="ceiling">4. Noise ceiling</h2>',
        _figures_html(res, folder, [n for n in applicable_figures(res) if n == "noise_ceiling.png"]),
        _ceiling_html(res, summary),
        '<h2 id="provenance">5. Provenance</h2>',
        _provenance_html(res),
        '<h2 id="data">Data</h2>',
        _data_html(folder),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def build_predict_report(
    folder: str | os.PathLike, threshold: float | None = None, draw_missing: bool = False
) -> Path:
    """Write ``<folder>/index.html`` from ``<folder>/predict.h5``; returns its path.

    ``threshold``: the EV of the "share above" column (default: ``predict.ev_threshold`` recorded in
    ``predict.h5``). ``draw_missing``: first draw the figures that apply but are not in the folder
    (existing figures are kept). Raises :class:`DeepDrawError` naming ``predict.h5`` when it is missing,
    unreadable or not a predict artifact."""
    folder = Path(folder)
    res = load_results(folder)
    if draw_missing:
        draw_figures(res, folder)
    text = render(res, folder, _threshold(res, threshold))
    index = folder / "index.html"
    store.write_text_atomic(index, text)
    log.info("predict report: %s", index)
    return index


# ----------------------------------------------------------------------- links from the pipeline report
def predict_folders(root: Path) -> list[Path]:
    """The predict folders of a run folder: ``predict/<name>/`` and ``encode/<name>/predict/`` holding
    a ``predict.h5``."""
    found = sorted(root.glob("predict/*/predict.h5")) + sorted(root.glob("encode/*/predict/predict.h5"))
    return [p.parent for p in found]


def _one_line(folder: Path) -> str:
    try:
        res = load_results(folder)
    except DeepDrawError as e:
        return f'<span class="warn">{_esc(e)}</span>'
    summary = res.summary(DEFAULT_THRESHOLD)
    top = best_model_layer(summary)
    best = ""
    if top is not None:
        med = float(summary[(summary["model"] == top[0]) & (summary["layer"] == top[1])]["median"].iloc[0])
        best = f"; best: {top[0]}, {top[1]} (median EV {_num(med)})"
    return _esc(f"{len(res.neurons):,} neurons, {len(res.models)} model files{best}")


def predict_links_html(root: Path) -> str:
    """The pipeline report's paragraph on the predict folders of ``root`` ("" when there is none);
    links are relative to ``<root>/report/``."""
    folders = predict_folders(root)
    if not folders:
        return ""
    items = []
    for f in folders:
        rel = f.relative_to(root).as_posix()
        if (f / "index.html").is_file():
            head = f'<a href="../{_esc(rel)}/index.html">{_esc(rel)}/index.html</a>'
        else:
            head = f'<code>{_esc(rel)}/</code> <span class="muted">(no index.html: deepdraw predict-report {_esc(rel)})</span>'
        items.append(f"<li>{head}: {_one_line(f)}</li>")
    return (
        '<p class="sub" id="predict-links">Recorded neurons compared with model layers '
        "(<code>deepdraw predict</code>, docs/encode.md):</p><ul>" + "".join(items) + "</ul>"
    )
