"""The linear decoder of the TDT baseline: streaming standardised least squares (:class:`LinearDecoder`).

The stage that feeds it frames from the PCRT files is :mod:`deepdraw.svm.decoding`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LinearDecoder"]


class LinearDecoder:
    """Linear regression from standard-scaled inputs to standard-scaled targets.

    Fed in chunks (:meth:`partial_fit`); means and co-moments are merged with Chan et al.'s pairwise
    update, so the accumulation is exact and stable whatever the chunking. :meth:`solve` then fits
    ``Y_s = X_s B`` (``X_s``, ``Y_s`` z-scored, so no intercept is needed) by ridge regression with a
    tiny ``alpha`` (relative to the number of rows), i.e. ordinary least squares unless the inputs are
    collinear.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mx: np.ndarray | None = None
        self.my: np.ndarray | None = None
        self.Sxx: np.ndarray | None = None
        self.Sxy: np.ndarray | None = None
        self.Syy: np.ndarray | None = None
        self.coef_: np.ndarray | None = None

    def partial_fit(self, X: np.ndarray, Y: np.ndarray) -> LinearDecoder:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        m = X.shape[0]
        if m == 0:
            return self
        mx, my = X.mean(0), Y.mean(0)
        Xc, Yc = X - mx, Y - my
        sxx, sxy, syy = Xc.T @ Xc, Xc.T @ Yc, np.einsum("ij,ij->j", Yc, Yc)
        if self.n == 0:
            self.n, self.mx, self.my, self.Sxx, self.Sxy, self.Syy = m, mx, my, sxx, sxy, syy
            return self
        n = self.n
        tot = n + m
        dx, dy = mx - self.mx, my - self.my
        f = n * m / tot
        self.Sxx = self.Sxx + sxx + f * np.outer(dx, dx)
        self.Sxy = self.Sxy + sxy + f * np.outer(dx, dy)
        self.Syy = self.Syy + syy + f * dy * dy
        self.mx = self.mx + dx * m / tot
        self.my = self.my + dy * m / tot
        self.n = tot
        return self

    def solve(self, alpha: float = 1e-6) -> LinearDecoder:
        if self.n < 2:
            raise ValueError("LinearDecoder needs at least two rows")
        # set together by the first partial_fit with rows (n > 0)
        assert self.Sxx is not None and self.Sxy is not None and self.Syy is not None
        sx = np.sqrt(np.maximum(np.diag(self.Sxx) / self.n, 0.0))
        sy = np.sqrt(np.maximum(self.Syy / self.n, 0.0))
        self.sx = np.where(sx > 0, sx, 1.0)
        self.sy = np.where(sy > 0, sy, 1.0)
        Cxx = self.Sxx / (self.n * np.outer(self.sx, self.sx))
        Cxy = self.Sxy / (self.n * np.outer(self.sx, self.sy))
        Cxx[np.diag_indices_from(Cxx)] += alpha
        self.coef_ = np.linalg.solve(Cxx, Cxy)  # (p, q) in scaled units
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None or self.mx is None or self.my is None:
            raise ValueError("call solve() first")
        Xs = (np.asarray(X, dtype=np.float64) - self.mx) / self.sx
        return (Xs @ self.coef_) * self.sy + self.my
