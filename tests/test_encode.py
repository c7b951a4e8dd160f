"""``deepdraw encode``: own movements back to the dataset's inputs and activations; formats; bad input."""

from __future__ import annotations

import json
from datetime import UTC

import h5py
import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from deepdraw import zoo
from deepdraw.cli import main
from deepdraw.config import config_from_dict
from deepdraw.contracts import JOINTS, MUSCLES
from deepdraw.dataset.checks import find_jumps
from deepdraw.encode.encode import encode_files
from deepdraw.encode.prepare import axes_matrix, windows
from deepdraw.errors import DeepDrawError

# a lab frame: x_lab = world -y, y_lab = world x, z_lab = world z; origin 20 cm forward, 5 cm right, 3 cm up
# of the shoulder; positions in mm
AXES = ["y", "-x", "z"]
ORIGIN = [20.0, -5.0, 3.0]


@pytest.fixture(scope="module")
def pcrt(tmp_path_factory):
    """A tiny PCRT dataset made by the project's own pipeline."""
    from deepdraw.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("enc") / "run"
    cfg = config_from_dict(
        {
            "run": {"out_dir": str(out), "seed": 7, "quiet": True},
            "parallel": {"mode": "sync"},
            "kinematics": {"n_candidates": 100, "shard_size": 100},
            "assembly": {"n_samples": 20, "chunk": 20},
        }
    )
    run_pipeline(cfg, only=["characters", "startpoints", "kinematics", "assemble"])
    path = out / "dataset" / "pcrt_train.h5"
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("endeffector_coords", "joint_coords", "muscle_coords", "spindle_info",
                                      "start_id", "end_id")}  # fmt: skip
    jumps = set(find_jumps(data["muscle_coords"])[0].tolist())
    return path, data, jumps


def _lab(world: np.ndarray) -> np.ndarray:
    """World cm (T, 3) -> lab mm, the inverse of the transform given to encode."""
    return ((world - np.array(ORIGIN)) @ axes_matrix(AXES)) * 10.0


def _write_csv(path, t, cols, names, movement=None):
    with open(path, "w") as g:
        g.write(",".join((["movement"] if movement else []) + ["time", *names]) + "\n")
        for tt, row in zip(t, cols):
            g.write(
                ",".join(([movement] if movement else []) + [f"{tt:.5f}"] + [f"{v:.6f}" for v in row]) + "\n"
            )


def _cfg(**encode):
    base = {"units": "mm", "axes": AXES, "origin_cm": ORIGIN}
    return config_from_dict({"run": {"quiet": True}, "encode": {**base, **encode}})


def _movement(data, i):
    a, b = int(data["start_id"][i]), int(data["end_id"][i])
    return a, b, data["endeffector_coords"][i][:, a:b].astype(np.float64).T


def test_a_dataset_movement_at_100_hz_in_a_lab_frame_encodes_back_to_the_datasets_inputs(pcrt, tmp_path):
    path, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    a, b, hand = _movement(data, i)
    t = np.arange(len(hand)) * 0.015
    t100 = np.arange(0, t[-1] + 0.01, 0.01)  # 100 Hz, one sample past the end
    _write_csv(tmp_path / "m.csv", t100, _lab(CubicSpline(t, hand, axis=0)(t100)), "xyz")
    enc = encode_files([tmp_path / "m.csv"], _cfg(onset=a), tmp_path / "encoded.h5")
    with h5py.File(enc, "r") as f:
        assert f.attrs["kind"] == "encoded" and json.loads(f.attrs["inputs"])
        assert (f["start_id"][0], f["end_id"][0], f["movement_frames"][0]) == (a, b, b - a)
        tol = {"endeffector_coords": 1e-3, "joint_coords": 5e-3, "muscle_coords": 2e-3, "spindle_info": 0.05}
        for k, atol in tol.items():
            np.testing.assert_allclose(f[k][0], data[k][i], atol=atol, err_msg=k)
        # the held posture before and after the movement: zero velocity, as the dataset
        assert np.all(f["spindle_info"][0][:, : a - 1, 1] == 0)


def test_encoded_activations_equal_the_models_on_the_dataset_sample(pcrt, tmp_path, one_torch_thread):
    from deepdraw.encode.models import run_models
    from deepdraw.nn.activations import extract_activations

    path, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    a, b, hand = _movement(data, i)
    np.save(tmp_path / "m.npy", _lab(hand))  # NPY: no rate stored
    cfg = _cfg(onset=a, rate_hz=1 / 0.015, models=[zoo.available()[0]])
    enc = encode_files([tmp_path / "m.npy"], cfg, tmp_path / "out" / "encoded.h5")
    files = run_models(enc, cfg, tmp_path / "out" / "activations")
    assert [p.name.endswith("_untrained.h5") for p in files] == [False, True]
    ref = extract_activations(zoo.verify(zoo.available()[0]), path, [i], tmp_path / "ref.h5")
    with h5py.File(files[0], "r") as f, h5py.File(ref, "r") as g:
        assert f.attrs["trained"] and json.loads(f.attrs["inputs"])  # provenance
        for la in g.attrs["layer_names"]:
            x, y = f[f"layers/{la}"][0], g[f"layers/{la}"][0]
            assert np.abs(x - y).max() <= 1e-3 * max(np.abs(y).max(), 1.0), la
    with h5py.File(files[1], "r") as f, h5py.File(files[0], "r") as g:
        assert not f.attrs["trained"]
        assert not np.allclose(
            f["layers/" + g.attrs["layer_names"][-1]][()], g["layers/" + g.attrs["layer_names"][-1]][()]
        )


def test_joint_angles_and_muscle_lengths_skip_the_ik_and_the_muscles(pcrt, tmp_path):
    path, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    a, b, hand = _movement(data, i)
    t = np.arange(b - a) * 0.015
    _write_csv(tmp_path / "j.csv", t, data["joint_coords"][i][:, a:b].T, JOINTS)
    _write_csv(tmp_path / "mus.csv", t, data["muscle_coords"][i][:, a:b].T, MUSCLES)
    enc = encode_files([tmp_path / "j.csv", tmp_path / "mus.csv"], _cfg(onset=a), tmp_path / "e.h5")
    with h5py.File(enc, "r") as f:
        assert json.loads(f.attrs["movement_kinds"]) == ["joints", "muscles"]
        np.testing.assert_allclose(f["muscle_coords"][0], data["muscle_coords"][i], atol=2e-3)
        np.testing.assert_allclose(f["muscle_coords"][1], data["muscle_coords"][i], atol=1e-5)
        np.testing.assert_allclose(f["spindle_info"][1], data["spindle_info"][i], atol=1e-3)
        np.testing.assert_allclose(f["endeffector_coords"][0], data["endeffector_coords"][i], atol=1e-3)
        assert np.isnan(f["joint_coords"][1]).all()


def test_a_long_recording_is_cut_into_overlapping_windows(pcrt, tmp_path):
    _, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    _, _, hand = _movement(data, i)
    long = np.concatenate([hand, hand[::-1]] * 8)[:700]
    n = len(long)
    _write_csv(tmp_path / "long.csv", np.arange(n) * 0.015, _lab(long), "xyz")
    enc = encode_files([tmp_path / "long.csv"], _cfg(overlap=100), tmp_path / "e.h5")
    with h5py.File(enc, "r") as f:
        first = f["first_frame"][()]
        assert first.tolist() == [0, 220, n - 320]  # step 320 - 100, the last window ends at the end
        assert (f["start_id"][()] == 0).all() and (f["end_id"][()] == 320).all()
        L = f["muscle_coords"][()]
        # consecutive windows agree on their shared frames (the same movement, cut)
        np.testing.assert_array_equal(L[0][:, 220:], L[1][:, :100])
        np.testing.assert_allclose(f["spindle_info"][1][:, :, 0], L[1])


def test_windows_place_short_movements_and_cover_long_ones():
    assert windows(100, 320, 160, -1) == [(0, 100, 110)]
    assert windows(100, 320, 160, 5) == [(0, 100, 5)]
    w = windows(1000, 320, 160)
    covered = np.zeros(1000, bool)
    for s, e, o in w:
        assert e - s == 320 and o == 0
        covered[s:e] = True
    assert covered.all() and w[-1][1] == 1000
    with pytest.raises(DeepDrawError, match="overlap"):
        windows(1000, 320, 320)


def test_nwb_spatial_series_with_trials_reads_in_metres(pcrt, tmp_path):
    from datetime import datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import Position

    _, data, jumps = pcrt
    rows = [k for k in range(len(data["start_id"])) if k not in jumps][:2]
    parts, starts, t_all = [], [], []
    t0 = 1.0
    for k in rows:
        _, _, hand = _movement(data, k)
        t = t0 + np.arange(len(hand)) * 0.01  # 100 Hz, time-stretched by 2/3: fine for a reader test
        parts.append(_lab(hand) / 1000.0)  # m
        starts.append((t[0], t[-1]))
        t_all.append(t)
        t0 = t[-1] + 0.5
    nwb = NWBFile("test", "enc", datetime(2026, 1, 1, tzinfo=UTC))
    pos = Position(name="Position")
    pos.create_spatial_series(name="hand", data=np.concatenate(parts), timestamps=np.concatenate(t_all),
                              reference_frame="lab", unit="meters")  # fmt: skip
    nwb.create_processing_module("behavior", "hand").add(pos)
    for a, b in starts:
        nwb.add_trial(start_time=a, stop_time=b)
    with NWBHDF5IO(str(tmp_path / "s.nwb"), "w") as io:
        io.write(nwb)
    cfg = _cfg(units="")  # the unit comes from the file
    enc = encode_files([tmp_path / "s.nwb"], cfg, tmp_path / "e.h5")
    with h5py.File(enc, "r") as f:
        assert json.loads(f.attrs["movement_names"]) == ["s.nwb:trial_0000", "s.nwb:trial_0001"]
        for w, k in enumerate(rows):
            _, _, hand = _movement(data, k)
            T = int(f["movement_frames"][w])
            s = int(f["start_id"][w])
            got = f["endeffector_coords"][w][:, s : s + T].T
            want = CubicSpline(np.arange(len(hand)) * 0.01, hand, axis=0)(np.arange(T) * 0.015)
            np.testing.assert_allclose(got, want, atol=1e-3)
        assert f["movement_t0"][0] == pytest.approx(1.0)


def test_deeplabcut_csv_low_likelihood_points_are_gaps(pcrt, tmp_path):
    _, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    _, _, hand = _movement(data, i)
    lab = _lab(hand)
    lik = np.ones(len(lab))
    lik[40:43] = 0.2  # 3 frames = 45 ms
    lab[40:43] = 999.0  # garbage where the tracker is unsure

    def write(p):
        with open(p, "w") as g:
            g.write("scorer" + ",DLC_3D" * 8 + "\n")
            g.write("bodyparts,elbow,elbow,elbow,elbow,hand,hand,hand,hand\n")
            g.write("coords,x,y,z,likelihood,x,y,z,likelihood\n")
            for f, (p3, lk) in enumerate(zip(lab, lik)):
                g.write(f"{f},0,0,0,1," + ",".join(f"{v:.6f}" for v in p3) + f",{lk}\n")

    write(tmp_path / "dlc.csv")
    with pytest.raises(DeepDrawError, match=r"dlc\.csv, movement 'dlc': frame 40 .*max_gap_s"):
        encode_files([tmp_path / "dlc.csv"], _cfg(rate_hz=1 / 0.015), tmp_path / "e0.h5")
    enc = encode_files([tmp_path / "dlc.csv"], _cfg(rate_hz=1 / 0.015, max_gap_s=0.1), tmp_path / "e.h5")
    with h5py.File(enc, "r") as f:
        s = int(f["start_id"][0])
        got = f["endeffector_coords"][0][:, s + 40 : s + 43].T
        np.testing.assert_allclose(got, hand[40:43], atol=0.05)  # interpolated across the gap


def _one(tmp_path, world, name="bad.csv", **cfg):
    _write_csv(tmp_path / name, np.arange(len(world)) * 0.015, _lab(world), "xyz")
    return encode_files([tmp_path / name], _cfg(**cfg), tmp_path / f"{name}.h5")


def test_bad_input_is_one_clear_error_naming_file_movement_and_frame(pcrt, tmp_path):
    _, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    _, _, hand = _movement(data, i)
    far = hand.copy()
    far[30:] += np.array([30.0, 0, 0])  # pushed out of reach from frame 30 on (a step, not smooth)
    with pytest.raises(
        DeepDrawError, match=r"bad\.csv, movement 'bad': frame (2\d|3\d) .*outside the arm's reach"
    ):
        _one(tmp_path, far)
    with pytest.raises(DeepDrawError, match=r"wrong unit"):  # a path in mm declared as cm: 10x too large
        _one(tmp_path, hand, "unit.csv", units="cm")
    with pytest.raises(DeepDrawError, match=r"wrong unit"):  # cm declared as m: 100x too large
        _one(tmp_path, hand, "unit2.csv", units="m")
    gap = hand.copy()
    gap[50] = np.nan
    with pytest.raises(DeepDrawError, match=r"gap\.csv, movement 'gap': frame 50 "):
        _one(tmp_path, gap, "gap.csv")
    np.save(tmp_path / "m.npy", _lab(hand))
    with pytest.raises(DeepDrawError, match=r"m\.npy, movement 'm': no sampling rate"):
        encode_files([tmp_path / "m.npy"], _cfg(), tmp_path / "npy.h5")
    with pytest.raises(DeepDrawError, match="encode.jumps"):
        _one(tmp_path, hand, "ok.csv", jumps="drop")


def test_wrapping_jumps_are_flagged_and_kept_masked_or_rejected(pcrt, tmp_path):
    _, data, jumps = pcrt
    assert jumps, "the tiny dataset has no sample with a jump (seed changed?)"
    i = min(jumps)
    a, b, hand = _movement(data, i)
    _, m_ref, f_ref, _ = find_jumps(data["muscle_coords"][i : i + 1])
    res = {}
    for mode in ("keep", "mask"):
        enc = _one(tmp_path, hand, f"{mode}.csv", jumps=mode, onset=a)
        with h5py.File(enc, "r") as f:
            res[mode] = (
                f["jump"][0],
                f["masked"][0],
                set(zip(f["jumps/muscle"][()], f["jumps/frame"][()] + a)),
            )
    assert res["keep"][:2] == (1, 0) and res["mask"][:2] == (1, 1)
    assert set(zip(m_ref, f_ref)) <= res["keep"][2]  # the dataset's jumps, at the same muscles and frames
    with pytest.raises(DeepDrawError, match="every window was rejected"):
        _one(tmp_path, hand, "reject.csv", jumps="reject")


def test_cli_encode_and_its_error_exit(pcrt, tmp_path, capsys):
    _, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    _, _, hand = _movement(data, i)
    _write_csv(tmp_path / "m.csv", np.arange(len(hand)) * 0.015, _lab(hand), "xyz")
    args = ["-q", "encode", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--units", "mm",
            "--axes", ",".join(AXES), "--origin", *map(str, ORIGIN), "--no-activations"]  # fmt: skip
    assert main(args) == 0
    assert (tmp_path / "o" / "encoded.h5").is_file()
    assert main(args) == 2  # exists: refused
    assert "refusing to overwrite" in capsys.readouterr().err
    # the same settings through --set (as on every config command) give the same inputs
    sets = ["--set", "encode.units=mm", "--set", f"encode.axes={json.dumps(AXES)}",
            "--set", f"encode.origin_cm={json.dumps(ORIGIN)}"]  # fmt: skip
    assert (
        main(
            ["-q", "encode", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s"), "--no-activations", *sets]
        )
        == 0
    )
    with (
        h5py.File(tmp_path / "o" / "encoded.h5", "r") as f,
        h5py.File(tmp_path / "s" / "encoded.h5", "r") as g,
    ):
        np.testing.assert_array_equal(f["spindle_info"][()], g["spindle_info"][()])
    assert (
        main(["-q", "encode", str(tmp_path / "m.csv"), "--out", str(tmp_path / "p"), "--no-activations"]) == 2
    )
    assert "m.csv, movement 'm'" in capsys.readouterr().err


def test_hdf5_movements_with_rate_and_units_attributes_equal_the_csv(pcrt, tmp_path):
    _, data, jumps = pcrt
    i = next(k for k in range(len(data["start_id"])) if k not in jumps)
    _, _, hand = _movement(data, i)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        d = f.create_dataset("movements/reach1", data=_lab(hand) / 10.0)  # cm
        d.attrs["units"] = "cm"
        f.attrs["rate_hz"] = 1 / 0.015
    _write_csv(tmp_path / "m.csv", np.arange(len(hand)) * 0.015, _lab(hand), "xyz")
    a = encode_files([tmp_path / "m.h5"], _cfg(units=""), tmp_path / "a.h5")
    b = encode_files([tmp_path / "m.csv"], _cfg(), tmp_path / "b.h5")
    with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
        assert json.loads(f.attrs["movement_names"]) == ["m.h5:reach1"]
        np.testing.assert_allclose(f["spindle_info"][()], g["spindle_info"][()], atol=1e-3)
