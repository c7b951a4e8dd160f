"""Start points: reading the original file, and our workspace search against it (docs/startpoints.md)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from deepdraw.dataset import arm
from deepdraw.dataset import startpoints as sp
from deepdraw.dataset.arm import reference
from deepdraw.errors import DeepDrawError


@pytest.fixture(scope="module")
def original():
    return sp.load_original_startpoints()


def test_load_original_startpoints(original):
    h, v = original["horizontal"], original["vertical"]
    assert h.shape == (539, 3) and v.shape == (1442, 3)
    assert h.dtype == np.float64 and v.dtype == np.float64
    # ranges stated in the spec (cm, {W})
    assert (h[:, 0].min(), h[:, 0].max(), h[:, 1].min(), h[:, 1].max()) == (12, 45, -39, 0)
    assert (h[:, 2].min(), h[:, 2].max(), len(np.unique(h[:, 2]))) == (-45, 30, 26)
    assert (v[:, 0].min(), v[:, 0].max(), len(np.unique(v[:, 0]))) == (0, 54, 19)
    assert (v[:, 1].min(), v[:, 1].max(), v[:, 2].min(), v[:, 2].max()) == (-45, 15, -39, 18)
    # every original start point is on the 3 cm grid and reachable
    assert np.all(np.mod(np.vstack([h, v]), 3) == 0)
    assert np.max(arm.reach_error(np.vstack([h, v]))) < 1e-6


def test_load_original_startpoints_errors(tmp_path):
    with pytest.raises(DeepDrawError, match="not found"):
        sp.load_original_startpoints(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f["horizontal"] = np.zeros((4, 3))
    with pytest.raises(DeepDrawError, match="vertical"):
        sp.load_original_startpoints(bad)
    with h5py.File(bad, "w") as f:
        f["horizontal"] = np.zeros((4, 2))
        f["vertical"] = np.zeros((4, 3))
    with pytest.raises(DeepDrawError, match=r"\(n, 3\)"):
        sp.load_original_startpoints(bad)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(DeepDrawError, match="HDF5"):
        sp.load_original_startpoints(junk)


def test_grid_axes():
    x, y, z = sp.grid_axes(3)
    assert (len(x), len(y), len(z)) == (21, 31, 31)
    np.testing.assert_array_equal(x, np.arange(0, 61, 3))
    np.testing.assert_array_equal(y, np.arange(-60, 31, 3))
    np.testing.assert_array_equal(z, np.arange(-60, 31, 3))


# counts of the full exact search (all planes) on some planes, and of the original file there
SLICE_COUNTS = {
    "horizontal": {-45.0: (10, 2), -15.0: (30, 30), 27.0: (72, 16)},
    "vertical": {3.0: (30, 24), 54.0: (21, 21)},
}


def test_search_slices_against_original(original):
    res = sp.search_startpoints(
        horizontal_levels=list(SLICE_COUNTS["horizontal"]),
        vertical_levels=list(SLICE_COUNTS["vertical"]),
        progress=False,
    )
    for plane, dim in (("horizontal", 2), ("vertical", 0)):
        ours = res[plane]
        assert ours.dtype == np.float64 and ours.shape[1] == 3
        # the original order: plane by plane, then the in-plane axes increasing
        key = np.lexsort(tuple(ours[:, a] for a in reversed([dim] + [a for a in range(3) if a != dim])))
        np.testing.assert_array_equal(key, np.arange(len(ours)))
        for level, (n_ours, n_orig) in SLICE_COUNTS[plane].items():
            a = {tuple(p) for p in ours[ours[:, dim] == level]}
            b = {tuple(p) for p in original[plane][original[plane][:, dim] == level]}
            assert (len(a), len(b)) == (n_ours, n_orig)
            assert b <= a  # the original never has a start point the exact search rejects
    # every fine-grid point of every start point found is reachable; a corner 12 cm away too
    h = res["horizontal"]
    off = np.stack(np.meshgrid(np.arange(-7, 8), np.arange(-7, 8), indexing="ij"), -1).reshape(-1, 2)
    fine = (h[:, None, :2] + off[None]).reshape(-1, 2)
    fine = np.column_stack([fine, np.repeat(h[:, 2], len(off))])
    assert np.max(arm.reach_error(fine)) < 1e-2
    assert np.max(arm.reach_error(h + [12, -12, 0])) < 1e-2


def test_search_rejects_unknown_options():
    with pytest.raises(DeepDrawError, match="reach"):
        sp.search_startpoints(reach="fast", progress=False, horizontal_levels=[0.0], vertical_levels=[0.0])
    with pytest.raises(DeepDrawError, match="level"):
        sp.search_startpoints(progress=False, horizontal_levels=[1.0])


def test_compare_startpoints(original):
    ours = {k: np.vstack([v, [[99.0, 99.0, 99.0]]]) for k, v in original.items()}
    ours["vertical"] = ours["vertical"][1:]
    c = sp.compare_startpoints(ours, original)
    assert c["horizontal"]["only_ours"].tolist() == [[99.0, 99.0, 99.0]]
    assert len(c["horizontal"]["only_original"]) == 0
    assert c["vertical"]["common"] == 1441 and len(c["vertical"]["only_original"]) == 1


def test_original_reach_test_false_negatives():
    """Why the original has fewer start points (docs/startpoints.md): its SLSQP reach test says
    'unreachable' for some reachable points. With the settings of the original code, SLSQP stops at
    b = 0 (arm hanging, where a has no effect) with a 3.15 cm error at (21, 0, -24), whereas an exact
    posture exists. (That point is a corner of the shipped start points (33, -12, -24) and
    (21, -12, -36), so the shipped file was not made with exactly these settings.)"""
    p = np.array([[21.0, 0.0, -24.0]])
    assert arm.reach_error(p)[0] < 1e-9
    joints, err = arm.ik_batch(p[:, None])
    assert err[0, 0] < 1e-9 and np.all(joints >= arm.Q_MIN) and np.all(joints <= arm.Q_MAX)
    q = reference._slsqp_point(arm.world_to_shoulder(p[0]), np.array(arm.Q_START))
    assert q[1] < 0.1 and abs(q[0] - 50.0) < 0.5  # stuck at b = 0, a never moved from q0's 50°
    assert arm.reach_error_reference(p)[0] == pytest.approx(3.1527, abs=1e-3)
    # a tolerance edge case: a corner 0.0068 cm outside the workspace counts as reachable (< 1e-2)
    edge = np.array([[9.0, 6.0, -54.0]])
    assert arm.reach_error(edge)[0] == pytest.approx(0.006758, abs=1e-5)
    assert arm.reach_error_reference(edge)[0] > 1.0


def test_search_reference_option_is_subset_of_exact():
    """The SLSQP reach test only adds false negatives: on a coarse toy grid its start points are a
    subset of the exact search's."""
    kw = dict(
        grid_step=15.0, square=20.0, fine=3, progress=False, horizontal_levels=[-30.0], vertical_levels=[30.0]
    )
    exact = sp.search_startpoints(**kw)
    ref = sp.search_startpoints(reach="reference", **kw)
    for plane in ("horizontal", "vertical"):
        a = {tuple(p) for p in exact[plane]}
        b = {tuple(p) for p in ref[plane]}
        assert b <= a
    assert len(exact["horizontal"]) + len(exact["vertical"]) > 0
