"""One writer per run folder: a lock file in ``run.out_dir``, taken by every command that writes there.

``<out_dir>/.lock`` holds JSON ``{"pid", "host", "command", "since"}`` of the process writing the run.
A second writer is refused with a sentence naming the holder. A lock left by a process that died
(same host, pid no longer alive) is taken over with a warning; a lock of another host cannot be
checked from here, so it is refused with the path to delete once that process is known to be gone.
The lock is re-entrant within one process (the pipeline and the stage it calls share it) and released
on exit, exceptions included.

Taking the lock also removes the temporary files of dead writers (:func:`remove_dead_temps`): at that
point no other process writes the folder, so a ``.name.tmp-<pid>`` whose pid is gone is debris of a
crash (at paper scale, gigabytes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import DeepDrawError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

_HELD: dict[Path, int] = {}  # lock path -> nesting depth, in this process

TEMP_RE = re.compile(r"^\.?.+\.tmp-?(?P<pid>\d+)(?:\.\w+)?$")
"""Temporary names the package writes: ``.name.tmp-<pid>`` (:func:`deepdraw.store.tmp_path_for`: every
atomic write, the ``.report.tmp-<pid>`` folder included); earlier versions also wrote ``name.tmp<pid>``
(JSON, CSV, checkpoints) and ``.stem.tmp-<pid>.png`` (figures)."""

RUN_SUBFOLDERS = ("dataset", "figures", "svm", "models", "search", "activations", "rsa", "tuning", ".stamps")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_holder(path: Path) -> dict | None:
    """The lock's JSON, or None when unreadable (a writer may be between creating and filling it)."""
    for _ in range(20):
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return None


def _describe(h: dict) -> str:
    cmd = f", command '{h['command']}'" if h.get("command") else ""
    since = f", since {h['since']}" if h.get("since") else ""
    return f"pid {h.get('pid')} on host {h.get('host')}{cmd}{since}"


def _try_create(path: Path, me: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(me))
    return True


def acquire(out_dir: str | os.PathLike, command: str = "") -> Path:
    """Take the lock of ``out_dir`` for this process (re-entrant); returns the lock file's path."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = (root / LOCK_NAME).resolve()
    if path in _HELD:
        _HELD[path] += 1
        return path
    host = socket.gethostname()
    me = {
        "pid": os.getpid(),
        "host": host,
        "command": command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(5):
        if _try_create(path, me):
            _HELD[path] = 1
            remove_dead_temps(root)
            return path
        holder = _read_holder(path)
        if holder == {}:  # released meanwhile
            continue
        if holder is None:
            log.warning(
                "%s: unreadable lock file (a writer that died while taking it?); taking it over", path
            )
        elif holder.get("host") != host:
            raise DeepDrawError(
                f"{root}: run folder is locked by {_describe(holder)}; only one command may write a run "
                f"folder at a time. If that process is gone, delete {path}; or set another run.out_dir"
            )
        elif int(holder.get("pid", -1)) == os.getpid():
            pass  # our own lock from an earlier, unreleased acquisition (e.g. after a fork): take it
        elif pid_alive(int(holder.get("pid", -1))):
            raise DeepDrawError(
                f"{root}: run folder is being written by {_describe(holder)}; only one command may "
                "write a run folder at a time: wait for it to finish, stop it, or set another run.out_dir"
            )
        else:
            log.warning("%s: taking over the stale lock of %s (no longer running)", root, _describe(holder))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    raise DeepDrawError(f"{path}: could not take the run folder's lock (other writers keep taking it)")


def release(path: Path) -> None:
    """Release one acquisition of the lock at ``path`` (the file goes with the last one)."""
    depth = _HELD.get(path, 0)
    if depth > 1:
        _HELD[path] = depth - 1
        return
    _HELD.pop(path, None)
    holder = _read_holder(path)
    if holder and int(holder.get("pid", -1)) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike, command: str = "") -> Iterator[Path]:
    """Context manager holding the run folder's lock (see :func:`acquire`)."""
    path = acquire(out_dir, command)
    try:
        yield path
    finally:
        release(path)


def remove_dead_temps(out_dir: str | os.PathLike) -> list[Path]:
    """Remove temporary files and folders of processes that are no longer alive; returns them.

    Looks at the run folder itself and, recursively, at the folders the run layout defines
    (:data:`RUN_SUBFOLDERS`), so a run folder placed beside other files never has those scanned.
    """
    root = Path(out_dir)
    removed: list[Path] = []
    nbytes = 0

    def visit(folder: Path, entries: list[str]) -> list[str]:
        nonlocal nbytes
        keep = []
        for name in entries:
            m = TEMP_RE.match(name)
            p = folder / name
            if m and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
                try:
                    if p.is_dir() and not p.is_symlink():
                        nbytes += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                        shutil.rmtree(p)
                    else:
                        nbytes += p.stat().st_size
                        p.unlink()
                    removed.append(p)
                except OSError:
                    pass
            else:
                keep.append(name)
        return keep

    if root.is_dir():
        visit(root, [e.name for e in os.scandir(root)])
        for sub in RUN_SUBFOLDERS:
            for folder, dirs, files in os.walk(root / sub):
                f = Path(folder)
                dirs[:] = visit(f, dirs)
                visit(f, files)
    if removed:
        log.warning(
            "%s: removed %d temporary file(s) of processes that no longer run (%.1f MB)",
            root,
            len(removed),
            nbytes / 1e6,
        )
    return removed
