"""Sources a reader can follow: every paper value of the report names where it is printed.

An eLife value cites the paper by its own figure, table or section ("Sandbrink et al. 2023, Fig. 3E;
§Results ..."); a preprint-era value cites the file of the original repository it was read from
("amathislab/DeepDraw, svm-analysis/svm_results.p"). No source, and nothing in the report code or the
docs, points to a file outside this repository (a sibling checkout, a local reference folder).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from deepdraw.report.facts import FACTS, ORIGINAL, PAPER
from deepdraw.report.paper import facts_html
from deepdraw.report.stats import PAPER_TESTS

ROOT = Path(__file__).resolve().parents[1]

# a citation of the paper: "Sandbrink et al. 2023, " then parts separated by "; ", each naming a figure,
# a table or a section (§)
PAPER_PART = re.compile(r"^(Fig\. \d|Table \d|§(Results|Methods|Discussion) “[^”]+”)")
# a file of the original repository: a relative path with a file extension
ORIGINAL_FILE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_. -]+)+\.(p|py|ipynb|hdf5|osim|md)$")
# what must never appear: paths outside the repository or on one machine
OUTSIDE = re.compile(r"\.\./shared|shared/reference|paper-facts|deepdraw-spec|/work/(shared|main|notes|wt-)|"
                     r"/home/|/Users/|[A-Z]:\\[A-Za-z]|file://")  # fmt: skip


def source_problem(source: str, era: str) -> str | None:
    """Why ``source`` is not a source a reader can follow (None when it is)."""
    if OUTSIDE.search(source):
        return "points outside the repository"
    if source.startswith(f"{PAPER}, "):
        if era != "eLife":
            return f"cites the paper but its era is {era!r}"
        parts = source[len(PAPER) + 2 :].split("; ")
        bad = [p for p in parts if not PAPER_PART.match(p)]
        return f"names no figure, table or section in {bad}" if bad else None
    if source.startswith(f"{ORIGINAL}, "):
        if era != "preprint":
            return f"cites the original repository but its era is {era!r}"
        path = source[len(ORIGINAL) + 2 :]
        return None if ORIGINAL_FILE.match(path) else f"{path!r} is not a file path of the repository"
    return f"neither '{PAPER}, ...' nor '{ORIGINAL}, <file>'"


@pytest.mark.parametrize(
    "source, era, ok",
    [
        ("Sandbrink et al. 2023, Fig. 3E; §Results “Architecture search and representational changes”", "eLife", True),
        ("Sandbrink et al. 2023, Table 1", "eLife", True),
        ("Sandbrink et al. 2023, Fig. 7—figure supplement 1B", "eLife", True),
        ("amathislab/DeepDraw, svm-analysis/svm_results.p", "preprint", True),
        ("§2 Baselines", "eLife", False),
        ("Sandbrink et al. 2023, somewhere", "eLife", False),
        ("Sandbrink et al. 2023, Fig. 3B", "preprint", False),
        ("amathislab/DeepDraw, svm-analysis", "preprint", False),
        ("amathislab/DeepDraw, ../shared/reference/paper-facts.md", "preprint", False),
        ("Sandbrink et al. 2023, Fig. 3B; ../shared/reference/paper-facts.md §2", "eLife", False),
    ],
)  # fmt: skip
def test_source_checker(source, era, ok):
    assert (source_problem(source, era) is None) == ok


def test_every_fact_has_a_followable_source():
    bad = {
        f.key: (f.source, source_problem(f.source, f.era)) for f in FACTS if source_problem(f.source, f.era)
    }
    assert not bad, f"src/deepdraw/report/facts.py: sources a reader cannot follow: {bad}"
    assert {f.era for f in FACTS} == {"eLife", "preprint"}


def test_every_paper_test_has_a_followable_source():
    for t in PAPER_TESTS:
        problem = source_problem(t.source, "eLife")
        assert problem is None, f"src/deepdraw/report/stats.py: {t.what} ({t.family}): {t.source!r} {problem}"


def test_the_report_table_shows_each_source():
    page = facts_html({}, {})
    for f in FACTS:
        assert html.escape(f.source) in page, f"{f.key}: source not in the report's table"
    assert not OUTSIDE.search(page)


@pytest.mark.parametrize(
    "folder, pattern", [("src/deepdraw/report", "*.py"), ("docs", "*.md"), (".", "README.md")]
)
def test_no_paths_outside_the_repository(folder, pattern):
    files = sorted((ROOT / folder).glob(pattern))
    assert files, f"no {pattern} in {folder}"
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = OUTSIDE.search(line)
            assert not m, f"{path.relative_to(ROOT)}:{n}: {m.group(0)!r} points outside the repository"
