"""HDF5 artifacts: provenance, atomic writes and validation on read.

Every file a stage writes goes through :class:`ArtifactWriter`:

* it is written under a temporary name in the same folder (``.name.tmp-<pid>``) and renamed only
  when the writer closes without error, so a killed job never leaves a file that looks complete;
* an existing file is never overwritten unless ``overwrite=True``;
* the root attributes carry provenance (see :func:`provenance`): ``deepdraw_version``, ``git_commit``,
  ``kind``, ``config`` (resolved, JSON), ``seeds`` (JSON), ``inputs`` (file name -> sha256, JSON),
  ``versions`` (library versions, JSON). There is deliberately no timestamp: the same config and seeds
  give byte-identical files (times and peak memory of a stage are in the run's stamp files).

Every other file (JSON, CSV, figures, checkpoints, the report folder) is written the same way through
one of :func:`atomic_path` (any writer that takes a file name), :func:`write_text_atomic`,
:func:`write_json_atomic`, :func:`write_bytes_atomic`, :func:`save_figure_atomic` or
:func:`atomic_folder`: the temporary file is removed on any error and a full disk is reported by
:func:`disk_full_error`. They are the package's only renames (``tests/test_store.py`` checks it).

Reading goes through :func:`open_artifact`, which checks that the file exists, is readable HDF5, is of
the expected ``kind`` and holds the keys of a :data:`Schema` with the expected shapes and dtypes. Every
failure is a :class:`~deepdraw.errors.DeepDrawError` naming the file, the key, what was expected and
what was found. Schemas of all artifacts are documented in ``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__
from .errors import DeepDrawError

Dim = int | str | None
"""One dimension of an expected shape: an int (exact), a str (a named size that must agree across
keys of one file, e.g. ``"n"``) or None (any size)."""


@dataclass(frozen=True)
class Field:
    """Expected shape and dtype kind of one dataset of an artifact.

    ``dtype`` is a numpy kind character or a string of them: ``"f"`` float, ``"i"`` signed int,
    ``"u"`` unsigned, ``"b"`` bool, ``"S"`` bytes, ``"iu"`` any integer.
    """

    shape: tuple[Dim, ...]
    dtype: str = "f"
    required: bool = True
    doc: str = ""


Schema = Mapping[str, Field]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        commit = out.stdout.strip()
        if out.returncode == 0 and commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour affects results."""
    import importlib.metadata as md

    out = {"python": ".".join(map(str, __import__("sys").version_info[:3]))}
    for name in ("numpy", "scipy", "h5py", "torch", "opensim", "scikit-learn", "rsatoolbox", "dask"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


_COMMIT: str | None = None


def git_commit() -> str:
    """The source tree's git commit ('-dirty' when it has uncommitted changes; 'unknown' outside git)."""
    global _COMMIT
    if _COMMIT is None:
        _COMMIT = _git_commit()
    return _COMMIT


def provenance(
    kind: str,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Root attributes recorded on every artifact (all values are strings; dicts as JSON)."""
    return {
        "kind": kind,
        "deepdraw_version": __version__,
        "git_commit": git_commit(),
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "seeds": json.dumps(seeds or {}, sort_keys=True, default=str),
        "inputs": json.dumps(inputs or {}, sort_keys=True),
        "versions": json.dumps(library_versions(), sort_keys=True),
    }


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


class _ArtifactFile(h5py.File):
    """An :class:`h5py.File` that flushes after creating each dataset.

    HDF5 places a chunk in the file when it leaves the chunk cache, i.e. when its dataset is closed or
    the file is flushed. A dataset id can outlive its statement for a moment (a Dask worker's profiler
    thread holding a frame of h5py's ``create_dataset``), which would move the chunks after the next
    object in the file: same content, other bytes. Flushing after each dataset fixes the layout.
    """

    def create_dataset(self, *args: Any, **kwargs: Any) -> Any:
        ds = super().create_dataset(*args, **kwargs)
        self.flush()
        return ds


class ArtifactWriter:
    """Context manager writing one HDF5 artifact atomically.

    >>> with ArtifactWriter("out.h5", kind="characters", config=cfg) as f:   # doctest: +SKIP
    ...     f.create_dataset("labels", data=labels)

    Inside the block ``f`` is an open :class:`h5py.File` on the temporary name. On normal exit the
    provenance attributes are written and the file is renamed to its final name; on an exception the
    temporary file is deleted and the exception propagates.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str,
        config: Mapping[str, Any] | None = None,
        seeds: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.tmp = tmp_path_for(self.path)
        self.attrs = dict(attrs or {})
        self.attrs.update(provenance(kind, config, seeds, inputs))
        self.overwrite = overwrite
        self.file: h5py.File | None = None

    def __enter__(self) -> h5py.File:
        if self.path.exists() and not self.overwrite:
            raise DeepDrawError(
                f"{self.path}: output exists; refusing to overwrite it (delete it first, or write elsewhere)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = _ArtifactFile(self.tmp, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.file is not None
        try:
            try:
                if exc_type is None:
                    self.file.flush()  # chunks still cached are placed before the attributes' heap
                    for k, v in self.attrs.items():
                        self.file.attrs[k] = v
            finally:
                self.file.close()
            if exc_type is None:
                atomic_replace(self.tmp, self.path)
        except BaseException as e:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            if is_disk_full(e):
                raise disk_full_error(self.path) from e
            raise
        if exc_type is not None:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            if exc is not None and is_disk_full(exc):
                raise disk_full_error(self.path) from exc


def write_artifact(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    kind: str,
    config: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    uncompressed: tuple[str, ...] = (),
) -> Path:
    """Write ``arrays`` (key -> array; keys may contain ``/`` for groups) as one artifact.

    ``compression`` applies to the numeric arrays of more than 1,024 values, except the keys in
    ``uncompressed`` (stored contiguous: a slice of them is read without decompressing anything)."""
    with ArtifactWriter(path, kind, config, seeds, inputs, attrs, overwrite) as f:
        for key, arr in arrays.items():
            arr = np.asarray(arr)
            comp = compression if arr.size > 1024 and arr.dtype.kind in "fiub" else None
            if key in uncompressed:
                comp = None
            f.create_dataset(key, data=arr, compression=comp)
    return Path(path)


def _check_dtype(kind: str, dt: np.dtype) -> bool:
    if kind == "iu":
        return dt.kind in "iu"
    return dt.kind in kind


def validate(f: h5py.File, schema: Schema, path: str | os.PathLike) -> dict[str, int]:
    """Check the keys of an open file against ``schema``; returns the named sizes found."""
    sizes: dict[str, int] = {}
    for key, field in schema.items():
        if key not in f:
            if field.required:
                raise DeepDrawError(
                    f"{path}: key '{key}' is missing; expected a dataset of shape "
                    f"{_fmt_shape(field.shape)} ({field.doc or 'see docs/formats.md'})"
                )
            continue
        obj = f[key]
        if not isinstance(obj, h5py.Dataset):
            raise DeepDrawError(f"{path}: key '{key}' is a group; expected a dataset")
        shape = obj.shape
        if len(shape) != len(field.shape):
            raise DeepDrawError(f"{path}: key '{key}' has shape {shape}; expected {_fmt_shape(field.shape)}")
        for got, want in zip(shape, field.shape):
            if isinstance(want, int) and got != want:
                raise DeepDrawError(
                    f"{path}: key '{key}' has shape {shape}; expected {_fmt_shape(field.shape)}"
                )
            if isinstance(want, str):
                if want in sizes and sizes[want] != got:
                    raise DeepDrawError(
                        f"{path}: key '{key}' has shape {shape}; expected {_fmt_shape(field.shape)} "
                        f"with {want}={sizes[want]} as in the other keys"
                    )
                sizes[want] = got
        if not _check_dtype(field.dtype, obj.dtype):
            raise DeepDrawError(f"{path}: key '{key}' has dtype {obj.dtype}; expected kind '{field.dtype}'")
    return sizes


def _fmt_shape(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def open_artifact(
    path: str | os.PathLike, kind: str | None = None, schema: Schema | None = None
) -> h5py.File:
    """Open an artifact read-only after checking existence, readability, kind and schema.

    The caller closes the returned file (use it as a context manager).
    """
    p = Path(path)
    if not p.exists():
        raise DeepDrawError(f"{p}: file not found")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DeepDrawError(f"{p}: not a readable HDF5 file (truncated or corrupt?): {e}") from None
    try:
        if kind is not None:
            got = f.attrs.get("kind")
            if isinstance(got, bytes):
                got = got.decode()
            if got != kind:
                raise DeepDrawError(
                    f"{p}: attribute 'kind' is {got!r}; expected {kind!r} (is this the right file?)"
                )
        if schema is not None:
            validate(f, schema, p)
    except BaseException:
        f.close()
        raise
    return f


def read_arrays(
    path: str | os.PathLike,
    keys: Sequence[str] | None = None,
    kind: str | None = None,
    schema: Schema | None = None,
) -> dict[str, np.ndarray]:
    """Read whole datasets into memory (small artifacts only); validates first."""
    with open_artifact(path, kind, schema) as f:
        if keys is None:
            keys = [k for k in f if isinstance(f[k], h5py.Dataset)]
        out = {}
        for k in keys:
            if k not in f:
                raise DeepDrawError(f"{path}: key '{k}' is missing")
            try:
                out[k] = f[k][()]
            except OSError as e:
                raise DeepDrawError(f"{path}: key '{k}' cannot be read (corrupt file?): {e}") from None
        return out


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of an artifact; JSON-valued provenance fields are decoded."""
    with open_artifact(path) as f:
        out: dict[str, Any] = {}
        for k, v in f.attrs.items():
            if isinstance(v, bytes):
                v = v.decode()
            if k in ("config", "seeds", "inputs", "versions") and isinstance(v, str):
                v = json.loads(v)
            out[k] = v
        return out


def check_finite(arr: np.ndarray, path: str | os.PathLike, key: str, where: str = "") -> None:
    """Raise a DeepDrawError naming the first sample holding a NaN or inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise DeepDrawError(
            f"{path}: key '{key}' holds NaN/inf at index {tuple(int(i) for i in first)}"
            f"{' ' + where if where else ''}; expected finite values"
        )


def iter_chunks(n: int, chunk: int) -> Iterator[slice]:
    """Slices covering range(n) in blocks of ``chunk``."""
    for s in range(0, n, chunk):
        yield slice(s, min(n, s + chunk))
