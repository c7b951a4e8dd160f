"""Benchmark: our pair solver vs a plain per-pair ``LinearSVC(loss='hinge')`` loop over the C grid.

Both fit every character pair (90/10 split in file order, best C on the validation part, as the
original ``binarysvm.py``) over the same C grid (9 values 1e-4 ... 1e4) on the same in-memory data,
one core each (BLAS limited to one thread; liblinear is single-threaded), and are timed in the same
run. Data: ``--train PATH`` (a ``pcrt_train.h5``; ``--test PATH`` adds test accuracy), or by default a
synthetic data set shaped like PCRT ``spindle_firing`` (n, 25, 320) with class structure (~100
samples per class, 20 classes, smooth per-class templates with shifts, size changes and noise).

    python benchmarks/svm.py            # all 190 pairs
    python benchmarks/svm.py --quick    # a few pairs, < 1 min

The last line of stdout is one JSON object (``svm_speedup`` = sklearn seconds / ours).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings

import numpy as np
import scipy.linalg  # noqa: F401  (load the BLAS libraries before limiting their threads)
import sklearn.svm
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from deepdraw.svm.hinge import fit_pair, split_train_val
from deepdraw.svm.ovo import ovo_pairs

log = logging.getLogger("bench.svm")

C_GRID = [10.0**k for k in range(-4, 5)]


def synthetic(n_per_class: int, n_classes: int = 20, seed: int = 0, n_muscles: int = 25, T: int = 320):
    """Spindle-firing-like samples ``(n, 25, 320)`` float32 and labels, shuffled (file order)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)

    def bumps(k: int, n_b: int = 4) -> np.ndarray:
        c = rng.uniform(40, 280, (k, n_b, 1))
        w = rng.uniform(10, 50, (k, n_b, 1))
        a = rng.normal(size=(k, n_b, 1))
        return (a * np.exp(-0.5 * ((t - c) / w) ** 2)).sum(1)

    base = bumps(n_muscles)
    families = [bumps(n_muscles) for _ in range(n_classes // 2)]
    # two characters per family: pairs within a family are hard, across families easier
    strength = rng.uniform(0.01, 0.04, n_classes)
    temps = [base + 0.06 * families[c // 2] + strength[c] * bumps(n_muscles) for c in range(n_classes)]
    X = np.empty((n_classes * n_per_class, n_muscles, T), np.float32)
    y = np.repeat(np.arange(n_classes), n_per_class)
    for k, c in enumerate(y):
        shift = int(rng.integers(-30, 30))
        size = rng.choice([0.7, 1.0, 1.3])
        jitter = 0.4 * bumps(n_muscles, 2) + 0.05 * rng.normal(size=(n_muscles, T))
        X[k] = size * np.roll(temps[c], shift, axis=1) + jitter
    p = rng.permutation(y.size)
    return X[p], y[p]


def load(path: str, key: str, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        n = f["label"].shape[0] if not max_n else min(max_n, f["label"].shape[0])
        return f[key][:n], f["label"][:n].astype(np.int64)


def sklearn_pair(X: np.ndarray, y: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, object]:
    """The original's loop: one LinearSVC per C on the first 90 %, validation on the rest."""
    n_tr = split_train_val(y.size, val_fraction)
    accs, models = [], []
    for C in C_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at large C
            m = sklearn.svm.LinearSVC(loss="hinge", C=C).fit(X[:n_tr], y[:n_tr])
        accs.append(m.score(X[n_tr:], y[n_tr:]))
        models.append(m)
    best = int(np.argmax(accs))
    return np.asarray(accs), models[best]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only --quick-pairs pairs (< 1 min)")
    ap.add_argument("--quick-pairs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=0, help="number of pairs (0 = all 190)")
    ap.add_argument("--train", help="a pcrt_train.h5 to use instead of synthetic data")
    ap.add_argument("--test", help="a pcrt_test.h5 (with --train) for test accuracy")
    ap.add_argument("--input", default="spindle_firing", help="input key of --train")
    ap.add_argument("--max-train", type=int, default=0, help="first N samples of --train (0 = all)")
    ap.add_argument("--per-class", type=int, default=100, help="synthetic samples per class (train)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for both solvers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr, format="%(message)s"
    )

    t0 = time.perf_counter()
    if args.train:
        Xtr, ytr = load(args.train, args.input, args.max_train)
        Xte, yte = load(args.test, args.input, 0) if args.test else (None, None)
        source = args.train
    else:
        X, y = synthetic(args.per_class + args.per_class // 2, seed=args.seed)
        n_tr = 20 * args.per_class
        Xtr, ytr, Xte, yte = X[:n_tr], y[:n_tr], X[n_tr:], y[n_tr:]
        source = f"synthetic spindle_firing-like, {args.per_class}/class"
    Xtr = Xtr.reshape(len(ytr), -1).astype(np.float64)
    if Xte is not None:
        Xte = Xte.reshape(len(yte), -1).astype(np.float64)
    classes = np.unique(ytr)
    pairs = [(int(classes[a]), int(classes[b])) for a, b in ovo_pairs(classes.size)]
    n_pairs = args.quick_pairs if args.quick else (args.pairs or len(pairs))
    if n_pairs < len(pairs):  # spread over the pair list
        pairs = [pairs[k] for k in np.linspace(0, len(pairs) - 1, n_pairs).round().astype(int)]
    log.info(
        "data: %s; %d train samples, %d features; %d pairs x %d C values",
        source,
        ytr.size,
        Xtr.shape[1],
        len(pairs),
        len(C_GRID),
    )
    t_data = time.perf_counter() - t0

    ours_t = sk_t = 0.0
    rows = []
    with threadpool_limits(args.threads):
        for i, j in tqdm(pairs, desc="pairs", disable=args.quiet, file=sys.stderr):
            m = (ytr == i) | (ytr == j)
            Xp, yp = Xtr[m], np.where(ytr[m] == j, 1.0, -1.0)
            t = time.perf_counter()
            fit = fit_pair(Xp, yp, C_GRID)
            ours_t += time.perf_counter() - t
            t = time.perf_counter()
            sk_acc, sk_model = sklearn_pair(Xp, yp)
            sk_t += time.perf_counter() - t
            row = {
                "pair": (i, j),
                "val_ours": float(fit.val_acc[fit.best]),
                "val_sk": float(sk_acc.max()),
                "C_ours": C_GRID[fit.best],
                "C_sk": C_GRID[int(np.argmax(sk_acc))],
            }
            if Xte is not None:
                mt = (yte == i) | (yte == j)
                yt = np.where(yte[mt] == j, 1.0, -1.0)
                row["test_ours"] = float(
                    np.mean(np.where(Xte[mt] @ fit.coef + fit.intercept > 0, 1.0, -1.0) == yt)
                )
                row["test_sk"] = float(sk_model.score(Xte[mt], yt))
            rows.append(row)

    def mean(k: str) -> float:
        return float(np.mean([r[k] for r in rows])) if rows and k in rows[0] else float("nan")

    res = {
        "benchmark": "svm",
        "data": source,
        "input": args.input if args.train else "spindle_firing (synthetic)",
        "n_train": int(ytr.size),
        "n_features": int(Xtr.shape[1]),
        "n_pairs": len(rows),
        "n_c": len(C_GRID),
        "threads": args.threads,
        "ours_s": round(ours_t, 3),
        "sklearn_s": round(sk_t, 3),
        "svm_speedup": round(sk_t / max(ours_t, 1e-9), 2),
        "val_acc_ours": round(mean("val_ours"), 4),
        "val_acc_sklearn": round(mean("val_sk"), 4),
        "test_acc_ours": round(mean("test_ours"), 4),
        "test_acc_sklearn": round(mean("test_sk"), 4),
        "same_best_C_frac": round(float(np.mean([r["C_ours"] == r["C_sk"] for r in rows])), 3),
        "data_s": round(t_data, 2),
    }
    diffs = [abs(res["val_acc_ours"] - res["val_acc_sklearn"])]
    if Xte is not None:
        diffs.append(abs(res["test_acc_ours"] - res["test_acc_sklearn"]))
    res["max_acc_diff_points"] = round(100 * max(diffs), 3)
    res["equal_accuracy"] = bool(max(diffs) <= 0.005)
    res["meets_target"] = bool(res["svm_speedup"] >= 10 and res["equal_accuracy"])
    log.info(
        "ours %.2f s, sklearn %.2f s: speed-up %.1fx; val acc %.4f vs %.4f, test acc %.4f vs %.4f",
        ours_t,
        sk_t,
        res["svm_speedup"],
        res["val_acc_ours"],
        res["val_acc_sklearn"],
        res["test_acc_ours"],
        res["test_acc_sklearn"],
    )
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
