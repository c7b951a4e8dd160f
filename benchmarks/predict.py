"""Wall time of ``deepdraw predict``'s solver: every layer of 20 models vs thousands of neurons.

Random smooth activations with the layer widths of ``spatial_temporal_4_8-16-16-32_32-32-64-64_7293``
(9 layers incl. the input, 50-128 features per frame) and Poisson neurons driven by one layer, on
``--frames`` frames in blocks of 320. Times :func:`deepdraw.encode.ridge.cv_explained_variance` (PCA on
the training folds, 50 components, ridge with 9 penalties chosen per neuron by inner CV, 5 folds) on
every layer of every model, all neurons at once. Reading the layers from HDF5 is not included.

Reference, in the same run: the same protocol as a naive loop of scikit-learn fits, one neuron at a
time (``PCA`` per outer fold shared by all neurons, then ``Ridge`` per penalty and inner fold, and the
final fit), on ``--ref-neurons`` neurons of one layer; its time per (layer, neuron) against ours gives
``speedup`` (wall times of the same run) and ``speedup_cpu`` (CPU times, all threads: the figure to trust
on a shared machine, where wall times depend on the other jobs). ``solve_cpu_s``: CPU time of our solves. The two give the same explained variances (checked here, and in tests/test_predict.py).
The last printed line is a JSON object.

    python benchmarks/predict.py --quick
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from deepdraw.encode.ridge import block_folds, cv_explained_variance

WIDTHS = [50, 104, 112, 64, 64, 64, 64, 128, 128]  # input, spatial0-3, temporal0-3 (rows x channels)
ALPHAS = [10.0**k for k in range(-4, 5)]


def smooth(rng: np.random.Generator, n: int, d: int, width: int = 8) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    x = rng.standard_normal((n + len(k), d)).astype(np.float32)
    c = np.cumsum(x, axis=0)  # a box filter twice ~ smooth enough, and fast
    x = (c[width:] - c[:-width])[: n + len(k) - width]
    c = np.cumsum(x, axis=0)
    return (c[width:] - c[:-width])[:n] / width


def reference(x, y, fold, k, alphas) -> tuple[np.ndarray, float]:
    """The naive per-neuron loop; returns (EV, wall seconds, CPU seconds)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge

    t0, c0 = time.perf_counter(), time.process_time()
    K = int(fold.max()) + 1
    sse = np.zeros(y.shape[1])
    for f in range(K):
        tr, te = fold != f, fold == f
        pca = PCA(k, svd_solver="full").fit(x[tr])
        ztr, zte = pca.transform(x[tr]), pca.transform(x[te])
        scale = np.linalg.eigvalsh(np.cov(ztr.T, bias=True) * tr.sum()).mean()
        for j in range(y.shape[1]):
            errs = []
            for a in alphas:
                e = 0.0
                for h in np.unique(fold[tr]):
                    m = fold[tr] != h
                    r = Ridge(alpha=a * scale).fit(ztr[m], y[tr][m, j])
                    e += float(((r.predict(ztr[~m]) - y[tr][~m, j]) ** 2).sum())
                errs.append(e)
            r = Ridge(alpha=alphas[int(np.argmin(errs))] * scale).fit(ztr, y[tr, j])
            sse[j] += float(((r.predict(zte) - y[te, j]) ** 2).sum())
    return 1 - sse / ((y - y.mean(0)) ** 2).sum(0), time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000, help="frames (rows) of the regression")
    ap.add_argument("--neurons", type=int, default=2000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--ref-neurons", type=int, default=4, help="neurons of the naive sklearn loop")
    ap.add_argument("--quick", action="store_true", help="4,000 frames, 200 neurons, 2 models")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.neurons, args.models = 4000, 200, 2
    rng = np.random.default_rng(0)
    n = args.frames
    fold = block_folds(np.zeros(n, int), np.arange(n), 320, 5, 0)
    driver = smooth(rng, n, WIDTHS[4])
    lam = np.maximum(2 + 0.8 * (driver @ rng.standard_normal((WIDTHS[4], args.neurons))) / 3, 0.05)
    y = rng.poisson(lam).astype(np.float64)
    t_gen = t_fit = cpu_fit = 0.0
    evs = []
    for m in range(args.models):
        for li, d in enumerate(WIDTHS):
            t0 = time.perf_counter()
            x = driver if (m, li) == (0, 4) else smooth(rng, n, d)
            t1, c1 = time.perf_counter(), time.process_time()
            ev, _ = cv_explained_variance(x, y, fold, 50, ALPHAS)
            t_fit += time.perf_counter() - t1
            cpu_fit += time.process_time() - c1
            t_gen += t1 - t0
            evs.append(float(np.median(ev)))
    n_layers = args.models * len(WIDTHS)
    per_pair = t_fit / (n_layers * args.neurons)
    sub = slice(0, args.ref_neurons)
    ev_ref, t_ref, c_ref = reference(driver, y[:, sub], fold, 50, ALPHAS)
    ev_ours, _ = cv_explained_variance(driver, y[:, sub], fold, 50, ALPHAS)
    out = {
        "benchmark": "predict",
        "n_frames": n,
        "n_neurons": args.neurons,
        "n_models": args.models,
        "n_layers": n_layers,
        "solve_s": round(t_fit, 2),
        "solve_cpu_s": round(cpu_fit, 2),  # CPU seconds, all threads: the work, whatever the load
        "per_layer_s": round(t_fit / n_layers, 3),
        "projected_20_models_s": round(t_fit / n_layers * 20 * len(WIDTHS), 1),
        "generate_s": round(t_gen, 2),
        "reference_per_layer_neuron_s": round(t_ref / args.ref_neurons, 4),
        "ours_per_layer_neuron_s": float(f"{per_pair:.3g}"),
        "speedup": round(t_ref / args.ref_neurons / per_pair),
        "speedup_cpu": round(c_ref / args.ref_neurons / (cpu_fit / (n_layers * args.neurons))),
        "reference_max_abs_ev_diff": float(f"{np.abs(ev_ref - ev_ours).max():.2g}"),
        "planted_layer_median_ev": round(evs[4], 3),
        "best_other_median_ev": round(max(e for i, e in enumerate(evs) if i != 4), 3),
        "quick": bool(args.quick),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
