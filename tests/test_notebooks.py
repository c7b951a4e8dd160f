"""Execute the notebooks in ``notebooks/`` and check their figures and the numbers they store.

The kernel is this interpreter (the project's venv): a kernel spec pointing at ``sys.executable`` is
written to a temporary ``JUPYTER_PATH``, so the test needs no kernel registered anywhere. Parameters are
injected as a cell after the one tagged ``parameters`` (the papermill convention), without editing the
stored notebooks. Notebook 02 runs twice: first building and training its toy model, then with
``RUN_DIR`` pointing at that toy run (the branch that loads an existing run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "deepdraw-test-venv"
TIMEOUT_S = 240  # per cell

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec for this interpreter in a temporary JUPYTER_PATH; threads capped for a shared CPU."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "deepdraw venv (test)",
                "language": "python",
            }
        )
    )
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "OMP_NUM_THREADS", "MPLBACKEND")}
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(root)] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else [])
    )
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.pop("MPLBACKEND", None)  # the kernel uses its inline backend
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_notebook(name: str, params: dict, workdir: Path) -> tuple[object, float]:
    """Execute ``notebooks/<name>`` with ``params`` injected; returns (executed notebook, seconds)."""
    nb = nbformat.read(NB_DIR / name, as_version=4)
    idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(idx) == 1, f"{name}: expected one cell tagged 'parameters'"
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(idx[0] + 1, nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=TIMEOUT_S, resources={"metadata": {"path": str(workdir)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    dt = time.perf_counter() - t0
    for c in nb.cells:
        if c.cell_type == "code":
            errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{name}: cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return nb, dt


def check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file(), f"{path} was not written"
    assert path.stat().st_size > 5_000, f"{path}: only {path.stat().st_size} bytes"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 150 and img.shape[1] >= 150, f"{path}: image {img.shape}"
    assert float(img[..., :3].std()) > 0.02, f"{path}: an almost blank image"


def test_notebooks_are_stored_clean():
    for p in sorted(NB_DIR.glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        nbformat.validate(nb)
        for c in nb.cells:
            if c.cell_type == "code":
                assert not c.outputs and c.execution_count is None, f"{p.name}: stored with outputs"


def test_01_from_pen_to_proprioception(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook("01_from_pen_to_proprioception.ipynb", {"OUT_DIR": str(out)}, tmp_path)
    d = out / "01_from_pen_to_proprioception"
    for name in ("1_pen_path", "2_hand_path", "3_joints", "4_muscles", "5_inputs"):
        check_png(d / f"{name}.png")
    s = json.loads((d / "summary.json").read_text())
    assert s["uci_index"] == 90 and s["letter"] in "abcdeghlmnopqrsuvwyz"
    from deepdraw.dataset.startpoints import load_original_startpoints

    vertical = load_original_startpoints()["vertical"]  # the start point comes from the vertical table
    assert np.any(np.all(np.isclose(vertical, s["startpt_cm"]), axis=1))
    assert s["ik_roundtrip_max_cm"] < 1e-3
    assert s["ik_reference_err_max_cm"] < 1e-2
    assert np.isfinite(s["ik_vs_reference_max_deg"])
    assert s["muscle_shape"][1] == 25 and s["muscle_shape"][0] == s["hand_shape"][1]
    if s["fast_engine"]:
        assert s["fast_vs_exact_max_mm"] < 1.0
    assert (
        s["dt"] == 0.015
        and s["spindle_info_shape"] == [25, 320, 2]
        and s["spindle_firing_shape"] == [25, 320]
    )

    z = np.load(d / "sample.npz")
    info, L, firing = z["spindle_info"], z["muscle_coords"], z["spindle_firing"]
    assert info.shape == (25, 320, 2) and firing.shape == (25, 320)
    np.testing.assert_array_equal(info[..., 0], L)
    np.testing.assert_allclose(info[..., 1], np.gradient(L, axis=-1) / 0.015, rtol=1e-10, atol=1e-9)
    onset, T = int(z["onset"]), s["hand_shape"][1]
    assert np.all(L[:, :onset] == L[:, :1]) and np.all(L[:, onset + T :] == L[:, -1:])
    assert np.all(np.isfinite(firing)) and not np.allclose(firing, 0)
    print(f"notebook 01 ran in {dt:.1f} s")


def test_02_tuning_curves(kernel_env, tmp_path):
    out, toy = tmp_path / "out", tmp_path / "toy_run"
    _, dt = run_notebook(
        "02_tuning_curves_of_a_trained_model.ipynb", {"OUT_DIR": str(out), "TOY_DIR": str(toy)}, tmp_path
    )
    d = out / "02_tuning_curves_of_a_trained_model"
    for name in ("tuning_curves", "r2_distribution"):
        check_png(d / f"{name}.png")
    s = json.loads((d / "summary.json").read_text())
    assert s["source"] == "toy"
    assert s["n_points"] > 200 and s["n_units"] > 0 and s["n_fitted"] > 0
    assert s["lstsq_vs_per_unit_max"] < 1e-8  # one solve for all units == one lstsq per unit
    r2 = np.asarray(s["r2"], dtype=float)
    r2 = r2[np.isfinite(r2)]
    assert r2.size and np.all(r2 <= 1 + 1e-9) and np.all(r2 >= -1e-9)  # in-sample R^2 with a bias
    assert s["top_r2"] == sorted(s["top_r2"], reverse=True) and s["top_r2"][0] == pytest.approx(r2.max())
    assert 0.0 <= s["test_accuracy"] <= 1.0
    # the toy folder has the layout of a pipeline run
    assert (toy / "dataset" / "pcrt_test.h5").is_file()
    assert list((toy / "models").glob("*/best.pt"))

    # the same notebook on an existing run folder (no training)
    out2 = tmp_path / "out2"
    _, dt2 = run_notebook(
        "02_tuning_curves_of_a_trained_model.ipynb", {"OUT_DIR": str(out2), "RUN_DIR": str(toy)}, tmp_path
    )
    s2 = json.loads((out2 / "02_tuning_curves_of_a_trained_model" / "summary.json").read_text())
    assert s2["source"] == "run" and s2["model"] == s["model"] and s2["layer"] == s["layer"]
    np.testing.assert_allclose(np.asarray(s2["r2"], float), np.asarray(s["r2"], float), rtol=1e-5, atol=1e-6)
    check_png(out2 / "02_tuning_curves_of_a_trained_model" / "tuning_curves.png")
    print(f"notebook 02 ran in {dt:.1f} s (toy) and {dt2:.1f} s (existing run)")


def test_03_own_movements_to_neurons(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook(
        "03_own_movements_to_neurons.ipynb", {"OUT_DIR": str(out), "WORK_DIR": str(tmp_path / "w")}, tmp_path
    )
    d = out / "03_own_movements_to_neurons"
    for name in ("1_lab_reaches", "2_inputs", "3_ev_per_layer", "4_heatmap"):
        check_png(d / f"{name}.png")
    s = json.loads((d / "summary.json").read_text())
    assert s["n_windows"] == 16 and s["velocity_vs_gradient_max"] < 1e-3
    # the planted layer of the trained model predicts best, near the planted explained variance
    assert s["best_layer"] == s["layer"] and s["best_trained"]
    assert s["planted_ev_median"] - 0.06 < s["best_ev_median"] <= s["planted_ev_median"] + 0.02
    print(f"notebook 03 ran in {dt:.1f} s")
