"""The report page: the four sections put together (:func:`render`)."""

from __future__ import annotations

import logging
import math
from typing import Any

from .common import FigureGroup, RunView, esc, is_num, read_csv
from .facts import FACTS
from .html import (
    CSS,
    fmt_time,
    group_html,
    html_table,
    models_table_html,
    overview_cards,
    summary_numbers_html,
    to_toml,
)
from .paper import facts_html
from .provenance import artifact_provenance, config_diff
from .stats import compare_tests, paired_tests_html

log = logging.getLogger(__name__)


def render(
    run: RunView,
    values: dict[str, float],
    scale: dict[str, str],
    df,
    groups: list[FigureGroup],
    stage_rows: list[dict[str, Any]],
    data_html: str,
) -> str:
    """The page: title and navigation, 1 overview, 2 figures, 3 paper vs this run, 4 provenance, data."""
    cfg = run.cfg
    title = cfg.report.title or "deepdraw run"
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
    ]
    parts.append(f"<h1>{esc(title)}</h1>")
    parts.append(
        f'<p class="sub">Run folder <code>{esc(run.rp.root.name)}</code> · config '
        f"<code>{esc(cfg.origin())}</code> · seed {cfg.run.seed} · "
        f"re-implementation of Sandbrink, Mamidanna et al., eLife 2023 (DeepDraw)</p>"
    )
    parts.append(
        '<nav><a href="#overview">1 Overview</a><a href="#figures">2 Figures 2–7</a>'
        '<a href="#paper-vs-run-section">3 Paper vs this run</a><a href="#provenance">4 Provenance</a>'
        '<a href="#data">Data</a></nav>'
    )

    overview, srows = _overview_section(run, values, df, stage_rows)
    parts.append(overview)
    parts.append(_figures_section(run, values, df, groups))
    parts.append(_paper_section(run, values, scale))
    parts.append(_provenance_section(run, srows))
    parts.append('<h2 id="data">Data</h2>')
    parts.append(data_html)
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _overview_section(
    run: RunView, values: dict[str, float], df, stage_rows: list[dict[str, Any]]
) -> tuple[str, list[list[str]]]:
    """Section 1 (scale cards, the stage table, missing parts) and the stage table's cells."""
    cfg = run.cfg
    parts: list[str] = []
    # 1 overview
    parts.append('<h2 id="overview">1. Overview</h2>')
    parts.append(overview_cards(cfg, values, df))
    zoo_report = run.rp.root / "zoo" / "report" / "index.html"
    if zoo_report.is_file():
        parts.append(
            '<p class="ok" id="zoo-link">The shipped paper-scale models (<code>deepdraw zoo list</code>) on this '
            'run\'s test set, with every analysis of this report: <a href="../zoo/report/index.html">'
            "zoo/report/index.html</a> (configs/demo-zoo.toml).</p>"
        )
    from .predict import (
        predict_links_html,  # here, not at the top: report.predict imports the report's modules
    )

    parts.append(predict_links_html(run.rp.root))
    srows = []
    total = 0.0
    for r in stage_rows:
        cls = {"done": "ok", "not run": "missing", "this report": "muted"}.get(r["status"], "warn")
        if is_num(r["wall_s"]):
            total += float(r["wall_s"])
        srows.append(
            [
                f"<b>{esc(r['stage'])}</b>",
                esc(r["doc"]),
                f'<span class="{cls}">{esc(r["status"])}</span>',
                esc(fmt_time(r["wall_s"])),
                esc(f"{float(r['peak_rss_mb']):,.0f} MB" if is_num(r["peak_rss_mb"]) else "—"),
                esc(r["finished"]),
            ]
        )
    if srows:
        parts.append(
            html_table(
                ["stage", "what", "status", "wall time", "peak memory", "finished"],
                srows,
                [3, 4],
                ' id="stages"',
            )
        )
        parts.append(f'<p class="sub">Total wall time of the finished stages: {esc(fmt_time(total))}.</p>')
    else:
        parts.append('<p class="missing">No stage stamps found (.stamps/).</p>')
    if run.missing:
        parts.append(
            '<h3>Missing parts</h3><ul class="miss" id="missing">'
            + "".join(f'<li class="missing"><code>{esc(w)}</code>: {esc(y)}</li>' for w, y in run.missing)
            + "</ul>"
        )
    else:
        parts.append('<p class="ok">Every part of the run is present.</p>')

    return "\n".join(parts), srows


def _figures_section(run: RunView, values: dict[str, float], df, groups: list[FigureGroup]) -> str:
    """Section 2: the figure groups (the per-model table after Figure 3E) and the stages' numbers."""
    parts: list[str] = []
    # 2 figures
    parts.append('<h2 id="figures">2. The paper\'s Figures 2–7 from this run</h2>')
    parts.append(
        '<p class="sub">Every figure is made from this run\'s data; captions name the paper figure it '
        "corresponds to. Click a figure for full size.</p>"
    )
    for g in groups:
        parts.append(group_html(g))
        if g.title.startswith("Figure 3E"):
            parts.append(models_table_html(run, df))
    parts.append(summary_numbers_html(values, "svm", "svm/summary.json"))
    parts.append(summary_numbers_html(values, "rsa", "rsa values"))
    parts.append(summary_numbers_html(values, "tuning", "tuning values"))

    return "\n".join(parts)


def _paper_section(run: RunView, values: dict[str, float], scale: dict[str, str]) -> str:
    """Section 3: every fact of the paper this run computed, and the paper's paired t-tests."""
    parts: list[str] = []
    # 3 paper vs run
    n_have = sum(1 for f in FACTS if f.key in values and math.isfinite(values[f.key]))
    parts.append('<h2 id="paper-vs-run-section">3. Paper vs this run</h2>')
    parts.append(
        f'<p class="sub">{n_have} of {len(FACTS)} numbers of the paper computed by this run. The last column '
        "cites each paper value by the figure, table or section of Sandbrink, Mamidanna et al., eLife "
        "2023;12:e81499 (doi:10.7554/eLife.81499) it comes from; preprint-era values cite the file of the "
        "original repository, amathislab/DeepDraw, they were read from (pickles of the 2020 preprint, "
        "1-channel spindle inputs) and are rough checks only. "
        "A small run is not expected to match the paper: compare its scale with the paper's.</p>"
    )
    parts.append(facts_html(values, scale))
    parts.append('<h3 id="paper-tests-section">Statistics over seeds: the paper\'s paired t-tests</h3>')
    parts.append(
        '<p class="sub">Per layer, paired over seeds: ART vs TDT (median tuning scores) and ART-trained vs '
        "untrained (preferred-direction uniformity and invariance), from <code>tuning/tuning_stats.csv</code>. "
        "The paper's t has df = 4 (5 seeds); <i>agrees</i> = same sign and Bonferroni p &lt; 0.05 here.</p>"
    )
    parts.append(paired_tests_html(compare_tests(read_csv(run.rp.tuning / "tuning_stats.csv"))))

    return "\n".join(parts)


def _provenance_section(run: RunView, srows: list[list[str]]) -> str:
    """Section 4: commits and versions recorded in the artifacts, config differences, time and memory per
    stage, and the resolved configuration."""
    cfg = run.cfg
    found, versions = artifact_provenance(run)
    commits = sorted({str(a.get("git_commit", "unknown")) for _, a in found})
    dd_versions = sorted({str(a.get("deepdraw_version", "?")) for _, a in found})
    parts: list[str] = []
    # 4 provenance
    parts.append('<h2 id="provenance">4. Provenance</h2>')
    prov = [
        [
            "git commit",
            "<br>".join(f"<code>{esc(c)}</code>" for c in commits)
            or '<span class="missing">no artifacts</span>',
        ],
        ["deepdraw version", esc(", ".join(dd_versions)) or "—"],
    ]
    if len(commits) > 1:
        prov.append(["note", '<span class="warn">artifacts were written by different commits</span>'])
    parts.append(
        '<table class="kv" id="commit"><tbody>'
        + "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in prov)
        + "</tbody></table>"
    )
    notes = config_diff(cfg, found)
    if notes:
        parts.append(
            '<ul class="miss">' + "".join(f'<li class="warn">{esc(n)}</li>' for n in notes) + "</ul>"
        )
    if found:
        parts.append(
            html_table(
                ["artifact", "kind", "git commit", "deepdraw"],
                [
                    [
                        f"<code>{esc(rel)}</code>",
                        esc(a.get("kind", "")),
                        f"<code>{esc(a.get('git_commit', ''))}</code>",
                        esc(a.get("deepdraw_version", "")),
                    ]
                    for rel, a in found
                ],
            )
        )
    if versions:
        parts.append("<h3>Library versions (recorded in the artifacts)</h3>")
        parts.append(
            html_table(["library", "version"], [[esc(k), esc(v)] for k, v in sorted(versions.items())])
        )
    else:
        parts.append('<p class="missing">No library versions recorded (no readable artifact).</p>')
    if srows:
        parts.append("<h3>Time and peak memory per stage</h3>")
        parts.append(
            html_table(
                ["stage", "status", "wall time", "peak memory (RSS)"],
                [[r[0], r[2], r[3], r[4]] for r in srows],
                [2, 3],
            )
        )
    parts.append("<h3>Resolved configuration</h3>")
    parts.append(f"<pre>{esc(to_toml(cfg.to_dict()))}</pre>")

    return "\n".join(parts)
