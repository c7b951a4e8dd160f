"""The paper's paired t statistics over seeds beside this run's (the report's "statistics over seeds").

The paper tests, per layer and with paired t-tests over its 5 seeds (df = 4), ART- against TDT-trained
models (median direction and position tuning scores) and ART-trained models against their untrained
controls (preferred-direction uniformity, invariance across planes): Sandbrink et al. 2023, §Results
"Single unit encoding properties and decodability" and "Uniformity and coding invariance". The tuning
stage writes the same tests for the run (``tuning/tuning_stats.csv``,
:func:`deepdraw.tuning.summary.paired_tests`); :func:`compare_tests` puts the two side by side.

Layer numbers: the paper's L1 is the first layer after the spindle inputs, our ``layer_index`` 1
(``layer_index`` 0 is the input layer).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from deepdraw.names import identify

__all__ = ["PaperTest", "PAPER_TESTS", "compare_tests", "paired_tests_html"]


@dataclass(frozen=True)
class PaperTest:
    """One family of per-layer paired t-tests of the paper."""

    what: str  # plain words
    comparison: str  # as in tuning_stats.csv: "art_vs_tdt" or "trained_vs_untrained"
    family: str
    task: str  # task of the rows in tuning_stats.csv ("art" for ART vs untrained; "art/tdt" for ART vs TDT)
    orientation: str
    tuning_type: str
    metric: str
    t: dict[int, float]  # layer index -> the paper's t (df = 4)
    source: str  # the paper's figure and section (Sandbrink et al. 2023)


_ART_TDT = "Sandbrink et al. 2023, Fig. 5F; §Results “Single unit encoding properties and decodability”"
_UNIFORM = "Sandbrink et al. 2023, Fig. 7D; §Results “Uniformity and coding invariance”"
_INVARIANT = "Sandbrink et al. 2023, Fig. 7E; §Results “Uniformity and coding invariance”"
PAPER_TESTS: tuple[PaperTest, ...] = (
    PaperTest(
        "ART vs TDT, median direction tuning score",
        "art_vs_tdt", "spatial_temporal", "art/tdt", "horizontal", "dir", "median",
        {1: 10.44, 2: 17.15, 3: 41.46, 4: 37.63, 5: 25.05, 6: 14.32, 7: 3.47, 8: 7.61}, _ART_TDT,
    ),
    PaperTest(
        "ART vs TDT, median position tuning score",
        "art_vs_tdt", "spatial_temporal", "art/tdt", "horizontal", "pos_cart", "median",
        {1: -10.00, 2: -24.62, 3: -19.15, 4: -13.08, 5: -21.57, 6: -57.55, 7: -20.80, 8: -16.08}, _ART_TDT,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction deviation from uniform",
        "trained_vs_untrained", "spatial_temporal", "art", "horizontal", "dir", "uniformity",
        {3: -3.55, 4: -5.50, 5: -4.60, 6: -6.12}, _UNIFORM,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction deviation from uniform",
        "trained_vs_untrained", "spatiotemporal", "art", "horizontal", "dir", "uniformity",
        {1: -4.25, 2: -2.46}, _UNIFORM,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction deviation from uniform",
        "trained_vs_untrained", "lstm", "art", "horizontal", "dir", "uniformity",
        {2: -2.88, 3: -3.25}, _UNIFORM,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction invariance across vertical planes (MAD)",
        "trained_vs_untrained", "spatial_temporal", "art", "vertical", "dir", "invariance",
        {3: -10.30, 4: -10.40, 5: -10.17, 6: -7.37}, _INVARIANT,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction invariance across vertical planes (MAD)",
        "trained_vs_untrained", "spatiotemporal", "art", "vertical", "dir", "invariance",
        {2: -4.10, 3: -8.85}, _INVARIANT,
    ),
    PaperTest(
        "ART trained vs untrained, preferred-direction invariance across vertical planes (MAD)",
        "trained_vs_untrained", "lstm", "art", "vertical", "dir", "invariance",
        {3: -5.73, 4: -13.18}, _INVARIANT,
    ),
)  # fmt: skip
"""The paper's per-layer t statistics (paired over 5 seeds, df = 4)."""

COLUMNS = [
    "what", "family", "arch", "orientation", "tuning_type", "metric", "layer", "layer_index",
    "paper_t", "t", "df", "p_bonferroni", "mean_a", "mean_b", "agrees", "source",
]  # fmt: skip


def _family_of(arch: str) -> str:
    parts = identify(str(arch))
    return parts.family if parts is not None else ""


def compare_tests(stats: pd.DataFrame | None) -> pd.DataFrame:
    """One row per paper test and layer: the paper's t and, where the run has the test, its t, df
    (pairs - 1), Bonferroni p, the two means and ``agrees`` (same sign, and significant in the run).

    A paper test whose family is not in the run gives no rows; a layer the run has not tested (too few
    seeds, no such layer) keeps NaN in the run columns.
    """
    if stats is None or stats.empty:
        return pd.DataFrame(columns=COLUMNS)
    st = stats.copy()
    st["family"] = [_family_of(a) for a in st["arch"]]
    rows = []
    for pt in PAPER_TESTS:
        sel = st[
            (st["comparison"] == pt.comparison)
            & (st["family"] == pt.family)
            & (st["task"].astype(str) == pt.task)
            & (st["orientation"] == pt.orientation)
            & (st["tuning_type"] == pt.tuning_type)
            & (st["metric"] == pt.metric)
        ]
        for arch, g in sel.groupby("arch", sort=True):
            by_layer = {int(r.layer_index): r for r in g.itertuples()}
            for li, paper_t in pt.t.items():
                r = by_layer.get(li)
                t = float(r.t) if r is not None else math.nan
                n = int(r.n_pairs) if r is not None else 0
                pb = float(r.p_bonferroni) if r is not None else math.nan
                agrees = bool(math.isfinite(t) and t * paper_t > 0 and math.isfinite(pb) and pb < 0.05)
                rows.append(
                    {
                        "what": pt.what,
                        "family": pt.family,
                        "arch": arch,
                        "orientation": pt.orientation,
                        "tuning_type": pt.tuning_type,
                        "metric": pt.metric,
                        "layer": str(r.layer) if r is not None else f"L{li}",
                        "layer_index": li,
                        "paper_t": paper_t,
                        "t": t,
                        "df": n - 1 if n else math.nan,
                        "p_bonferroni": pb,
                        "mean_a": float(r.mean_a) if r is not None else math.nan,
                        "mean_b": float(r.mean_b) if r is not None else math.nan,
                        "agrees": agrees,
                        "source": pt.source,
                    }  # fmt: skip
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _f(x: float, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def paired_tests_html(cmp: pd.DataFrame) -> str:
    """The comparison as an HTML table (or a line saying what is missing)."""
    if cmp.empty:
        return (
            '<p class="missing" id="paper-tests">No paired test of the paper can be computed from this run '
            "(it needs at least 2 seeds of ART and TDT models, or of trained models and their untrained "
            "controls, of a paper family; tuning/tuning_stats.csv).</p>"
        )
    head = [
        "test", "layer", "paper t (df 4)", "this run t", "df", "p (Bonferroni)", "means a / b", "agrees", "source",
    ]  # fmt: skip
    out = []
    for r in cmp.itertuples():
        ok = '<span class="ok">yes</span>' if r.agrees else '<span class="warn">no</span>'
        if not math.isfinite(r.t):
            ok = '<span class="missing">not tested</span>'
        out.append(
            f"<tr><td>{html.escape(r.what)}<br><code class='muted'>{html.escape(r.arch)} · "
            f"{html.escape(r.orientation)}</code></td><td>L{r.layer_index} ({html.escape(r.layer)})</td>"
            f'<td class="n">{_f(r.paper_t)}</td><td class="n run">{_f(r.t)}</td><td class="n">{_f(r.df, 0)}</td>'
            f'<td class="n">{_f(r.p_bonferroni, 4)}</td><td class="n">{_f(r.mean_a, 3)} / {_f(r.mean_b, 3)}</td>'
            f"<td>{ok}</td><td>{html.escape(r.source)}</td></tr>"
        )
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="paper-tests"><thead><tr>{th}</tr></thead><tbody>{"".join(out)}</tbody></table>'
