"""The pair solver's former single module: its public names, re-exported from their homes.

The hinge SVM, one-vs-one voting and the linear TDT decoder now live in modules of one job each:

* :mod:`deepdraw.svm.hinge`: :class:`HingeFit`, :func:`fit_hinge_path`, :func:`hinge_objective`
  (the hinge SVM along a C path) and :class:`PairFit`, :func:`fit_pair`, :func:`split_train_val`
  (one pair, C chosen on the validation rows);
* :mod:`deepdraw.svm.dual`: the dual matrix Q of a training set and the duality gap;
* :mod:`deepdraw.svm.dual_solver`: the active-set solver of the dual and its Huber-Newton fallback;
* :mod:`deepdraw.svm.ovo`: :func:`ovo_pairs`, :func:`ovo_decision_function`, :func:`ovo_predict`;
* :mod:`deepdraw.svm.linear_decoder`: :class:`LinearDecoder`.

``from deepdraw.svm.solver import fit_pair`` (and every other name below) keeps working.
"""

from __future__ import annotations

from .hinge import HingeFit, PairFit, fit_hinge_path, fit_pair, hinge_objective, split_train_val
from .linear_decoder import LinearDecoder
from .ovo import ovo_decision_function, ovo_pairs, ovo_predict

__all__ = [
    "HingeFit",
    "PairFit",
    "LinearDecoder",
    "fit_hinge_path",
    "fit_pair",
    "hinge_objective",
    "ovo_pairs",
    "ovo_decision_function",
    "ovo_predict",
    "split_train_val",
]
