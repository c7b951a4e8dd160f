"""HDF5 artifacts: the schema of a file, its atomic writer and its validating reader.

:class:`ArtifactWriter` writes one file under a temporary name with the provenance attributes
(:func:`~deepdraw.store.provenance`); :func:`open_artifact` checks existence, readability, ``kind`` and a
:data:`Schema` (keys, shapes, dtypes) before anything is read. Schemas of all artifacts are documented in
``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DeepDrawError
from .atomic import atomic_replace, disk_full_error, is_disk_full, tmp_path_for
from .origin import provenance

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
