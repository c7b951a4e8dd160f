"""Section 3: the paper-vs-run table (one row per fact, with the run's scale and the paper's source)."""

from __future__ import annotations

import logging
import math

from .common import esc, fmt_num
from .facts import FACTS, PAPER_SCALE, Fact

log = logging.getLogger(__name__)


def facts_html(values: dict[str, float], scale: dict[str, str]) -> str:
    groups = {
        "dataset": "Dataset",
        "svm": "Linear baselines",
        "models": "Networks",
        "rsa": "Representational similarity",
        "tuning": "Single units",
    }
    rows_html = []
    head = ["quantity", "paper", "this run", "run vs paper", "scale of this run", "source"]
    last = None
    for f in FACTS:
        if f.scale != last:
            last = f.scale
            rows_html.append(
                f'<tr class="grp"><td colspan="6">{esc(groups.get(f.scale, f.scale))} '
                f'<span class="muted">· this run: {esc(scale.get(f.scale, "—"))} · paper: '
                f"{esc(PAPER_SCALE.get(f.scale, '—'))}</span></td></tr>"
            )
        rows_html.append(_fact_row(f, values, scale))
    th = "".join(
        f'<th class="n">{esc(h)}</th>' if i in (1, 2, 3) else f"<th>{esc(h)}</th>" for i, h in enumerate(head)
    )
    return f'<table id="paper-vs-run"><thead><tr>{th}</tr></thead><tbody>{"".join(rows_html)}</tbody></table>'


def _fact_row(f: Fact, values: dict[str, float], scale: dict[str, str]) -> str:
    v = values.get(f.key)
    unit = f" {f.unit}" if f.unit else ""
    era = ' <span class="era">(preprint-era value)</span>' if f.era != "eLife" else ""
    what = f'{esc(f.what)}{era}<br><code class="muted">{esc(f.key)}</code>'
    sc = f'<span class="muted">{esc(scale.get(f.scale + ".short", "—"))}</span>'
    if v is None or not math.isfinite(v):
        run_cell = '<span class="missing">not in this run</span>'
        diff = "—"
    else:
        factor = 100.0 if f.percent and abs(v) <= 1.0 else 1.0
        x = v * factor
        sp = values.get(f.spread_key) if f.spread_key else None
        spread = f" ± {esc(fmt_num(sp * factor, 2))}" if sp is not None and math.isfinite(sp) else ""
        label = f" ({esc(f.spread_label)})" if spread and f.spread_label else ""
        run_cell = f'<span class="num">{esc(fmt_num(x, f.digits))}</span>{spread}{esc(unit)}{label}'
        if f.paper is None:
            diff = "—"
        elif f.digits == 0 and f.paper:
            diff = esc(f"{fmt_num(100 * x / f.paper, 3)} % of paper")
        else:
            d = x - f.paper
            diff = esc(("+" if d > 0 else "") + fmt_num(d, 2) + (" pp" if f.unit == "%" else unit))
    return (
        f'<tr data-key="{esc(f.key)}"><td>{what}</td><td class="n">{esc(f.paper_text)}</td>'
        f'<td class="n run">{run_cell}</td><td class="n">{diff}</td><td>{sc}</td><td>{esc(f.source)}</td></tr>'
    )
