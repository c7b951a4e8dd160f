"""The documentation site (mkdocs.yml, `make docs`): it builds with --strict, every page is reachable,
and the links of the pages brought in from outside docs/ are rewritten to the same targets."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _hooks():
    spec = importlib.util.spec_from_file_location("site_hooks", ROOT / "docs" / "_site" / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config() -> dict:
    # mkdocs.yml holds no custom YAML tags, so the plain loader reads it
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    assert MKDOCS.exists(), f"{MKDOCS} missing: `make install` installs the dev extra (pyproject.toml)"
    return subprocess.run(
        [MKDOCS, "build", "--strict", "-f", config, "--site-dir", site],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=config.parent,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(MKDOCS.parent), "HOME": str(site.parent)},
    )


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_site_builds_strict(tmp_path):
    """The real site: a broken link, a missing anchor, a page left out of the nav, an API reference to
    a name that does not import or a docstring griffe cannot parse fails the build (strict)."""
    res = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stderr[-4000:]
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "benchmarks" / "index.html").is_file()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / nb.stem / "index.html").is_file(), nb.name
    # the API reference holds the documented functions, not just the page titles
    api = {p.parent.name: p.read_text() for p in (site / "api").glob("*/index.html")}
    for page, name in [("config", "load_config"), ("svm", "run_svm"), ("nn", "build_model"),
                       ("muscles", "FastEngine"), ("zoo", "load"), ("rsa", "run_rsa")]:  # fmt: skip
        assert f'id="deepdraw.{page if page != "muscles" else "dataset.muscles"}' in api[page], page
        assert name in api[page], (page, name)
    assert ":func:`" not in "".join(api.values())  # Sphinx roles shown as code (docs/_site/griffe_roles.py)


def test_every_page_is_in_the_nav():
    pages = set(_nav_pages(_config()["nav"]))
    docs = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    docs = {d for d in docs if not d.startswith("_site/")}
    assert docs <= pages, f"mkdocs.yml nav lacks {sorted(docs - pages)}"
    external = set(_hooks().EXTERNAL)
    assert pages <= docs | external, (
        f"mkdocs.yml nav names {sorted(pages - docs - external)}, which do not exist"
    )


def test_strict_settings_fail_a_broken_link(tmp_path):
    """A site with the project's validation settings and one broken link does not build."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# home\n\n[a page](missing.md)\n")
    cfg = {"site_name": "t", "strict": True, "validation": _config()["validation"]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(cfg))
    res = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert res.returncode != 0 and "missing.md" in res.stderr, res.stderr[-2000:]


@pytest.mark.parametrize(
    "repo_path, site_path, text, expect",
    [
        # README (repository root) shown as the home page: docs/ prefixes go
        ("README.md", "index.md", "![r](docs/report.png) [z](docs/zoo.md#top)", "![r](report.png) [z](zoo.md#top)"),
        # benchmarks/README.md shown as benchmarks.md: ../docs/figures -> figures
        ("benchmarks/README.md", "benchmarks.md", "![f](../docs/figures/a.png)", "![f](figures/a.png)"),
        # a link to another brought-in file, and to the README
        ("notebooks/README.md", "notebooks/README.md", "[b](../benchmarks/README.md) [h](../README.md)",
         "[b](../benchmarks.md) [h](../index.md)"),
        # URLs, anchors and links to files the site does not hold stay as written
        ("README.md", "index.md", "[u](https://x.org/docs/a.md) [a](#x) [l](LICENSE)",
         "[u](https://x.org/docs/a.md) [a](#x) [l](LICENSE)"),
    ],
)  # fmt: skip
def test_links_of_brought_in_pages(repo_path, site_path, text, expect):
    hooks = _hooks()
    assert hooks.rewrite_links(text, site_path, repo_path, ROOT / "docs") == expect
