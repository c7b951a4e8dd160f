"""Per-model analysis: the samples of each plane orientation, their planes and train/test split, and the
fits of every layer of one model (:func:`analyse_model`, what ``benchmarks/tuning.py`` times)."""

from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from ..errors import DeepDrawError
from ..settings import TuningConfig
from .activations import Activations
from .checks import check_tuning_config
from .features import LEVEL_AXIS, ORIENTATIONS, plane_levels, plane_vectors, project
from .fitting import OrientData, analyse_layer
from .models import split_by_trajectory
from .results import ModelResult
from .summary import parse_model_name, reference_index


def _prepare(act: Activations, t: TuningConfig) -> dict[str, OrientData]:
    present = [o for o in ORIENTATIONS if (act.plane == o).any()]
    wanted = list(t.orientations) or present
    if not wanted:
        raise DeepDrawError(
            f"{act.where}: key 'plane' has no samples; expected horizontal or vertical samples"
        )
    out: dict[str, OrientData] = {}
    for oi, o in enumerate(ORIENTATIONS):
        if o not in wanted:
            continue
        sel = np.flatnonzero(act.plane == o)
        if sel.size == 0:
            raise DeepDrawError(
                f"{act.where}: key 'plane' has no '{o}' sample; expected at least one (tuning.orientations lists it)"
            )
        levels, lvl = plane_levels(act.ee[sel], o, t.plane_tol_cm, act.where)
        want_levels = t.levels_horizontal if o == "horizontal" else t.levels_vertical
        if want_levels:
            keep = []
            for w in want_levels:
                i = reference_index(levels, w, t.plane_tol_cm)
                if i < 0:
                    axis = "xyz"[LEVEL_AXIS[o]]
                    raise DeepDrawError(
                        f"{act.where}: key 'kinematics/endeffector_coords' has no {o} sample in the plane "
                        f"{axis} = {w:g} cm; expected samples in every plane of tuning.levels_{o} "
                        f"(planes found: {', '.join(f'{x:g}' for x in levels)})"
                    )
                keep.append(i)
            keep = sorted(set(keep))
            m = np.isin(lvl, keep)
            sel, lvl = sel[m], np.searchsorted(keep, lvl[m])
            levels = levels[keep]
        is_test = split_by_trajectory(
            act.sample_index[sel], levels[lvl], t.test_fraction, t.split_seed, stream=oi
        )
        if not is_test.any():
            raise DeepDrawError(
                f"{act.where}: the {o} samples ({sel.size}) are too few for a train/test split; expected at "
                f"least 2 trajectories in some plane"
            )
        local = np.full(act.n, -1, dtype=np.int64)
        local[sel] = np.arange(sel.size)
        vecs = plane_vectors(project(act.ee[sel], o), act.start_id[sel])
        out[o] = OrientData(o, sel, local, levels, lvl, is_test, vecs)
    return out


def analyse_model(act: Activations, t: TuningConfig, quiet: bool = False) -> ModelResult:
    """Fit every tuning model to every unit of every layer of one model.

    Returns a :class:`ModelResult` holding, per layer and orientation, the coefficients and train/test
    metrics of all registry models for all units, the per-plane direction fits and the binned
    direction tuning curves; and per layer the label selectivity.
    """
    check_tuning_config(t)
    odata = _prepare(act, t)
    ident = parse_model_name(act.model_name)
    res = ModelResult(
        act.model_name, act.task, bool(act.trained), str(ident["arch"]), int(ident["seed"]), act.where
    )
    lab_sel = np.sort(np.concatenate([od.sel for od in odata.values()]))
    lab_test = np.zeros(act.n, dtype=bool)
    for od in odata.values():
        lab_test[od.sel] = od.is_test
    n_chunks = math.ceil(act.n / t.chunk)
    bar = tqdm(
        total=len(act.layer_names) * n_chunks,
        desc=f"tuning {act.model_name}",
        disable=quiet,
        leave=False,
        unit="block",
    )
    try:
        for li, name in enumerate(act.layer_names):
            res.layers.append(analyse_layer(act, name, li, odata, lab_sel, lab_test[lab_sel], t, bar))
    finally:
        bar.close()
    return res
