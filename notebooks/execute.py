"""Execute the notebooks of this folder in place and store them with their outputs (`make notebooks`).

    python notebooks/execute.py                      # every notebooks/*.ipynb
    python notebooks/execute.py notebooks/04_*.ipynb # some of them

Each notebook runs top to bottom in a fresh kernel of *this* interpreter (a kernel spec pointing at
``sys.executable`` is written to a temporary ``JUPYTER_PATH``; nothing is registered anywhere), with the
repository's ``src/`` first on ``PYTHONPATH`` (the checkout's code, whatever deepdraw is installed), one
BLAS/OpenMP thread, and ``DEEPDRAW_NOTEBOOK_OUT`` pointing at a temporary folder, so that the notebook
writes its figures and ``summary.json`` there. The stored notebook then holds:

* every cell's outputs (figures as PNG at 80 dpi: ``InlineBackend.print_figure_kwargs``), with
  execution counts 1, 2, ... and no timing metadata;
* ``metadata.deepdraw.key_numbers``: the notebook's ``summary.json`` without its timings (keys ending
  in ``_s`` or ``seconds``), which ``tests/test_notebooks.py`` compares with a fresh run;
* ``metadata.deepdraw.code_sha256``: a digest of the code cells, so that a notebook whose code was edited
  after it was executed is caught by the tests.

The notebooks seed every draw; re-running this script changes only the lines that print timings and
temporary paths. The stored ``kernelspec`` stays the generic ``python3``.

This module is also imported by ``tests/test_notebooks.py`` (:func:`kernel_environment`,
:func:`execute`, :func:`code_digest`), so the tests execute the notebooks exactly as stored ones were.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

NB_DIR = Path(__file__).resolve().parent
ROOT = NB_DIR.parent
KERNEL = "deepdraw-notebooks-venv"
FIGURE_DPI = 80
TIMEOUT_S = 300  # per cell
META = "deepdraw"  # notebook metadata key of what this script stores

KERNEL_CONFIG = f"""\
# written by notebooks/execute.py: figures as PNG at {FIGURE_DPI} dpi
c.InlineBackend.figure_formats = {{"png"}}
c.InlineBackend.print_figure_kwargs = {{"bbox_inches": "tight", "dpi": {FIGURE_DPI}}}
"""


def is_timing(key: str) -> bool:
    """Whether a summary key holds a wall time (seconds): not a key number."""
    return key.endswith("_s") or "seconds" in key


def key_numbers(summary: dict) -> dict:
    """The summary without its timings."""
    return {k: v for k, v in summary.items() if not is_timing(k)}


def code_digest(nb) -> str:
    """sha256 of the notebook's code cells (sources in order): changes when its code is edited."""
    src = [c.source for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(src).encode()).hexdigest()


def _restore(saved: dict[str, str | None]) -> None:
    """Put back the environment variables of ``saved`` (None: the variable was not set)."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def kernel_environment(root: Path) -> Iterator[Path]:
    """A kernel spec for this interpreter and an IPython profile in ``root``; sets (and restores) the
    environment variables the kernel inherits: ``JUPYTER_PATH``, ``IPYTHONDIR``, ``PYTHONPATH``
    (``src/`` first), ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` = 1 and no
    ``MPLBACKEND`` (the kernel uses its inline backend)."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "deepdraw venv",
                "language": "python",
            }
        )
    )
    profile = root / "ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    profile.joinpath("ipython_kernel_config.py").write_text(KERNEL_CONFIG)
    keys = (
        "JUPYTER_PATH",
        "IPYTHONDIR",
        "PYTHONPATH",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "MPLBACKEND",
    )
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(root)] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else [])
    )
    os.environ["IPYTHONDIR"] = str(root / "ipython")
    src = str(ROOT / "src")
    rest = [p for p in (saved["PYTHONPATH"] or "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *rest])
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = "1"
    os.environ.pop("MPLBACKEND", None)
    try:
        yield root
    finally:
        _restore(saved)


def execute(path: Path, workdir: Path, params: dict | None = None, timeout: int = TIMEOUT_S):
    """Run notebook ``path`` in a kernel of :func:`kernel_environment` (which must be active), from
    ``workdir``; ``params`` are injected as a cell after the one tagged ``parameters`` (the papermill
    convention). Returns ``(executed notebook, seconds)``; a failing cell raises ``CellExecutionError``."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if params:
        idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
        if len(idx) != 1:
            raise ValueError(f"{path}: {len(idx)} cells tagged 'parameters'; expected one")
        src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        nb.cells.insert(
            idx[0] + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
        )
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    t0 = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - t0


def store(path: Path, timeout: int = TIMEOUT_S) -> dict:
    """Execute ``path`` and write it back with its outputs and key numbers; returns the key numbers."""
    import nbformat

    original = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="deepdraw_nbexec_") as tmp:
        tmp = Path(tmp)
        out, work = tmp / "out", tmp / "work"
        work.mkdir()
        saved = {k: os.environ.get(k) for k in ("DEEPDRAW_NOTEBOOK_OUT", "TMPDIR")}
        os.environ["DEEPDRAW_NOTEBOOK_OUT"] = str(out)
        os.environ["TMPDIR"] = str(work)  # the notebooks' temporary folders go away with tmp
        try:
            with kernel_environment(tmp / "jupyter"):
                nb, dt = execute(path, work, timeout=timeout)
        finally:
            _restore(saved)
        summary_path = out / path.stem / "summary.json"
        if not summary_path.is_file():
            raise FileNotFoundError(
                f"{path}: wrote no {path.stem}/summary.json under DEEPDRAW_NOTEBOOK_OUT; expected its key numbers"
            )
        numbers = key_numbers(json.loads(summary_path.read_text()))
    for c in nb.cells:
        if c.cell_type == "code":
            c.metadata.pop("execution", None)
            errors = [o for o in c.outputs if o.get("output_type") == "error"]
            if errors:
                raise RuntimeError(
                    f"{path}: a cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}"
                )
    nb.metadata = copy.deepcopy(original.metadata)  # generic kernelspec, no interpreter version
    nb.metadata[META] = {
        "key_numbers": numbers,
        "code_sha256": code_digest(nb),
        "figure_dpi": FIGURE_DPI,
    }
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"{path.name}: executed in {dt:.1f} s, {path.stat().st_size / 1e3:.0f} kB stored", flush=True)
    return numbers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to execute (default: notebooks/*.ipynb)"
    )
    ap.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds per cell (default %(default)s)")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted(NB_DIR.glob("*.ipynb"))
    for p in paths:
        if not p.is_file() or p.suffix != ".ipynb":
            ap.error(f"{p}: not a notebook file")
        store(p.resolve(), args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
