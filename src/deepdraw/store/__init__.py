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

The package has three modules: :mod:`.origin` (digests, commit, versions: the provenance), :mod:`.atomic` (the
atomic writes and the disk-full error) and :mod:`.artifacts` (schemas, the HDF5 writer and reader).
Import from ``deepdraw.store``.
"""

from .artifacts import (
    ArtifactWriter,
    Dim,
    Field,
    Schema,
    check_finite,
    iter_chunks,
    open_artifact,
    read_arrays,
    read_attrs,
    validate,
    write_artifact,
)
from .atomic import (
    atomic_folder,
    atomic_path,
    atomic_replace,
    disk_full_error,
    is_disk_full,
    require_space,
    save_figure_atomic,
    tmp_path_for,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from .origin import file_sha256, git_commit, library_versions, provenance

__all__ = [
    "ArtifactWriter",
    "Dim",
    "Field",
    "Schema",
    "atomic_folder",
    "atomic_path",
    "atomic_replace",
    "check_finite",
    "disk_full_error",
    "file_sha256",
    "git_commit",
    "is_disk_full",
    "iter_chunks",
    "library_versions",
    "open_artifact",
    "provenance",
    "read_arrays",
    "read_attrs",
    "require_space",
    "save_figure_atomic",
    "tmp_path_for",
    "validate",
    "write_artifact",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
