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
  after it was executed is caught by the tests;
* ``metadata.deepdraw.cpu``: the CPU class of the machine that ran it (:func:`cpu_class`), and
  ``metadata.deepdraw.key_numbers_by_cpu``: the key numbers of the same code measured on other CPU
  classes. SLSQP paths and a few epochs of training differ in their last bits between CPU classes
  (other SIMD kernels, bfloat16 only where native) and those bits grow; each class is compared with
  its own numbers, and a class without numbers with :data:`CROSS_CPU_TOLERANCE`.

``--numbers-only`` runs the notebooks and records this machine's class in ``key_numbers_by_cpu``
without touching their outputs (the code must be the stored one). Re-executing a notebook keeps the
other classes' numbers only when this class's numbers did not change (else they are dropped: they
may be stale) and ``--drop-other-cpus`` drops them always.

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
import math
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


# (rtol, atol) per notebook and top-level summary key; DEFAULT_TOL otherwise; None: not compared.
# Integers, strings and booleans must be equal. Looser where a number depends on floating-point details
# that may differ between runs of one machine (an SLSQP path, float32 activations, discrete accuracies).
DEFAULT_TOL = (1e-4, 1e-6)
TOLERANCE: dict[str, dict[str, tuple[float, float] | None]] = {
    "01_from_pen_to_proprioception": {
        "ik_reference_err_max_cm": (0.0, 1e-4),
        "ik_vs_reference_max_deg": (1e-2, 1e-3),
        "fast_vs_exact_max_mm": (1e-2, 1e-4),
        "velocity_vs_gradient_max": (0.0, 1e-9),
    },
    "02_tuning_curves_of_a_trained_model": {
        key: (0.0, 0.02)
        for key in ("r2", "r2_median", "top_r2", "median_r2_per_layer", "test_accuracy", "toy_interp_err_mm")
    }
    | {"lstsq_vs_per_unit_max": (0.0, 1e-10), "top_units": None},  # order of near-ties
    "04_svm_baselines": {
        "one_pair_objective_excess_liblinear": (0.0, 1e-5),
        "stage_consistency_max": (0.0, 1e-12),
    },
    "05_rsa_cka_of_trained_models": {
        "oracle_r": (0.0, 1e-4),
        "oracle_r_last": (0.0, 1e-4),
        "cka_trained_vs_untrained": (0.0, 1e-4),
        "cka_art_vs_tdt": (0.0, 1e-4),
        "cross_cka_trained": (0.0, 1e-4),
        "cross_cka_untrained": (0.0, 1e-4),
        "oracle_by_hand_diff": (0.0, 1e-5),
        "cka_by_hand_diff": (0.0, 1e-5),
    },
}
for _what in ("pairwise_mean_acc", "pairwise_std_acc", "pairwise_frac_below_70"):  # ~ a test sample of a pair
    for _input in ("endeffector_coords", "joint_coords", "muscle_coords", "spindle_info"):
        TOLERANCE["04_svm_baselines"][f"{_what}_{_input}"] = (0.0, 0.005)

# Overrides of TOLERANCE where the machine is of a CPU class without stored numbers, set from the
# differences measured between an AVX-512 (bf16) machine and an AVX2 machine: the IK's largest
# deviation from the reference moved 6.22 -> 6.58 deg (another SLSQP path of a redundant arm) and its
# reference error 1.3e-5 -> 1.0e-4 cm; the toy model of notebook 02 trains in bfloat16 on one and
# float32 on the other (precision "auto"), so its per-unit R^2 moved by up to 0.65, the medians per
# layer by up to 0.03 and its test accuracy 0.325 -> 0.375: per-unit lists are not compared there.
CROSS_CPU_TOLERANCE: dict[str, dict[str, tuple[float, float] | None]] = {
    "01_from_pen_to_proprioception": {
        "ik_vs_reference_max_deg": (0.0, 1.0),
        "ik_reference_err_max_cm": (0.0, 1e-3),
    },
    "02_tuning_curves_of_a_trained_model": {
        "r2": None,
        "top_r2": None,
        "n_fitted": None,
        "r2_median": (0.0, 0.08),
        "median_r2_per_layer": (0.0, 0.08),
        "test_accuracy": (0.0, 0.15),
    },
}


def _differences(stored, fresh, tol: tuple[float, float], path: str) -> list[str]:
    """Where ``fresh`` differs from ``stored`` beyond ``tol`` = (rtol, atol): 'path: stored vs fresh'."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        out = []
        if set(stored) != set(fresh):
            out.append(f"{path or '/'}: keys {sorted(set(stored) ^ set(fresh))} only in one of them")
        for k in sorted(set(stored) & set(fresh)):
            out += _differences(stored[k], fresh[k], tol, f"{path}/{k}" if path else k)
        return out
    if isinstance(stored, list) and isinstance(fresh, list):
        if len(stored) != len(fresh):
            return [f"{path}: {len(stored)} values stored, {len(fresh)} now"]
        return [
            d for i, (a, b) in enumerate(zip(stored, fresh)) for d in _differences(a, b, tol, f"{path}[{i}]")
        ]
    number = (int, float)
    if isinstance(stored, number) and isinstance(fresh, number) and not isinstance(stored, bool):
        if isinstance(stored, int) and isinstance(fresh, int) and not isinstance(fresh, bool):
            return [] if stored == fresh else [f"{path}: {stored} stored, {fresh} now"]
        a, b = float(stored), float(fresh)
        if math.isnan(a) and math.isnan(b):
            return []
        rtol, atol = tol
        return [] if abs(a - b) <= atol + rtol * abs(a) else [f"{path}: {a!r} stored, {b!r} now"]
    return [] if stored == fresh else [f"{path}: {stored!r} stored, {fresh!r} now"]


def compare_key_numbers(name: str, stored: dict, fresh: dict, cross_cpu: bool = False) -> list[str]:
    """Differences between a notebook's stored key numbers and a fresh run's, with its tolerances
    (``cross_cpu``: the numbers were stored on another CPU class, :data:`CROSS_CPU_TOLERANCE`)."""
    tols = TOLERANCE.get(name, {}) | (CROSS_CPU_TOLERANCE.get(name, {}) if cross_cpu else {})
    out = []
    if set(stored) != set(fresh):
        out.append(f"keys {sorted(set(stored) ^ set(fresh))} only in one of them")
    for k in sorted(set(stored) & set(fresh)):
        tol = tols.get(k, DEFAULT_TOL)
        if tol is not None:
            out += _differences(stored[k], fresh[k], tol, k)
    return out


def cpu_class() -> str:
    """The numerics class of this machine: architecture, torch's CPU kernel level, native bfloat16
    (e.g. ``"x86_64 AVX512 bf16"``, ``"x86_64 AVX2"``)."""
    import platform

    import torch

    from deepdraw.nn.precision import bf16_native

    bf16 = " bf16" if bf16_native(torch.device("cpu")) else ""
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}{bf16}"


def stored_numbers_for(meta: dict, cpu: str) -> tuple[dict, bool]:
    """The key numbers to compare a run on ``cpu`` with: ``(numbers, cross_cpu)``; ``cross_cpu`` when
    none were stored for that class (then the numbers of the stored outputs)."""
    if meta.get("cpu") == cpu:
        return meta["key_numbers"], False
    by_cpu = meta.get("key_numbers_by_cpu", {})
    if cpu in by_cpu:
        return by_cpu[cpu], False
    return meta["key_numbers"], True


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


def _run_for_numbers(path: Path, timeout: int):
    """Execute ``path`` with its outputs going to a temporary folder: (executed notebook, key numbers)."""
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
    print(f"{path.name}: executed in {dt:.1f} s", flush=True)
    return nb, numbers


def check_numbers_only(name: str, old: dict, code_sha256: str) -> None:
    """``--numbers-only`` needs stored outputs of this very code, with their CPU class."""
    if old.get("code_sha256") != code_sha256 or "cpu" not in old:
        raise ValueError(
            f"{name}: --numbers-only needs the stored outputs of this code with their CPU class "
            f"(metadata.{META}.code_sha256 and .cpu); run without --numbers-only first"
        )


def merge_key_numbers(
    name: str,
    old: dict,
    cpu: str,
    numbers: dict,
    code_sha256: str,
    numbers_only: bool = False,
    drop_other_cpus: bool = False,
) -> tuple[dict, list[str]]:
    """A notebook's new ``metadata.deepdraw`` after a run on ``cpu`` gave ``numbers`` (its code's
    digest ``code_sha256``; ``old``: the stored metadata), and messages for the user.

    A full run stores its numbers as those of the outputs and keeps the other classes' numbers only
    if the code is unchanged and this run's numbers equal (within :data:`TOLERANCE`) what was stored for
    its class (for a class without numbers: those of the stored outputs, within the cross-class
    tolerances); otherwise they may be stale and are dropped. ``numbers_only`` adds or confirms this
    class's numbers beside the stored ones (the code must be the stored one; numbers already stored for
    this class, the outputs' or another's, must not change: that would mean stale outputs).
    """
    if numbers_only:
        check_numbers_only(name, old, code_sha256)
        if cpu == old["cpu"]:
            diffs = compare_key_numbers(name, old["key_numbers"], numbers)
            if diffs:
                raise ValueError(
                    f"{name}: the key numbers of its own CPU class changed ({'; '.join(diffs[:3])}): the "
                    "stored outputs are stale; re-execute it without --numbers-only"
                )
            return old, [f"{name}: key numbers of {cpu} unchanged"]
        stored = old.get("key_numbers_by_cpu", {}).get(cpu)
        diffs = compare_key_numbers(name, stored, numbers) if stored is not None else []
        if diffs:
            raise ValueError(
                f"{name}: the key numbers stored for {cpu} changed ({'; '.join(diffs[:3])}): the stored "
                "outputs may be stale too; re-execute it without --numbers-only"
            )
        by_cpu = old.get("key_numbers_by_cpu", {}) | {cpu: numbers}
        return old | {"key_numbers_by_cpu": by_cpu}, [f"{name}: key numbers of {cpu} recorded"]
    others = dict(old.get("key_numbers_by_cpu", {}))
    if "cpu" in old and old["cpu"] != cpu:
        others[old["cpu"]] = old["key_numbers"]
    if old.get("cpu") == cpu:
        previous, cross = old["key_numbers"], False
    elif cpu in others:
        previous, cross = others.pop(cpu), False
    else:
        previous, cross = old.get("key_numbers"), True
    changed = previous is not None and bool(compare_key_numbers(name, previous, numbers, cross_cpu=cross))
    messages = []
    if others and (drop_other_cpus or changed or old.get("code_sha256") != code_sha256):
        why = "asked" if drop_other_cpus else "the numbers changed" if changed else "the code was edited"
        messages.append(f"{name}: key numbers of {sorted(others)} dropped ({why})")
        others = {}
    meta = {"key_numbers": numbers, "cpu": cpu, "code_sha256": code_sha256, "figure_dpi": FIGURE_DPI}
    if others:
        meta["key_numbers_by_cpu"] = others
    return meta, messages


def store(
    path: Path, timeout: int = TIMEOUT_S, numbers_only: bool = False, drop_other_cpus: bool = False
) -> dict:
    """Execute ``path`` and write it back with its outputs and key numbers (``numbers_only``: record
    this CPU class's key numbers only, outputs untouched; :func:`merge_key_numbers`); returns them."""
    import nbformat

    original = nbformat.read(path, as_version=4)
    old = dict(original.metadata.get(META, {}))
    cpu = cpu_class()
    if numbers_only:
        check_numbers_only(path.stem, old, code_digest(original))  # before the run, not after
    nb, numbers = _run_for_numbers(path, timeout)
    meta, messages = merge_key_numbers(
        path.stem, old, cpu, numbers, code_digest(nb), numbers_only, drop_other_cpus
    )
    if numbers_only:
        nb = original
    else:
        nb.metadata = copy.deepcopy(original.metadata)  # generic kernelspec, no interpreter version
    nb.metadata[META] = meta
    nbformat.validate(nb)
    nbformat.write(nb, path)
    for m in messages:
        print(m, flush=True)
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB stored; key numbers of {cpu}", flush=True)
    return numbers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to execute (default: notebooks/*.ipynb)"
    )
    ap.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds per cell (default %(default)s)")
    ap.add_argument(
        "--numbers-only",
        action="store_true",
        help="record this CPU class's key numbers beside the stored ones; outputs untouched",
    )
    ap.add_argument(
        "--drop-other-cpus", action="store_true", help="drop the key numbers stored for other CPU classes"
    )
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted(NB_DIR.glob("*.ipynb"))
    for p in paths:
        if not p.is_file() or p.suffix != ".ipynb":
            ap.error(f"{p}: not a notebook file")
        store(p.resolve(), args.timeout, args.numbers_only, args.drop_other_cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
