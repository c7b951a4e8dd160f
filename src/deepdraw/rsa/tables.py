"""The result tables of an RSA run: oracle, CKA and decoding rows and their summaries, written to
``rsa_results.h5`` and as tidy CSVs (:func:`write_tables`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import store
from . import decoding as dec
from .plan import Results

_CKA_COLUMNS = [
    "comparison", "family", "arch", "seed", "model_a", "model_b", "task_a", "task_b", "trained_b", "layer",
    "layer_index", "relative_depth", "cka", "n_samples",
]  # fmt: skip


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    with store.atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return path


def _write_table(h5: h5py.File, name: str, df: pd.DataFrame) -> None:
    g = h5.create_group(f"tables/{name}")
    g.attrs["columns"] = list(df.columns)
    for col in df.columns:
        v = df[col].to_numpy()
        if v.dtype.kind in "OUS":
            v = np.array([str(x).encode() for x in v], dtype="S")
        g.create_dataset(col, data=v)


def _summary(df: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    if df.empty:
        return df
    g = df.groupby(keys, sort=False, dropna=False)[values]
    out = g.agg(["mean", "std", "min", "max", "count"])
    out.columns = [f"{v}_{s}" for v, s in out.columns]
    return out.reset_index()


def write_tables(h5: h5py.File, out: Path, acc: Results) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The tidy tables (HDF5 and CSV): oracle, CKA and decoding rows and their summaries."""
    odf = pd.DataFrame(acc.oracle_rows)
    cdf = pd.DataFrame(acc.cka_rows, columns=_CKA_COLUMNS)
    ddf = pd.DataFrame(acc.dec_rows)
    keys = ["family", "arch", "task", "trained", "layer", "layer_index", "relative_depth"]
    osum = _summary(odf, keys, ["oracle_r", "oracle_tau_b", "oracle_tau_a"])
    otab = pd.DataFrame()
    if not odf.empty:
        o2 = odf.assign(
            condition=[
                ("input" if f == "input" else f"{t}_{'trained' if tr else 'untrained'}")
                for f, t, tr in zip(odf["family"], odf["task"], odf["trained"])
            ]
        )
        otab = o2.pivot_table(
            index=["family", "arch", "layer_index", "layer"],
            columns="condition",
            values="oracle_r",
            aggfunc="mean",
        ).reset_index()
        otab.columns.name = None
    csum = _summary(
        cdf,
        ["comparison", "family", "arch", "task_a", "task_b", "layer", "layer_index", "relative_depth"],
        ["cka"],
    )
    dsum = _summary(ddf, keys, list(dec.DECODING_METRICS)) if not ddf.empty else ddf
    for name, df in (
        ("oracle", odf),
        ("oracle_summary", osum),
        ("oracle_table", otab),
        ("cka", cdf),
        ("cka_summary", csum),
        ("decoding", ddf),
        ("decoding_summary", dsum),
    ):
        if not df.empty:
            _write_table(h5, name, df)
            _write_csv(df, out / f"rsa_{name}.csv")
    return odf, cdf, ddf
