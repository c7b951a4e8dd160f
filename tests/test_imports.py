"""The package's import graph has no cycle (issue 17, item 8).

The graph is built from the source with ``ast``: every ``import`` / ``from ... import`` of a module of the
package, at module level or inside a function (a lazy import still ties the two modules together), except
those under ``if TYPE_CHECKING:`` (never run). An import of a module's own parent package is left out (a
package's ``__init__`` importing its submodules is not a cycle). The cycles are the strongly connected
components of more than one module (Tarjan's algorithm).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the modules of the same tree it imports (``root`` holds the top-level packages)."""
    mods: dict[str, Path] = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        tree = ast.parse(p.read_text(), filename=str(p))
        skip: set[int] = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                for c in n.body:
                    skip.update(id(d) for d in ast.walk(c))
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.ImportFrom):
                if n.level:
                    base = pkg[: len(pkg) - n.level + 1]
                    tgt = ".".join(base + (n.module.split(".") if n.module else []))
                else:
                    tgt = n.module or ""
                for a in n.names:
                    full = f"{tgt}.{a.name}"
                    if full in mods:  # `from pkg import submodule`
                        graph[m].add(full)
                    elif tgt in mods:
                        graph[m].add(tgt)
            elif isinstance(n, ast.Import):
                graph[m].update(a.name for a in n.names if a.name in mods)
    return {m: {t for t in out if t != m and not m.startswith(t + ".")} for m, out in graph.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_package_has_no_import_cycle():
    graph = import_graph(SRC)
    # the graph is the real one (a parser that found no edge would find no cycle either)
    assert "deepdraw.settings" in graph["deepdraw.config"]
    assert "deepdraw.nn.train_stage" in graph["deepdraw.nn.search_stage"]  # lazy imports count
    assert "deepdraw.nn.search_results" in graph["deepdraw.nn.plan"]
    cycles = import_cycles(graph)
    text = "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")"
        for c in cycles
    )
    assert not cycles, f"import cycles in src/: {text}"


def test_config_names_stay_importable_from_config():
    """The schema lives in deepdraw.settings; deepdraw.config re-exports it (the same objects)."""
    import deepdraw.config as config
    import deepdraw.settings as settings

    for name in settings.__all__:
        assert getattr(config, name) is getattr(settings, name), name
    import deepdraw.config_checks as config_checks  # the value checks moved out of deepdraw.config

    for name in config_checks.__all__:
        assert getattr(config, name) is getattr(config_checks, name), name
    from deepdraw.nn import search_results, search_stage

    for name in search_results.__all__:
        assert getattr(search_stage, name) is getattr(search_results, name), name


def test_nn_stage_names_stay_importable_from_nn_stage():
    """nn/stage.py was split (section, plan, summary, train_stage, activations_stage); every public name
    it had is still reachable from deepdraw.nn.stage, as the same object as in its new home."""
    import deepdraw.nn.stage as stage
    from deepdraw.nn import activations_stage, plan, section, summary, train_stage

    parts = (section, plan, summary, train_stage, activations_stage)
    shared = {"task_dir", "summary_rows"}  # private helpers before the split, public between the parts
    reexported = {name: part for part in parts for name in part.__all__ if name not in shared}
    assert {"RUN_SETTINGS", "check_settings", "lr_batch", "check_train_section"} <= set(reexported)
    for name, part in reexported.items():
        assert getattr(stage, name) is getattr(part, name), name
    assert set(stage.__all__) <= set(reexported) | {"run_evaluate"}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_detector_finds_a_planted_cycle(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from . import a\n",  # parent package imports: not a cycle
            "pkg/a.py": "from .sub import b\nimport pkg.c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "def f():\n    from ..a import thing  # lazy: still an edge\n",
            "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
            "pkg/d.py": "from pkg.sub.b import f\nfrom pkg import e\n",
            "pkg/e.py": "import pkg.d\n",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b", "pkg.c"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set()  # TYPE_CHECKING imports are not run
    assert graph["pkg"] == {"pkg.a"} and "pkg" not in graph["pkg.sub"]
    assert sorted(import_cycles(graph)) == [["pkg.a", "pkg.sub.b"], ["pkg.d", "pkg.e"]]


@pytest.mark.parametrize("lazy", [False, True])
def test_detector_breaking_the_cycle_clears_it(tmp_path, lazy):
    body = "def g():\n    from . import y\n" if lazy else "from . import y\n"
    _write(tmp_path, {"q/__init__.py": "", "q/x.py": body, "q/y.py": "from .x import g\n"})
    assert import_cycles(import_graph(tmp_path)) == [["q.x", "q.y"]]
    (tmp_path / "q/y.py").write_text("VALUE = 1\n")  # the seam cut: y no longer imports x
    assert import_cycles(import_graph(tmp_path)) == []
