"""``deepdraw report CONFIG``: one self-contained HTML page about a run.

:func:`build_report` reads whatever the run folder holds (every part may be missing) and writes
``<out_dir>/report/index.html`` with every figure copied into ``report/figures/`` and the small result
tables into ``report/data/``, so the folder opens offline (inline CSS, no scripts, no external links).
The report is built in a temporary folder next to it and renamed in one step: a killed build never
leaves a half-written report.

Sections:

1. overview: scale of the run (candidates, samples, models, seeds, epochs), the stage table (status from
   the stamps, wall time, peak memory) and the list of missing parts;
2. the paper's Figures 2-7 made from this run's data: the stages' PNGs, plus training curves, per-model
   test performance made here from ``models/`` and, when the run has ``search/search_results.csv``,
   the search's Fig. 3D and Fig. 3—S1 (:mod:`deepdraw.nn.search_figures`);
3. paper vs this run: every number of :data:`deepdraw.report.facts.FACTS` the run computed, with the
   scale of the run beside it and, as source, the paper's figure, table or section (preprint-era values:
   the original repository's file);
4. provenance: the resolved config, git commit and library versions recorded in the artifacts, time and
   peak memory per stage.

Modules: :mod:`.common` (helpers, model names, the figure model, the run), :mod:`.values` (the numbers
of section 3), :mod:`.figures` (section 2), :mod:`.paper` (the paper-vs-run table),
:mod:`.provenance` (stage table and section 4's sources), :mod:`.html` (building blocks),
:mod:`.render` (the page); this module builds the report folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DeepDrawError
from ..paths import RunPaths, stage_summary
from ..settings import Config
from ..store import atomic_folder
from .common import FigureItem, RunView, describe_model, parse_model
from .figures import (
    RSA_CAPTIONS,
    TUNING_CAPTIONS,
    figures_dataset,
    figures_from,
    figures_models,
    figures_search,
    figures_svm,
)
from .html import data_links
from .provenance import read_stage_rows
from .render import render
from .values import collect_values, models_table

__all__ = ["build_report", "collect_values", "describe_model", "parse_model", "FigureItem"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- entry
def build_report(cfg: Config) -> Path:
    """Write ``<out_dir>/report/index.html`` (self-contained folder); returns its path.

    Every part of the run may be missing: the report shows what exists and lists what does not.
    Raises :class:`DeepDrawError` only when the run folder itself does not exist.
    """
    rp = RunPaths.of(cfg)
    if not rp.root.is_dir():
        raise DeepDrawError(
            f"{rp.root}: run folder not found; run the pipeline first (deepdraw pipeline CONFIG)"
        )
    final = rp.report
    with atomic_folder(final) as tmp:
        run = RunView(cfg, tmp)
        stage_rows = read_stage_rows(run)
        values, scale = collect_values(cfg)
        df = models_table(rp)
        if not rp.pcrt_train.exists() or not rp.pcrt_test.exists():
            for p in (rp.pcrt_train, rp.pcrt_test):
                if not p.exists():
                    run.miss(run.rel(p), "not found (stage assemble)")
        groups = [figures_dataset(run), figures_svm(run)]
        search_group = figures_search(run)
        if search_group is not None:
            groups.append(search_group)
        groups.append(figures_models(run, df))
        if not stage_summary(rp.svm).exists():
            run.miss("svm/summary.json", "not found (stage svm)")
        groups.append(
            figures_from(
                run,
                "rsa",
                rp.rsa,
                RSA_CAPTIONS,
                "Figure 4 — representational similarity (RDMs, CKA, t-SNE)",
                "",
                "no RSA figures (stage rsa)",
            )
        )
        if not (rp.rsa / "rsa_oracle.csv").exists():
            run.miss("rsa/rsa_oracle.csv", "not found (stage rsa)")
        groups.append(
            figures_from(
                run,
                "tuning",
                rp.tuning,
                TUNING_CAPTIONS,
                "Figures 5–7 — single-unit tuning",
                "Fig. 5: tuning of spindles and units per layer, ART vs TDT; Fig. 6: population decoding; "
                "Fig. 7: preferred-direction uniformity and invariance across planes.",
                "no tuning figures (stage tuning)",
            )
        )
        if not stage_summary(rp.tuning).exists():
            run.miss("tuning/summary.json", "not found (stage tuning)")
        data_html = data_links(run)
        text = render(run, values, scale, df, groups, stage_rows, data_html)
        (tmp / "index.html").write_text(text, encoding="utf-8")
    log.info("report: %s", final / "index.html")
    return final / "index.html"
