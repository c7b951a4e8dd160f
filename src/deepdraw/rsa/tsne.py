"""t-SNE embeddings of layer representations (original: single_cell/tsne.py; Fig. 4B and 4-S1A).

Per layer: flatten the representations of a class-balanced subset to (k, d), project them on their
first ``pca_components`` principal components (``sklearn.decomposition.PCA``, fewer when k or d is
smaller), then embed them in 2-D with ``sklearn.manifold.TSNE`` (perplexity 40, seeded). The original
used sklearn 0.20 defaults (random init, learning rate 200) with 300 iterations and no random_state;
here init is sklearn's current default ("pca"), learning rate "auto" and ``random_state`` is set, so
embeddings are reproducible. Perplexity is lowered to (k - 1) / 3 when the subset is too small for it.
"""

from __future__ import annotations

import logging

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import DeepDrawError
from ..settings import RsaConfig
from ..store import save_figure_atomic

log = logging.getLogger(__name__)

__all__ = ["plot_tsne_grid", "tsne_embedding", "tsne_wanted"]

SERIAL_BELOW = 2000  # samples under which t-SNE runs on one thread


def tsne_wanted(rc: RsaConfig, seed: str) -> bool:
    """Whether the layers of a model of ``seed`` (as a model name writes it; ``""`` when it has none) are
    embedded: every model when ``rsa.tsne_seeds`` is empty, else those of the listed seeds."""
    return rc.tsne and (not rc.tsne_seeds or seed in {str(s) for s in rc.tsne_seeds})


def tsne_embedding(
    X: np.ndarray,
    pca_components: int = 50,
    perplexity: float = 40.0,
    n_iter: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """2-D t-SNE embedding (k, 2) float32 of representations X (k, ...) after PCA."""
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    k, d = X.shape
    if k < 5:
        raise DeepDrawError(f"t-SNE: {k} samples; expected at least 5")
    nc = min(pca_components, k - 1, d)
    if np.allclose(X, X[:1]):
        log.warning("t-SNE: representation is constant over the subset; embedding is degenerate")
        return np.zeros((k, 2), dtype=np.float32)
    # threads only pay off for large embeddings; on a busy machine they make small ones 10x slower.
    # scikit-learn is imported before the limit is set: threadpoolctl limits only the thread pools
    # already loaded, and scikit-learn brings its own OpenMP runtime (imported inside the block, the first
    # embedding of a process ran its gradient on every core: 46 s instead of 10 s, import included,
    # beside a training)
    import sklearn.manifold  # noqa: F401  (loads scikit-learn and its OpenMP runtime)

    with threadpool_limits(limits=1 if k < SERIAL_BELOW else None):
        return _embed(X, nc, d, perplexity, n_iter, seed)


def _embed(X: np.ndarray, nc: int, d: int, perplexity: float, n_iter: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    k = X.shape[0]
    Z = PCA(n_components=nc, random_state=seed).fit_transform(X) if nc < d else X - X.mean(0)
    perp = min(perplexity, (k - 1) / 3.0)
    tsne = TSNE(
        n_components=2,
        perplexity=perp,
        max_iter=max(250, int(n_iter)),
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    emb = tsne.fit_transform(Z.astype(np.float64))
    return emb.astype(np.float32)


def plot_tsne_grid(embeddings: dict[str, np.ndarray], labels: np.ndarray, title: str, path) -> None:
    """One scatter per layer (name -> (k, 2)), coloured by character (tab20), saved as PNG."""
    from matplotlib.figure import Figure

    from ..contracts import LETTERS

    names = list(embeddings)
    ncol = min(5, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig = Figure(figsize=(2.6 * ncol + 0.8, 2.6 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    labels = np.asarray(labels)
    for ax, name in zip(axes.ravel(), names):
        e = embeddings[name]
        sc = ax.scatter(e[:, 0], e[:, 1], c=labels, cmap="tab20", vmin=-0.5, vmax=19.5, s=2, linewidths=0)
        lo, hi = np.percentile(e, [0.5, 99.5], axis=0)  # a few far outliers should not squash the plot
        pad = 0.08 * (hi - lo) + 1e-6
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    cb = fig.colorbar(sc, ax=axes.ravel().tolist(), ticks=range(20), fraction=0.02)
    cb.ax.set_yticklabels(list(LETTERS), fontsize=6)
    fig.suptitle(title, fontsize=10)
    save_figure_atomic(fig, path, dpi=110)
