"""MkDocs hooks of the documentation site (mkdocs.yml, ``hooks:``); not part of the package.

The site is built from ``docs/`` plus a few files that live elsewhere in the repository, so that each
text has one copy: the README (the home page), ``benchmarks/README.md`` and the notebooks with their
README. They are added to the site at the paths of :data:`EXTERNAL`; their relative links, written for
their place in the repository, are rewritten for their place in the site (a link that points at
neither a page of the site nor a file under ``docs/`` is left as it is, so ``mkdocs build --strict``
reports it).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]

# site path -> repository path
EXTERNAL = {
    "index.md": "README.md",
    "benchmarks.md": "benchmarks/README.md",
    "notebooks/README.md": "notebooks/README.md",  # shown as notebooks/ (mkdocs: README = index)
    **{f"notebooks/{p.name}": f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))},
}

LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _external(src_uri: str) -> str | None:
    return EXTERNAL.get(src_uri)


@event_priority(100)  # before mkdocs-jupyter wraps the notebooks
def on_files(files: Files, config) -> Files:
    for site_path, repo_path in EXTERNAL.items():
        src = ROOT / repo_path
        if not src.is_file():
            raise FileNotFoundError(f"{src}: named in docs/_site/hooks.py EXTERNAL but missing")
        same = site_path == repo_path  # notebooks: mkdocs-jupyter needs a File it can wrap as it is
        f = File(
            site_path,
            src_dir=str(ROOT) if same else None,
            dest_dir=config["site_dir"],
            use_directory_urls=config["use_directory_urls"],
        )
        if not same:
            f.abs_src_path = str(src)
        files.append(f)
    return files


def _site_target(repo_target: str, docs_dir: Path) -> str | None:
    """The site path of a repository path, or None when the site does not hold it."""
    for site_path, repo_path in EXTERNAL.items():
        if repo_path == repo_target:
            return site_path
    target = (ROOT / repo_target).resolve()
    try:
        return target.relative_to(docs_dir.resolve()).as_posix()
    except ValueError:
        return None


def rewrite_links(markdown: str, site_path: str, repo_path: str, docs_dir: Path) -> str:
    """Rewrite the relative links of ``markdown`` (a file at ``repo_path`` of the repository, shown at
    ``site_path`` of the site) so that they point at the same files in the site."""

    def fix(m: re.Match) -> str:
        url = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", url):
            return m.group(0)
        path, hash_, anchor = url.partition("#")
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))
        site_target = _site_target(repo_target, docs_dir)
        if site_target is None:
            return m.group(0)
        rel = posixpath.relpath(site_target, posixpath.dirname(site_path) or ".")
        return f"{m.group(1)}{rel}{hash_}{anchor}{m.group(3)}"

    return LINK.sub(fix, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    repo_path = _external(page.file.src_uri)
    if repo_path is None or not repo_path.endswith(".md"):
        return markdown
    return rewrite_links(markdown, page.file.src_uri, repo_path, Path(config["docs_dir"]))
