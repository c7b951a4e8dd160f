"""Config, artifact store, characters and augmentation transforms."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from deepdraw import LETTERS, store
from deepdraw.cli import main
from deepdraw.config import Config, config_from_dict, load_config
from deepdraw.dataset import augment, characters
from deepdraw.errors import DeepDrawError

# --- config ------------------------------------------------------------------------------------


def test_unknown_key_suggests_nearest(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[kinematics]\nn_candidate = 5\n")
    with pytest.raises(
        DeepDrawError, match=r"unknown key 'kinematics.n_candidate'.*did you mean 'n_candidates'"
    ):
        load_config(p)


def test_unknown_section_and_wrong_type(tmp_path):
    with pytest.raises(DeepDrawError, match=r"unknown section '\[kinematic\]'.*'kinematics'"):
        config_from_dict({"kinematic": {}})
    with pytest.raises(DeepDrawError, match=r"'kinematics.n_candidates' is 'many'; expected an integer"):
        config_from_dict({"kinematics": {"n_candidates": "many"}})


def test_bad_plane_and_too_many_samples():
    with pytest.raises(DeepDrawError, match="kinematics.planes.*diagonal.*horizontal, vertical"):
        config_from_dict({"kinematics": {"planes": ["diagonal"]}})
    with pytest.raises(DeepDrawError, match="n_samples. is 20, which exceeds kinematics.n_candidates"):
        config_from_dict({"kinematics": {"n_candidates": 10}, "assembly": {"n_samples": 20}})


BAD_VALUES = [  # issue 17: each failed late (after earlier stages), or deleted outputs first, or crashed
    ("train", "tasks", ["xyz"], r"'train.tasks' holds 'xyz'; expected some of art, tdt, tdt_pv"),
    ("tuning", "trim", "bogus", r"'tuning.trim' is 'bogus'; expected one of fixed, original, none"),
    ("rsa", "device", "tpu", r"'rsa.device' is 'tpu'; expected cpu, cuda or auto"),
    ("train", "max_epochs", -1, r"'train.max_epochs' is -1; expected a positive integer"),
    ("assembly", "chunk", -100, r"'assembly.chunk' is -100; expected a positive integer"),
    ("assembly", "dt", 0, r"'assembly.dt' is 0.0; expected a positive time step"),
    ("assembly", "n_frames", 10, r"'assembly.n_frames' is 10; expected 320"),
    ("parallel", "memory_limit", "lots", r"'parallel.memory_limit' is 'lots'; expected a size such as '2GB'"),
    ("characters", "box_cm", -10, r"'characters.box_cm' is -10.0; expected a positive size in cm"),
    ("train", "models", ["lstm_x"], r"'train.models' holds 'lstm_x'"),
    ("train", "device", "tpu", r"'train.device' is 'tpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("train", "precision", "fp8", r"'train.precision' is 'fp8'"),
    ("search", "families", ["resnet"], r"'search.families' holds 'resnet'"),
    ("search", "tasks", ["tdt_xy"], r"'search.tasks' holds 'tdt_xy'; expected some of art, tdt, tdt_pv"),
    ("search", "tasks", [], r"'search.tasks' is empty"),
    ("search", "select_by", "test_accuracy", r"'search.select_by' is 'test_accuracy'; expected 'validation'"),
    ("search", "select_task", "tdt_pv", r"'search.select_task' is 'tdt_pv'; expected one of search.tasks"),
    ("search", "n_per_family", -1, r"'search.n_per_family' is -1; expected 0 \(no search\)"),
    (
        "train",
        "models",
        "serach",
        r"'train.models' is 'serach'; expected a list of model names or \"search\"",
    ),
    ("train", "models", "search", r"'train.models' is \"search\" but search.n_per_family is 0"),
    ("activations", "n_samples", 0, r"'activations.n_samples' is 0; expected a positive integer"),
    ("svm", "c_grid", [-1.0], r"'svm.c_grid' holds -1.0; expected positive finite C values"),
    ("svm", "subsets", ["colour=red"], r"svm.subsets: entry 'colour=red' names the unknown latent"),
    ("startpoints", "tol_cm", 0, r"'startpoints.tol_cm' is 0.0; expected a positive length"),
    ("kinematics", "speeds", [], r"'kinematics.speeds' is empty"),
    ("run", "seed", -1, r"'run.seed' is -1; expected a non-negative integer"),
    (
        "assembly",
        "n_samples",
        2,
        r"keys 'assembly.n_samples' = 2 and 'assembly.test_fraction' = 0.2 give 0 test",
    ),
]


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD_VALUES)
def test_every_section_is_checked_at_load(tmp_path, section, key, value, message):
    """A bad value in any section is one error at load naming the file, the key, the value and what
    was expected (before any stage runs or any output is touched)."""
    p = tmp_path / "bad.toml"
    p.write_text(f"[{section}]\n{key} = {json.dumps(value)}\n")
    with pytest.raises(DeepDrawError, match=rf"^{p}: (key )?{message}"):
        load_config(p)


def test_bad_config_fails_before_touching_the_run(tmp_path, capsys):
    """train.max_epochs = -1 deleted models/ and then failed (issue 17); now nothing is touched."""
    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    (out / "models" / "summary.csv").write_text("kept\n")
    p = tmp_path / "bad.toml"
    p.write_text(f'[run]\nout_dir = "{out}"\n[train]\nmax_epochs = -1\n')
    assert main(["-q", "pipeline", str(p)]) == 2
    assert "train.max_epochs' is -1" in capsys.readouterr().err
    assert (out / "models" / "summary.csv").read_text() == "kept\n"
    assert sorted(x.name for x in out.iterdir()) == ["models"]  # no stamps, no lock left


def test_shipped_configs_load():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")):
        assert load_config(p).source == str(p)


def test_config_defaults_and_digest(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[run]\nseed = 7\n[kinematics]\nsizes = [1, 2]\n")
    cfg = load_config(p)
    assert cfg.run.seed == 7 and cfg.kinematics.sizes == [1.0, 2.0]
    assert cfg.kinematics.max_attempts == Config().kinematics.max_attempts
    d1 = cfg.digest(["kinematics"])
    cfg.kinematics.sizes = [1.0]
    assert cfg.digest(["kinematics"]) != d1
    assert cfg.digest(["svm"]) == Config().digest(["svm"])


# --- store -------------------------------------------------------------------------------------

SCHEMA = {"x": store.Field(("n", 3), "f"), "y": store.Field(("n",), "iu")}


def test_artifact_round_trip_and_provenance(tmp_path):
    p = tmp_path / "a.h5"
    store.write_artifact(
        p,
        {"x": np.ones((4, 3)), "y": np.arange(4)},
        kind="demo",
        config={"a": 1},
        seeds={"s": 2},
        inputs={"f": "abc"},
    )
    a = store.read_arrays(p, kind="demo", schema=SCHEMA)
    assert a["x"].shape == (4, 3) and a["y"].tolist() == [0, 1, 2, 3]
    attrs = store.read_attrs(p)
    assert attrs["config"] == {"a": 1} and attrs["seeds"] == {"s": 2} and attrs["inputs"] == {"f": "abc"}
    assert attrs["versions"]["numpy"] == np.__version__ and attrs["deepdraw_version"]
    assert not any(n.startswith(".") for n in os.listdir(tmp_path))  # no temporary left


def test_layout_does_not_depend_on_dataset_lifetimes(tmp_path):
    """Same content -> same bytes, even when a dataset id is held open until the attributes are written.

    (Seen in CI: a Dask worker's profiler thread kept h5py's frame alive, so the last dataset's chunk
    landed after the attribute heap and the shard's bytes differed from the synchronous run's.)
    """
    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((10, 4, 500)).astype("f4"), "b": rng.standard_normal((10, 3, 500))}
    out = {}
    for hold in (False, True):
        held = []
        with store.ArtifactWriter(tmp_path / f"{hold}.h5", kind="t", config={"x": 1}) as f:
            for k, v in arrays.items():
                ds = f.create_dataset(k, data=v, compression="gzip")
                if hold:
                    held.append(ds)
                del ds
            if hold:
                d = f.create_dataset("c", shape=(100, 8), dtype="f8", chunks=(64, 8))
                d[0:50] = 1.0  # a partial chunk, written while the id stays open
                held.append(d)
            else:
                f.create_dataset("c", shape=(100, 8), dtype="f8", chunks=(64, 8))
                f["c"][0:50] = 1.0
                f.flush()
        out[hold] = (tmp_path / f"{hold}.h5").read_bytes()
    assert out[True] == out[False]


def test_store_refuses_overwrite_and_cleans_up_on_error(tmp_path):
    p = tmp_path / "a.h5"
    store.write_artifact(p, {"x": np.zeros((1, 3))}, kind="demo")
    with pytest.raises(DeepDrawError, match="exists; refusing to overwrite"):
        store.write_artifact(p, {"x": np.zeros((1, 3))}, kind="demo")
    q = tmp_path / "b.h5"
    with pytest.raises(RuntimeError):
        with store.ArtifactWriter(q, kind="demo") as f:
            f.create_dataset("x", data=np.zeros(3))
            raise RuntimeError("killed")
    assert not q.exists() and os.listdir(tmp_path) == ["a.h5"]


def test_validation_names_file_key_and_shapes(tmp_path):
    p = tmp_path / "a.h5"
    store.write_artifact(p, {"x": np.ones((4, 2)), "y": np.arange(5)}, kind="demo")
    with pytest.raises(DeepDrawError, match=r"a.h5: key 'x' has shape \(4, 2\); expected \(n, 3\)"):
        store.open_artifact(p, schema=SCHEMA)
    with pytest.raises(DeepDrawError, match="attribute 'kind' is 'demo'; expected 'other'"):
        store.open_artifact(p, kind="other")
    store.write_artifact(tmp_path / "c.h5", {"x": np.ones((4, 3)), "y": np.arange(5)}, kind="demo")
    with pytest.raises(DeepDrawError, match="key 'y'.*with n=4"):
        store.open_artifact(tmp_path / "c.h5", schema=SCHEMA)
    store.write_artifact(tmp_path / "d.h5", {"x": np.ones((4, 3)), "y": np.ones(4)}, kind="demo")
    with pytest.raises(DeepDrawError, match="key 'y' has dtype float64; expected kind 'iu'"):
        store.open_artifact(tmp_path / "d.h5", schema=SCHEMA)


def test_truncated_and_missing_files(tmp_path):
    p = tmp_path / "a.h5"
    store.write_artifact(p, {"x": np.ones((1000, 3))}, kind="demo")
    data = p.read_bytes()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DeepDrawError, match="bad.h5: not a readable HDF5 file"):
        store.open_artifact(bad)
    with pytest.raises(DeepDrawError, match="nope.h5: file not found"):
        store.open_artifact(tmp_path / "nope.h5")


# --- characters --------------------------------------------------------------------------------


def test_shipped_characters_rebuild_matches_uci_checksums():
    rc = characters.load_shipped()  # verifies both sha256 digests
    assert len(rc.raw) == 2858
    counts = np.bincount(rc.labels - 1, minlength=20)
    # per-class totals from the UCI/UEA checks (data README)
    assert counts[LETTERS.index("a")] == 171 and counts[LETTERS.index("z")] == 171
    assert counts[LETTERS.index("r")] == 119 and counts.sum() == 2858


def test_preprocess_hand_case():
    vel = np.array([[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 3.0], [9.0, 9.0, 9.0, 9.0]])
    p = characters.preprocess_one(vel, box_cm=10.0)
    # zero-velocity frame dropped; cumsum x = [1, 3, 4] -> [-5, 3.333, 5]; y = [0, 1, 4] -> [-5, -2.5, 5]
    np.testing.assert_allclose(p, [[-5.0, 10 * (2 / 3 - 0.5), 5.0], [-5.0, -2.5, 5.0]])
    q = characters.preprocess_one(vel, box_cm=10.0, keep_aspect=True)
    # both axes scaled by the larger range (4), each centred: x in [-3.75, 3.75]
    np.testing.assert_allclose(q[0], (np.array([1, 3, 4]) - 2.5) / 4 * 10)
    np.testing.assert_allclose(q[1], (np.array([0, 1, 4]) - 2.0) / 4 * 10)


def test_preprocess_rejects_nan_and_empty():
    rc = characters.RawCharacters([np.array([[1.0, np.nan], [0.0, 1.0], [0, 0]])], np.array([1]), "x.mat")
    with pytest.raises(DeepDrawError, match="x.mat: trajectory 0: trajectory holds NaN"):
        characters.preprocess(rc)
    with pytest.raises(DeepDrawError, match="character set is empty"):
        characters.preprocess(characters.RawCharacters([], np.array([], dtype=int), "y.mat"))


def test_canonical_mat_reader(tmp_path):
    from scipy.io import savemat

    rc = characters.load_shipped()
    mixout = np.empty((1, 3), dtype=object)
    for i in range(3):
        mixout[0, i] = rc.raw[i]
    consts = {"charlabels": rc.labels[:3].reshape(1, -1).astype(float)}
    savemat(tmp_path / "mixoutALL_shifted.mat", {"mixout": mixout, "consts": consts})
    got = characters.load_canonical(tmp_path / "mixoutALL_shifted.mat")
    assert got.labels.tolist() == rc.labels[:3].tolist()
    np.testing.assert_array_equal(got.raw[2], rc.raw[2])
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(DeepDrawError, match="junk.mat: not a readable MATLAB file"):
        characters.load_canonical(tmp_path / "junk.mat")


def test_characters_command_writes_artifact(tmp_path, capsys):
    cfgp = tmp_path / "c.toml"
    cfgp.write_text(f'[run]\nout_dir = "{tmp_path / "run"}"\n')
    # a config without dataset sections uses another config's dataset: it never makes one
    assert main(["-q", "dataset", "characters", str(cfgp)]) == 2
    assert "has no dataset sections" in capsys.readouterr().err and not (tmp_path / "run").exists()
    cfgp.write_text(f'[run]\nout_dir = "{tmp_path / "run"}"\n[characters]\n')
    assert main(["-q", "dataset", "characters", str(cfgp)]) == 0
    out = tmp_path / "run" / "dataset" / "characters.h5"
    with h5py.File(out) as f:
        assert f["trajectories"].shape == (2858, 2, 182)
        assert f.attrs["letters"] == LETTERS
        lab = f["labels"][()]
        assert lab.min() == 0 and lab.max() == 19
        assert np.nanmax(np.abs(f["trajectories"][()])) == pytest.approx(5.0)
        assert json.loads(f.attrs["config"])["characters"]["box_cm"] == 10.0
    # the same config again: the stage is up to date, nothing is rewritten
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    assert main(["-q", "dataset", "characters", str(cfgp)]) == 0
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    # another config: refused (exit code 2, file untouched) until --force
    cfgp.write_text(f'[run]\nout_dir = "{tmp_path / "run"}"\n[characters]\nbox_cm = 8.0\n')
    assert main(["-q", "dataset", "characters", str(cfgp)]) == 2
    assert out.read_bytes() == before
    assert main(["-q", "dataset", "characters", str(cfgp), "--force"]) == 0
    with h5py.File(out) as f:
        assert np.nanmax(np.abs(f["trajectories"][()])) == pytest.approx(4.0)


def test_cli_unknown_config_key_exit_code(tmp_path, capsys):
    cfgp = tmp_path / "c.toml"
    cfgp.write_text("[assembly]\nn_sample = 3\n")
    assert main(["-q", "dataset", "characters", str(cfgp)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'assembly.n_sample'" in err and "n_samples" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


# --- augmentation ------------------------------------------------------------------------------


def test_resize_rotate_speedify_hand_cases():
    p = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    r = augment.resize(p, 1.0)
    np.testing.assert_allclose(r, p)  # size 1 is the identity
    r2 = augment.resize(p, 2.0)  # 8 points, velocity interpolated on [0, 3] then integrated
    assert r2.shape == (2, 8)
    x = np.linspace(0, 3, 8)
    v = np.interp(x, np.arange(4), [0.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(r2[0], np.cumsum(v))
    rs = augment.rotate_shear(np.array([[1.0], [0.0]]), np.pi / 2, 0.0, 0.0)
    np.testing.assert_allclose(rs.ravel(), [0.0, 1.0], atol=1e-12)
    sh = augment.rotate_shear(np.array([[0.0], [1.0]]), 0.0, np.pi / 4, 0.0)
    np.testing.assert_allclose(sh.ravel(), [1.0, 1.0])
    s = augment.speedify(np.array([[0.0, 2.0, 4.0, 6.0], [1.0, 1.0, 1.0, 1.0]]), 2.0)
    np.testing.assert_allclose(s, [[0.0, 6.0], [1.0, 1.0]])


def test_to_world_planes():
    p = np.array([[1.0], [2.0]])
    sp = np.array([30.0, -10.0, 5.0])
    np.testing.assert_allclose(augment.to_world(p, "horizontal", sp).ravel(), [32.0, -11.0, 5.0])
    np.testing.assert_allclose(augment.to_world(p, "vertical", sp).ravel(), [30.0, -11.0, 7.0])


def test_max_length_is_295_for_uci():
    assert augment.max_length(182, [0.7, 1.0, 1.3], [0.8, 1.0, 1.2, 1.4]) == 295


def test_config_reference_doc_is_up_to_date():
    """docs/config.md lists every key with its default (regenerate with reference_markdown())."""
    from pathlib import Path

    from deepdraw.config import reference_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text().strip() == reference_markdown().strip()
