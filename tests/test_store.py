"""Atomic writes of :mod:`deepdraw.store` (issue 17): one definition of temp-then-rename.

Every helper writes under :func:`store.tmp_path_for`'s name (which the run lock cleans when its writer
died), replaces an existing file only on success, removes its temporary file when the write fails
midway and turns a full disk into the store's one disk-full error naming the folder. A scan of the
source checks that no module renames files by hand.
"""

from __future__ import annotations

import ast
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import deepdraw
from deepdraw import lock, store
from deepdraw.errors import DeepDrawError

PARTIAL = b"half of a file"


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class _Fig:
    """A stand-in figure whose ``savefig`` writes part of a file and then fails with ``exc``."""

    def __init__(self, exc: BaseException | None = None) -> None:
        self.exc = exc
        self.calls: list[tuple[Path, dict]] = []

    def savefig(self, fname, **kwargs) -> None:
        self.calls.append((Path(fname), kwargs))
        Path(fname).write_bytes(PARTIAL)
        if self.exc is not None:
            raise self.exc


def _failing(method: str, exc: BaseException, monkeypatch) -> None:
    """Make ``Path.<method>`` write part of its data, then raise ``exc``."""

    def partial(self, data, *args, **kwargs):
        with open(self, "wb") as fh:
            fh.write(PARTIAL)
        raise exc

    monkeypatch.setattr(Path, method, partial)


def _write_text(path: Path, exc: BaseException, monkeypatch) -> None:
    _failing("write_text", exc, monkeypatch)
    store.write_text_atomic(path, "new text")


def _write_json(path: Path, exc: BaseException, monkeypatch) -> None:
    _failing("write_text", exc, monkeypatch)
    store.write_json_atomic(path, {"a": 1}, indent=1)


def _write_bytes(path: Path, exc: BaseException, monkeypatch) -> None:
    _failing("write_bytes", exc, monkeypatch)
    store.write_bytes_atomic(path, b"new bytes")


def _atomic_path(path: Path, exc: BaseException, monkeypatch) -> None:
    with store.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(PARTIAL)
        raise exc


def _save_figure(path: Path, exc: BaseException, monkeypatch) -> None:
    store.save_figure_atomic(_Fig(exc), path, dpi=50)


WRITERS: dict[str, Callable[[Path, BaseException, pytest.MonkeyPatch], None]] = {
    "write_text_atomic": _write_text,
    "write_json_atomic": _write_json,
    "write_bytes_atomic": _write_bytes,
    "atomic_path": _atomic_path,
    "save_figure_atomic": _save_figure,
}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_write_failing_midway_leaves_no_temp_file_and_the_old_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "out" / "result.png"
    path.parent.mkdir()
    path.write_bytes(b"the old result")
    with pytest.raises(RuntimeError, match="killed midway"):
        WRITERS[writer](path, RuntimeError("killed midway"), monkeypatch)
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.png"]
    assert path.read_bytes() == b"the old result"


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_is_the_store_error_naming_the_folder(tmp_path, monkeypatch, writer):
    path = tmp_path / "out" / "result.png"
    path.parent.mkdir()
    path.write_bytes(b"the old result")
    with pytest.raises(DeepDrawError) as info:
        WRITERS[writer](path, _enospc(), monkeypatch)
    msg = str(info.value)
    assert msg.startswith(f"{path.parent}: disk full (no space left on device) while writing result.png; ")
    assert "GB free there" in msg and "partial file was removed" in msg
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.png"]
    assert path.read_bytes() == b"the old result"


def test_a_value_json_cannot_encode_writes_nothing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{}")
    with pytest.raises(TypeError):
        store.write_json_atomic(path, {"x": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and path.read_text() == "{}"


def test_success_replaces_an_existing_file_with_the_exact_bytes(tmp_path):
    data = {"b": [1, 2.5, None], "a": {"z": "é", "y": Path("p")}}
    for name, kwargs, newline in (
        ("stamp.json", {"indent": 1, "sort_keys": True, "default": str}, False),
        ("card.json", {"indent": 1, "default": str}, True),
    ):
        path = tmp_path / name
        path.write_text("old and longer than the new content " * 20)
        assert store.write_json_atomic(path, data, newline=newline, **kwargs) == path
        assert path.read_bytes() == (json.dumps(data, **kwargs) + ("\n" if newline else "")).encode()
    text = tmp_path / "deeper" / "page.html"  # missing folders are made
    store.write_text_atomic(text, "<p>é</p>")
    assert text.read_bytes() == "<p>é</p>".encode()
    store.write_bytes_atomic(text, b"\x00\x01")
    assert text.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "deeper", "stamp.json"]
    assert [p.name for p in (tmp_path / "deeper").iterdir()] == ["page.html"]


def test_atomic_path_writes_under_the_temporary_name_the_lock_cleans(tmp_path):
    path = tmp_path / "models" / "m_1" / "best.pt"
    with store.atomic_path(path) as tmp:
        assert tmp == store.tmp_path_for(path) == path.with_name(f".best.pt.tmp-{os.getpid()}")
        assert lock.TEMP_RE.match(tmp.name)["pid"] == str(os.getpid())
        tmp.write_bytes(b"weights")
        assert not path.exists()  # nothing under the final name until the block ends
    assert path.read_bytes() == b"weights" and not tmp.exists()
    with store.atomic_path(path) as tmp:
        tmp.write_bytes(b"newer weights")
    assert path.read_bytes() == b"newer weights"
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]


def test_save_figure_takes_the_format_from_the_final_name(tmp_path):
    fig = _Fig()
    for name, fmt in (("a.png", "png"), ("b.SVG", "svg"), ("c", "png")):
        store.save_figure_atomic(fig, tmp_path / name, dpi=72)
        saved, kwargs = fig.calls[-1]
        assert saved == store.tmp_path_for(tmp_path / name) and kwargs == {"format": fmt, "dpi": 72}
    store.save_figure_atomic(fig, tmp_path / "d.png", format="pdf")
    assert fig.calls[-1][1] == {"format": "pdf"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.SVG", "c", "d.png"]


def test_save_figure_gives_the_bytes_of_a_direct_savefig(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1, 3], [2, 0, 1])
    fig.savefig(tmp_path / "direct.png", dpi=60)
    store.save_figure_atomic(fig, tmp_path / "atomic.png", dpi=60)
    assert (tmp_path / "atomic.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    store.save_figure_atomic(fig, tmp_path / "vector.svg")
    assert (tmp_path / "vector.svg").read_text().lstrip().startswith("<?xml")


def test_atomic_folder_swaps_a_whole_folder(tmp_path, monkeypatch):
    final = tmp_path / "report"
    final.mkdir()
    (final / "index.html").write_text("old page")
    (final / "stale.png").write_text("old figure")

    with pytest.raises(RuntimeError, match="render failed"):
        with store.atomic_folder(final) as tmp:
            assert tmp == store.tmp_path_for(final) and tmp.is_dir() and not any(tmp.iterdir())
            (tmp / "index.html").write_text("half a page")
            raise RuntimeError("render failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert sorted(p.name for p in final.iterdir()) == ["index.html", "stale.png"]

    with pytest.raises(DeepDrawError, match=rf"^{final}: disk full \(no space left on device\); "):
        with store.atomic_folder(final) as tmp:
            (tmp / "index.html").write_text("half a page")
            raise _enospc()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]

    leftover = store.tmp_path_for(final)  # one left by this pid before (a killed build) is emptied
    (leftover / "figures").mkdir(parents=True)
    with store.atomic_folder(final) as tmp:
        assert not any(tmp.iterdir())
        (tmp / "index.html").write_text("new page")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert [p.name for p in final.iterdir()] == ["index.html"] and (
        final / "index.html"
    ).read_text() == "new page"

    real_rename = Path.rename

    def rename_fails_for_tmp(self, target):  # the new folder cannot take the final name
        if self.name.startswith(".report.tmp-"):
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_fails_for_tmp)
    with pytest.raises(OSError, match="Input/output error"):
        with store.atomic_folder(final) as tmp:
            (tmp / "index.html").write_text("newest page")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # the old folder is put back
    assert (final / "index.html").read_text() == "new page"


def test_converted_writers_keep_their_bytes_and_report_a_full_disk(tmp_path, monkeypatch):
    """Two of the converted sites end to end: the run JSON writer's bytes, the CSV writer's disk full."""
    import pandas as pd

    from deepdraw.nn import runio

    obj = {"epoch": 3, "path": tmp_path, "loss": [0.5, 0.25]}
    runio.write_json(tmp_path / "m" / "metrics.json", obj)
    assert (tmp_path / "m" / "metrics.json").read_text() == json.dumps(obj, indent=1, default=str)

    def to_csv_fails(self, path, **kwargs):
        Path(path).write_bytes(PARTIAL)
        raise _enospc()

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv_fails)
    with pytest.raises(DeepDrawError, match=rf"^{tmp_path / 'm'}: disk full .*while writing summary\.csv"):
        runio.write_csv(tmp_path / "m" / "summary.csv", pd.DataFrame({"a": [1]}))
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["metrics.json"]


# ----------------------------------------------------------------------- no hand-written renames


SRC = Path(deepdraw.__file__).parent

# Files allowed a hand-written temp-then-rename (none: every writer goes through the store's helpers).
ALLOWED: tuple[str, ...] = ()


def _renames(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that rename a file, or build the temp-then-rename pattern from the store's parts:
    ``os.replace``/``os.rename``, a ``.replace(x)``/``.rename(x)`` method with one positional argument
    (``Path.replace``; ``str.replace`` takes two, ``spec.replace`` keywords; ``dataclasses.replace``
    excluded), and
    ``atomic_replace``/``tmp_path_for``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os":
            if name in ("replace", "rename", "renames"):
                found.append((node.lineno, f"os.{name}"))
        elif name in ("atomic_replace", "tmp_path_for"):
            found.append((node.lineno, name))
        elif (
            isinstance(f, ast.Attribute)
            and name in ("replace", "rename")
            and len(node.args) == 1
            and not node.keywords
            and not (isinstance(f.value, ast.Name) and f.value.id == "dataclasses")
        ):
            found.append((node.lineno, f".{name}()"))
    return found


def test_scan_finds_planted_renames():
    code = (
        "import os, dataclasses\n"
        "os.replace(a, b)\n"
        "tmp.replace(final)\n"
        "p.rename(q)\n"
        "store.atomic_replace(t, p)\n"
        "t = tmp_path_for(p)\n"
        "s = name.replace('_', ' ')\n"
        "spec.replace(seed=1)\n"
        "dataclasses.replace(cfg)\n"
    )
    lines = sorted(line for line, _ in _renames(ast.parse(code)))
    assert lines == [2, 3, 4, 5, 6]


def test_only_the_store_renames_files():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("store/") or rel.startswith(ALLOWED):
            continue
        for line, what in _renames(ast.parse(path.read_text(), str(path))):
            src_line = path.read_text().splitlines()[line - 1]
            offenders.append(f"{rel}:{line}: {what}: {src_line.strip()}")
    assert not offenders, "temp-then-rename written by hand; use store.atomic_path & co:\n" + "\n".join(
        offenders
    )
