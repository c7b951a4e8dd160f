"""The notebooks in ``notebooks/``: stored executed, and a fresh run reproduces what they show.

Stored (fast, no kernel): every notebook is executed top to bottom, holds no error, shows figures, carries
its key numbers (``metadata.deepdraw.key_numbers``, written by ``notebooks/execute.py``) and was executed
after its code was last edited.

Re-executed (slow): each notebook runs in a kernel of this interpreter, set up by ``notebooks/execute.py``
itself (:func:`kernel_environment`, :func:`execute`: the same way the stored copies were made), with
parameters injected as a cell after the one tagged ``parameters`` (the papermill convention) without
editing the stored files. Then: no cell error; every figure exists and is a non-blank image; the
numbers each notebook checks hold; and its ``summary.json`` equals the key numbers stored in the
notebook for this machine's CPU class within the tolerances of ``execute.TOLERANCE`` (a notebook whose
stored outputs went stale fails here: run ``make notebooks``); on a CPU class without stored numbers,
those of the stored outputs within ``execute.CROSS_CPU_TOLERANCE``. Notebook 02 runs twice: first building and training its toy model, then
with ``RUN_DIR`` pointing at that toy run (the branch that loads an existing run).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
MAX_STORED_BYTES = 1_000_000  # per notebook: figures at modest resolution


def _executor():
    spec = importlib.util.spec_from_file_location("notebook_execute", NB_DIR / "execute.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXEC = _executor()

CPU = EXEC.cpu_class()


def stored_key_numbers(name: str) -> tuple[dict, bool]:
    """The stored key numbers for this machine's CPU class: (numbers, stored on another class)."""
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    return EXEC.stored_numbers_for(nb.metadata[EXEC.META], CPU)


def check_key_numbers(name: str, out_dir: Path) -> dict:
    """The fresh run's summary.json (timings dropped) equals the stored key numbers of this CPU class
    (of another class, within the cross-class tolerances); returns it."""
    fresh = EXEC.key_numbers(json.loads((out_dir / name / "summary.json").read_text()))
    stored, cross_cpu = stored_key_numbers(name)
    diffs = EXEC.compare_key_numbers(name, stored, fresh, cross_cpu)
    where = "another CPU class's (none stored for " + CPU + ")" if cross_cpu else CPU + "'s"
    assert not diffs, (
        f"notebooks/{name}.ipynb: the key numbers stored in the notebook ({where}) differ from a fresh "
        f"run ({len(diffs)}): " + "; ".join(diffs[:8]) + ". If the change is intended, run `make notebooks`."
    )
    return fresh


# ---------------------------------------------------------------------------------------- stored copies
def test_the_comparison_of_key_numbers_catches_a_change():
    compare = EXEC.compare_key_numbers
    stored = {"n": 3, "acc": 0.5, "name": "a", "per_layer": {"x": 0.25}, "curve": [0.1, 0.2], "t": 1e-9}
    assert compare("x", stored, json.loads(json.dumps(stored))) == []
    assert compare("x", stored, stored | {"acc": 0.5 + 1e-9, "t": 1.5e-9}) == []  # within tol
    changed = stored | {"n": 4, "per_layer": {"x": 0.26}, "curve": [0.1, 0.2, 0.3], "name": "b"}
    diffs = compare("x", stored, changed)
    assert len(diffs) == 4 and any(d.startswith("per_layer/x:") for d in diffs)
    assert compare("x", stored, stored | {"extra": 1})  # a new key is a difference
    # across CPU classes: the cross-class tolerances replace the same-class ones, per key
    nb02 = "02_tuning_curves_of_a_trained_model"
    s02 = {"r2": [0.2, 0.3], "r2_median": 0.25, "n_fitted": 92, "lstsq_vs_per_unit_max": 1e-12}
    f02 = s02 | {"r2": [0.29, 0.3], "r2_median": 0.28, "n_fitted": 91}
    assert len(compare(nb02, s02, f02)) == 3 and compare(nb02, s02, f02, cross_cpu=True) == []
    assert compare(nb02, s02, f02 | {"r2_median": 0.4}, cross_cpu=True)  # beyond the cross-class tolerance
    assert compare(nb02, s02, f02 | {"lstsq_vs_per_unit_max": 1e-6}, cross_cpu=True)  # not loosened


def test_key_numbers_are_chosen_by_cpu_class():
    meta = {
        "cpu": "x86_64 AVX512 bf16",
        "key_numbers": {"a": 1},
        "key_numbers_by_cpu": {"x86_64 AVX2": {"a": 2}},
    }
    assert EXEC.stored_numbers_for(meta, "x86_64 AVX512 bf16") == ({"a": 1}, False)
    assert EXEC.stored_numbers_for(meta, "x86_64 AVX2") == ({"a": 2}, False)
    assert EXEC.stored_numbers_for(meta, "aarch64 DEFAULT") == ({"a": 1}, True)
    assert CPU.split()[0] and CPU.split()[1]  # architecture and torch's kernel level
    assert EXEC.key_numbers({"a": 1, "ik_batch_s": 0.3, "seconds": 2.0, "solver_seconds": 1.0}) == {"a": 1}


def test_merging_key_numbers_keeps_other_cpu_classes_only_when_nothing_changed():
    merge, nb02 = EXEC.merge_key_numbers, "02_tuning_curves_of_a_trained_model"
    a512, a2 = "x86_64 AVX512 bf16", "x86_64 AVX2"
    n512 = {"r2_median": 0.23, "n_fitted": 92}
    n2 = {"r2_median": 0.20, "n_fitted": 91}
    old = {"key_numbers": n512, "cpu": a512, "code_sha256": "c", "key_numbers_by_cpu": {a2: n2}}
    # re-executed on a class with numbers, unchanged: the other class is kept
    meta, msgs = merge(nb02, old, a2, dict(n2), "c")
    assert meta["cpu"] == a2 and meta["key_numbers"] == n2 and meta["key_numbers_by_cpu"] == {a512: n512}
    assert not msgs
    # its numbers changed (a package change): the other class may be stale and is dropped
    meta, msgs = merge(nb02, old, a2, n2 | {"r2_median": 0.3}, "c")
    assert "key_numbers_by_cpu" not in meta and "changed" in msgs[0]
    # code edited, or asked: dropped
    assert "key_numbers_by_cpu" not in merge(nb02, old, a2, n2, "d")[0]
    assert "key_numbers_by_cpu" not in merge(nb02, old, a2, n2, "c", drop_other_cpus=True)[0]
    # a class without numbers: compared with the stored outputs' within the cross-class tolerances
    meta, _ = merge(nb02, old, "aarch64 DEFAULT", {"r2_median": 0.25, "n_fitted": 80}, "c")
    assert set(meta["key_numbers_by_cpu"]) == {a512, a2}
    meta, _ = merge(nb02, old, "aarch64 DEFAULT", {"r2_median": 0.4, "n_fitted": 80}, "c")
    assert "key_numbers_by_cpu" not in meta
    # --numbers-only: adds a class beside the stored ones, outputs' class unchanged
    meta, _ = merge(nb02, old, "aarch64 DEFAULT", n2, "c", numbers_only=True)
    assert meta["key_numbers"] == n512 and set(meta["key_numbers_by_cpu"]) == {a2, "aarch64 DEFAULT"}
    with pytest.raises(ValueError, match="changed"):  # on the outputs' own class the numbers must not move
        merge(nb02, old, a512, n512 | {"r2_median": 0.3}, "c", numbers_only=True)
    with pytest.raises(ValueError, match="changed"):  # a class with numbers: they must not move either
        merge(nb02, old, a2, n2 | {"r2_median": 0.3}, "c", numbers_only=True)
    assert merge(nb02, old, a2, dict(n2), "c", numbers_only=True)[0] == old  # confirmed, unchanged
    with pytest.raises(ValueError, match="numbers-only"):  # the stored outputs are of other code
        merge(nb02, old, a2, n2, "d", numbers_only=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_executed_with_its_key_numbers(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}; expected every code cell executed top to bottom "
        "(run `make notebooks`)"
    )
    images = 0
    for i, c in enumerate(code):
        errors = [o for o in c.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: code cell {i + 1} stored with an error: {errors[0].get('ename')}"
        assert "execution" not in c.metadata, f"{path.name}: code cell {i + 1} holds timing metadata"
        images += sum("image/png" in o.get("data", {}) for o in c.outputs)
    assert images >= 2, f"{path.name}: {images} figures stored; expected the notebook's figures"
    meta = nb.metadata.get(EXEC.META)
    assert meta and meta.get("key_numbers"), f"{path.name}: no metadata.{EXEC.META}.key_numbers"
    assert meta.get("cpu"), f"{path.name}: no metadata.{EXEC.META}.cpu (the CPU class that ran it)"
    for cpu, numbers in meta.get("key_numbers_by_cpu", {}).items():
        assert cpu != meta["cpu"] and set(numbers) == set(meta["key_numbers"]), (path.name, cpu)
    assert meta["code_sha256"] == EXEC.code_digest(nb), (
        f"{path.name}: its code was edited after it was executed; run `make notebooks`"
    )
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert path.stat().st_size < MAX_STORED_BYTES, f"{path.name}: {path.stat().st_size} bytes stored"


# ------------------------------------------------------------------------------------------ fresh runs
@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec for this interpreter, its IPython profile and environment (notebooks/execute.py)."""
    with EXEC.kernel_environment(tmp_path_factory.mktemp("jupyter")) as root:
        from jupyter_client.kernelspec import KernelSpecManager

        assert KernelSpecManager().get_kernel_spec(EXEC.KERNEL).argv[0] == sys.executable
        yield root


def run_notebook(name: str, params: dict, workdir: Path) -> tuple[object, float]:
    """Execute ``notebooks/<name>`` with ``params`` injected; returns (executed notebook, seconds)."""
    nb, dt = EXEC.execute(NB_DIR / name, workdir, params, timeout=240)
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


@pytest.mark.slow
def test_01_from_pen_to_proprioception(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook("01_from_pen_to_proprioception.ipynb", {"OUT_DIR": str(out)}, tmp_path)
    d = out / "01_from_pen_to_proprioception"
    for name in ("1_pen_path", "2_hand_path", "3_joints", "4_muscles", "5_inputs"):
        check_png(d / f"{name}.png")
    s = check_key_numbers("01_from_pen_to_proprioception", out)
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


@pytest.mark.slow
def test_02_tuning_curves(kernel_env, tmp_path):
    out, toy = tmp_path / "out", tmp_path / "toy_run"
    _, dt = run_notebook(
        "02_tuning_curves_of_a_trained_model.ipynb", {"OUT_DIR": str(out), "TOY_DIR": str(toy)}, tmp_path
    )
    d = out / "02_tuning_curves_of_a_trained_model"
    for name in ("tuning_curves", "r2_distribution"):
        check_png(d / f"{name}.png")
    s = check_key_numbers("02_tuning_curves_of_a_trained_model", out)
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


@pytest.mark.slow
def test_03_own_movements_to_neurons(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook(
        "03_own_movements_to_neurons.ipynb", {"OUT_DIR": str(out), "WORK_DIR": str(tmp_path / "w")}, tmp_path
    )
    d = out / "03_own_movements_to_neurons"
    for name in ("1_lab_reaches", "2_inputs", "3_ev_per_layer", "4_heatmap"):
        check_png(d / f"{name}.png")
    s = check_key_numbers("03_own_movements_to_neurons", out)
    assert s["n_windows"] == 16 and s["velocity_vs_gradient_max"] < 1e-3
    # the planted layer of the trained model predicts best, near the planted explained variance
    assert s["best_layer"] == s["layer"] and s["best_trained"]
    assert s["planted_ev_median"] - 0.06 < s["best_ev_median"] <= s["planted_ev_median"] + 0.02
    print(f"notebook 03 ran in {dt:.1f} s")


@pytest.mark.slow
def test_04_svm_baselines(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook(
        "04_svm_baselines.ipynb", {"OUT_DIR": str(out), "WORK_DIR": str(tmp_path / "w")}, tmp_path
    )
    d = out / "04_svm_baselines"
    for name in ("1_accuracy_per_input", "2_pairs_and_confusion"):
        check_png(d / f"{name}.png")
    s = check_key_numbers("04_svm_baselines", out)
    assert s["n_train"] + s["n_test"] == s["n_samples"] and s["confusion_total"] == s["n_test"]
    # the stage's matrices, pair accuracies, confusion matrix and summary agree with each other
    assert s["stage_consistency_max"] < 1e-12
    for k in s["inputs"]:
        assert 0.5 < s[f"pairwise_mean_acc_{k}"] <= 1.0  # pairwise: above chance on every input
        assert 0.0 <= s[f"multiclass_acc_{k}"] <= 1.0
    # the pair refitted by hand: the stage's choice of C and validation accuracies; liblinear's
    # objective at that C is not below ours (ours is the optimum, up to its 1e-6 duality-gap tolerance)
    assert s["one_pair_same_c"] and s["one_pair_val_acc_diff"] == 0.0
    assert s["one_pair_objective_excess_liblinear"] > -1e-5
    from deepdraw.report.facts import FACTS

    shown = [f for f in FACTS if f.key.startswith("svm.") and f.key[4:] in s]
    assert s["n_paper_values"] == len(shown) >= 8  # the paper's values of these inputs, with sources
    print(f"notebook 04 ran in {dt:.1f} s")


@pytest.mark.slow
def test_05_rsa_cka_of_trained_models(kernel_env, tmp_path):
    out = tmp_path / "out"
    _, dt = run_notebook(
        "05_rsa_cka_of_trained_models.ipynb", {"OUT_DIR": str(out), "WORK_DIR": str(tmp_path / "w")}, tmp_path
    )
    d = out / "05_rsa_cka_of_trained_models"
    for name in (
        "1_rdms",
        "2_oracle_similarity",
        "3_cka_trained_vs_untrained",
        "4_cka_between_architectures",
    ):
        check_png(d / f"{name}.png")
    s = check_key_numbers("05_rsa_cka_of_trained_models", out)
    from deepdraw import zoo

    art = [m for m in s["models"] if zoo.card(m)["task"] == "art"]
    assert len(art) >= 2
    for m in art:
        # trained: recognises the fresh movements; untrained control: near chance (1 in 20)
        assert s[f"accuracy.{m}"] >= 0.9 and s[f"accuracy.{m}r"] <= 0.15
        # the category appears in the last layer of the trained network only
        assert s["oracle_r_last"][m] > 0.1 > s["oracle_r_last"][m + "r"]
        # the input layer of a model and of its control are the same representation
        assert s["cka_trained_vs_untrained"][f"{m}/input"] == pytest.approx(1.0, abs=1e-6)
    # RDM + oracle and CKA recomputed by hand in float64 equal the stage's float32 Gram route
    assert s["oracle_by_hand_diff"] < 1e-4 and s["cka_by_hand_diff"] < 1e-4
    trained, untrained = np.array(s["cross_cka_trained"]), np.array(s["cross_cka_untrained"])
    assert trained[0, 0] == pytest.approx(1.0, abs=1e-6) and untrained[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert np.all((trained >= -1e-9) & (trained <= 1 + 1e-6))
    print(f"notebook 05 ran in {dt:.1f} s")
