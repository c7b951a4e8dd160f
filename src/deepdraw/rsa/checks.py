"""Value checks of the ``[rsa]`` config section (run at load by :func:`deepdraw.config.load_config`) and
the input representations it may name."""

from __future__ import annotations

from ..errors import DeepDrawError
from ..settings import RsaConfig
from ..value_checks import check_count, check_fraction

INPUT_NAMES = {
    "endeffector_coords": "hand",
    "joint_coords": "joints",
    "muscle_coords": "muscles",
    "spindle_info": "spindle_info",
    "spindle_firing": "spindle_firing",
}


def check_rsa_config(c: RsaConfig) -> None:
    """Range and choice checks of the [rsa] section (run by :func:`deepdraw.config.load_config`)."""
    for key in ("per_class", "pca_components", "tsne_per_class"):
        check_count(f"rsa.{key}", getattr(c, key))
    if c.gram_dtype not in ("float32", "float64"):
        raise DeepDrawError(f"key 'rsa.gram_dtype' is '{c.gram_dtype}'; expected float32 or float64")
    if c.device not in ("cpu", "cuda", "auto"):
        raise DeepDrawError(f"key 'rsa.device' is '{c.device}'; expected cpu, cuda or auto")
    check_fraction("rsa.decoding_test_fraction", c.decoding_test_fraction)
    if c.tsne_perplexity <= 0 or c.ridge_alpha < 0:
        raise DeepDrawError(
            f"key 'rsa.tsne_perplexity' is {c.tsne_perplexity} and 'rsa.ridge_alpha' {c.ridge_alpha}; "
            "expected a perplexity > 0 and an alpha >= 0"
        )
    for s in c.tsne_seeds:
        if s < 0:
            raise DeepDrawError(f"key 'rsa.tsne_seeds' holds {s}; expected seeds >= 0 ([] = every model)")
    for k in c.inputs:
        if k not in INPUT_NAMES:
            raise DeepDrawError(f"key 'rsa.inputs' holds '{k}'; expected some of {', '.join(INPUT_NAMES)}")
