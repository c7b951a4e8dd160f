"""Atomic writes: every file the package writes appears complete or not at all.

Each helper writes under :func:`tmp_path_for`'s name (``.name.tmp-<pid>``, same folder) and renames it
into place only when the write ended without error (:func:`atomic_replace`); on any error the temporary
file is removed and a full disk becomes :func:`disk_full_error`, naming the folder. These are the
package's only renames (``tests/test_store.py`` checks it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DeepDrawError


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a "no space left on device" error (an OSError, or HDF5's message of one)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def disk_full_error(path: str | os.PathLike, needed: int | None = None) -> DeepDrawError:
    """The error reported when writing ``path`` (a file or a folder) ran out of disk space."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    try:
        free = f"{_gb(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = "free space unknown"
    need = f", about {_gb(needed)} needed" if needed else ""
    what = "" if p == folder else f" while writing {p.name}"
    return DeepDrawError(
        f"{folder}: disk full (no space left on device){what}; {free}{need}. Free some space or set "
        "run.out_dir to a disk with room, then rerun: finished parts are kept, the partial file was removed"
    )


def require_space(folder: str | os.PathLike, nbytes: int, what: str = "") -> None:
    """Raise :func:`disk_full_error` now when ``folder`` has less than ``nbytes`` free (``what`` is
    written), rather than fail part-way through a long write."""
    f = Path(folder)
    f.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(f).free < nbytes:
        raise disk_full_error(f / what if what else f, needed=nbytes)


def tmp_path_for(path: str | os.PathLike) -> Path:
    """Temporary name used while ``path`` is being written (same folder, hidden, pid-tagged)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


def atomic_replace(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Flush ``tmp`` to disk and rename it to ``final`` in one step."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)


def _cleanup_and_reraise(exc: BaseException, tmp: Path, final: Path) -> None:
    """Remove ``tmp`` (a file or a folder) and raise: a disk-full error as :func:`disk_full_error`
    naming ``final``'s folder, anything else as it is."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if is_disk_full(exc):
        raise disk_full_error(final) from exc
    raise exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` atomically through any writer that takes a file name.

    >>> with atomic_path(run / "best.pt") as tmp:   # doctest: +SKIP
    ...     torch.save(state, tmp)

    Yields :func:`tmp_path_for` ``(path)`` (its folder is created). When the block ends without error
    the temporary file is flushed and renamed to ``path`` (:func:`atomic_replace`), replacing an
    existing file; on any exception it is removed, ``path`` is left as it was and the exception
    propagates, a full disk as :func:`disk_full_error` naming the folder.
    """
    final = Path(path)
    tmp = tmp_path_for(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        atomic_replace(tmp, final)
    except BaseException as e:
        _cleanup_and_reraise(e, tmp, final)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json_atomic(
    path: str | os.PathLike, data: Any, *, newline: bool = False, **json_kwargs: Any
) -> Path:
    """Write ``json.dumps(data, **json_kwargs)`` (plus a final newline when ``newline``) to ``path``
    atomically (see :func:`atomic_path`); returns ``path``."""
    return write_text_atomic(path, json.dumps(data, **json_kwargs) + ("\n" if newline else ""))


def save_figure_atomic(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    The temporary name does not end in the final suffix, so the format is taken from ``path``'s
    suffix (png when it has none) unless ``format`` is given."""
    final = Path(path)
    savefig_kwargs.setdefault("format", final.suffix[1:].lower() or "png")
    with atomic_path(final) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    return final


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Build the folder ``path`` atomically: yields an empty temporary folder next to it
    (:func:`tmp_path_for`; one left by this pid before is removed first).

    When the block ends without error an existing ``path`` is moved aside (``.NAME.old-<pid>``), the
    temporary folder renamed to ``path`` and the old one deleted, so ``path`` is at every moment
    either the old folder or the new one (never half of it). On any exception the temporary folder
    is removed, ``path`` is left as it was and the exception propagates, a full disk as
    :func:`disk_full_error`. A folder cannot be renamed over a non-empty one, hence the move aside.
    """
    final = Path(path)
    tmp = tmp_path_for(final)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        yield tmp
        if final.exists():
            final.rename(old)
        try:
            tmp.rename(final)
        except BaseException:
            if old.exists() and not final.exists():
                old.rename(final)  # put the old folder back
            raise
    except BaseException as e:
        _cleanup_and_reraise(e, tmp, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
