"""Stage 2 (``svm-analysis/``): pairwise and one-vs-one linear SVMs, linear TDT decoding baseline."""

from .hinge import HingeFit, PairFit, fit_hinge_path, fit_pair, hinge_objective
from .linear_decoder import LinearDecoder
from .ovo import ovo_decision_function, ovo_pairs, ovo_predict
from .stage import ALL_SUBSETS, Subset, parse_subsets, run_svm, select_subset

__all__ = [
    "ALL_SUBSETS",
    "HingeFit",
    "LinearDecoder",
    "PairFit",
    "Subset",
    "fit_hinge_path",
    "fit_pair",
    "hinge_objective",
    "ovo_decision_function",
    "ovo_pairs",
    "ovo_predict",
    "parse_subsets",
    "run_svm",
    "select_subset",
]
