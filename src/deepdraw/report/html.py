"""HTML building blocks of the report: the inline CSS, tables, figure groups, the overview cards and
the per-model table.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..paths import SUMMARY_NAME
from ..settings import Config
from ..zoo.dataset_match import NOT_HELD_OUT
from .common import FigureGroup, FigureItem, RunView, esc, fmt_num, is_num
from .values import span

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- HTML
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f4}
main{max-width:1180px;margin:0 auto;padding:18px 28px 60px;background:#fff;box-shadow:0 0 0 1px #e4e4e0}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:34px 0 8px;padding-top:10px;border-top:2px solid #333}
h3{font-size:15px;margin:22px 0 6px}.sub{color:#666;margin:0 0 12px}
nav{margin:10px 0 4px;font-size:13px}nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f1f1ee;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.grp td{background:#fafaf7;font-weight:600;color:#444;padding-top:9px}
.missing{color:#a0522d}.ok{color:#1b7f3b}.warn{color:#b8860b}.muted{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 12px}
.card{border:1px solid #e1e1dc;border-radius:6px;padding:8px 12px;min-width:120px;background:#fcfcfa}
.card b{display:block;font-size:19px}.card span{color:#666;font-size:12px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;margin:8px 0}
figure{margin:0;border:1px solid #e6e6e1;border-radius:5px;padding:6px;background:#fff}
figure.wide{grid-column:1/-1}figure img{width:100%;height:auto;display:block}
figure.wide img{max-width:880px;margin:0 auto}
figcaption{font-size:12px;color:#444;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer;color:#0b5cad}
pre{background:#f5f5f2;border:1px solid #e4e4df;padding:8px 10px;font-size:12px;overflow:auto;max-height:520px}
ul.miss{margin:4px 0 10px;padding-left:20px;font-size:13px}code{font-size:12px}
.era{font-size:11px;color:#777}table.kv{width:auto;min-width:40%}table.kv td:first-child{font-weight:600;padding-right:24px}
"""


def html_table(
    head: Sequence[str], rows: Iterable[Sequence[str]], num: Sequence[int] = (), attrs: str = ""
) -> str:
    """A table; ``rows`` hold ready HTML; ``num`` are right-aligned column indices."""
    th = "".join(
        f'<th class="n">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>" for i, h in enumerate(head)
    )
    body = []
    for r in rows:
        tds = "".join(f'<td class="n">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{tds}</tr>")
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fig_html(items: Sequence[FigureItem]) -> str:
    """A grid of figures (image linked to itself, caption below); folded items go under a <details>."""

    def one(it: FigureItem) -> str:
        cls = ' class="wide"' if it.wide else ""
        return (
            f'<figure{cls}><a href="{esc(it.src)}"><img src="{esc(it.src)}" alt="{esc(it.caption)}" '
            f'loading="lazy"></a><figcaption>{esc(it.caption)}</figcaption></figure>'
        )

    head, rest = [i for i in items if not i.folded], [i for i in items if i.folded]
    out = f'<div class="figs">{"".join(one(i) for i in head)}</div>' if head else ""
    if rest:
        out += (
            f"<details><summary>{len(rest)} more figures</summary>"
            f'<div class="figs">{"".join(one(i) for i in rest)}</div></details>'
        )
    return out


def group_html(g: FigureGroup) -> str:
    out = f"<h3>{esc(g.title)}</h3>"
    if g.intro:
        out += f'<p class="sub">{esc(g.intro)}</p>'
    if g.missing:
        out += (
            '<ul class="miss">'
            + "".join(f'<li class="missing">missing — {esc(m)}</li>' for m in g.missing)
            + "</ul>"
        )
    return out + fig_html(g.items)


def fmt_time(s: Any) -> str:
    if not is_num(s):
        return "—"
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def to_toml(d: dict[str, Any]) -> str:
    lines = []
    for sec, vals in d.items():
        lines.append(f"[{sec}]")
        if isinstance(vals, dict):
            for k, v in vals.items():
                lines.append(f"{k} = {json.dumps(v, default=str)}")
        lines.append("")
    return "\n".join(lines)


def models_table_html(run: RunView, df) -> str:
    if df is None:
        return ""
    cols = [
        c
        for c in (
            "model",
            "source",
            "dataset_check",
            "task",
            "seed",
            "state",
            "epochs",
            "best_epoch",
            "stopped_by",
            "wall_s",
            "test_accuracy",
            "test_error_cm",
        )
        if c in df.columns
    ]
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            x = r[c]
            if c == "test_accuracy" and is_num(x):
                cells.append(esc(fmt_num(100 * float(x), 4)) + " %")
            elif c == "wall_s":
                cells.append(esc(fmt_time(x)))
            elif is_num(x):
                cells.append(esc(fmt_num(float(x), 3)))
            else:
                cells.append(esc("" if x is None or (isinstance(x, float) and math.isnan(x)) else x))
        rows.append(cells)
    num = [
        i
        for i, c in enumerate(cols)
        if c in ("seed", "epochs", "best_epoch", "wall_s", "test_accuracy", "test_error_cm")
    ]
    t = html_table(cols, rows, num)
    note = ""
    if "source" in df.columns:
        n_zoo = int((df["source"] == "zoo").sum())
        n_run = len(df) - n_zoo
        if n_zoo:
            note = (
                f'<p class="sub" id="models-source">{n_zoo} of these {len(df)} models (trained and untrained '
                "controls) are <b>shipped</b> paper-scale models (<code>deepdraw zoo list</code>): trained on the "
                "200,000-sample dataset of configs/paper.toml, not in this run, and evaluated here on this run's "
                f"test set (epochs and wall times are those of their paper-scale training); {n_run} were trained "
                "in this run.</p>"
            )
    if "dataset_check" in df.columns:
        held_in = df[df["dataset_check"].isin(NOT_HELD_OUT) & (df.get("state") != "untrained")]
        if len(held_in):
            note += (
                f'<p class="warn" id="models-dataset-check">{len(held_in)} shipped models were evaluated on a '
                "dataset of their own config but with other samples (a dataset regenerated on another "
                "machine): its test file may hold their training rows, so their test metrics here are not "
                "held out; their cards' metrics are (docs/zoo.md, <i>A regenerated dataset</i>).</p>"
            )
    return note + f"<details><summary>all {len(df)} model runs (models/summary.csv)</summary>{t}</details>"


def summary_numbers_html(values: dict[str, float], prefix: str, title: str) -> str:
    ks = sorted(k for k in values if k.startswith(prefix + "."))
    if not ks:
        return ""
    rows = [[f"<code>{esc(k)}</code>", esc(fmt_num(values[k], 4))] for k in ks]
    return f"<details><summary>{esc(title)}: all {len(ks)} numbers</summary>{html_table(['key', 'value'], rows, [1])}</details>"


def data_links(run: RunView) -> str:
    rp = run.rp
    srcs: list[tuple[str, Path]] = []
    for stage, folder in (
        ("svm", rp.svm),
        ("rsa", rp.rsa),
        ("tuning", rp.tuning),
        ("search", rp.root / "search"),
    ):
        if folder.is_dir():
            srcs += [(stage, p) for p in sorted(folder.glob("*.csv"))]
            srcs += [(stage, p) for p in sorted(folder.glob(SUMMARY_NAME))]
    if (rp.models / "summary.csv").exists():
        srcs.append(("models", rp.models / "summary.csv"))
    items = []
    for stage, p in srcs:
        rel = run.copy_data(p, stage)
        if rel:
            items.append(
                f'<li><a href="{esc(rel)}">{esc(run.rel(p))}</a> '
                f'<span class="muted">({p.stat().st_size / 1024:.0f} kB)</span></li>'
            )
        else:
            items.append(f'<li>{esc(run.rel(p))} <span class="missing">(too large, not copied)</span></li>')
    if not items:
        return '<p class="missing">No result tables in this run.</p>'
    return "<ul>" + "".join(items) + "</ul>"


def overview_cards(cfg: Config, values: dict[str, float], df) -> str:
    cards = [(fmt_num(cfg.kinematics.n_candidates, 0), "candidates (config)")]
    if "dataset.n_samples" in values:
        cards.append((fmt_num(values["dataset.n_samples"], 0), "samples"))
        cards.append(
            (
                f"{fmt_num(values.get('dataset.n_train'), 0)} / {fmt_num(values.get('dataset.n_test'), 0)}",
                "train / test",
            )
        )
    else:
        cards.append(("—", "samples (dataset missing)"))
    if df is not None:
        tr = df[df["_trained"]]
        cards.append((str(len(tr)), "trained models"))
        cards.append((str(int((~df["_trained"]).sum())), "untrained controls"))
        seeds = sorted({int(x) for x in tr.get("seed", []) if is_num(x)})
        cards.append((", ".join(map(str, seeds)) or "—", "seeds"))
        ep = [float(x) for x in tr.get("epochs", []) if is_num(x)]
        if ep:
            cards.append((span(ep), f"epochs (max {cfg.train.max_epochs})"))
    else:
        cards.append(("—", "models (not trained)"))
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(a)}</b><span>{esc(b)}</span></div>' for a, b in cards)
        + "</div>"
    )
