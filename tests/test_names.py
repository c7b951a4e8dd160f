"""One model-name grammar (deepdraw.names) for every stage, over every name the search can draw."""

from __future__ import annotations

import pytest

from deepdraw.errors import DeepDrawError
from deepdraw.names import identify, split_model_name
from deepdraw.nn.models import FAMILIES, parse_model_name
from deepdraw.nn.search import sample_architectures
from deepdraw.report.build import parse_model
from deepdraw.rsa import parse_model_name as rsa_parse
from deepdraw.tuning import parse_model_name as tuning_parse


def _variants(spec):
    for seed in (None, 1, 12):
        for regression in (False, True):
            for untrained in (False, True):
                yield spec.replace(seed=seed, regression=regression, untrained=untrained)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_stage_reads_every_search_name_alike(family):
    specs = sample_architectures(family, n=60, seed=3)
    if family == "lstm":
        assert any("_k" in s.name for s in specs)  # the search draws non-default spatial codes
    n = 0
    for base in specs:
        for spec in _variants(base):
            name = spec.name
            parts = split_model_name(name)
            assert parts.name == name  # round trip
            assert parts.arch == spec.architecture.name  # the same architecture key as the network's
            assert parse_model_name(name) == spec
            fam, arch, seed = rsa_parse(name)
            assert (fam, arch, seed) == (family, parts.arch, "" if spec.seed is None else str(spec.seed))
            t = tuning_parse(name)
            assert t == {
                "arch": parts.arch,
                "seed": -1 if spec.seed is None else spec.seed,
                "untrained": spec.untrained,
            }
            r = parse_model(name)
            assert r == {"family": family, "regression": spec.regression, "seed": spec.seed,
                         "untrained": spec.untrained, "arch": parts.arch}  # fmt: skip
            n += 1
    assert n == 60 * 12


def test_lstm_with_a_spatial_code_keeps_its_seed():
    """The issue's case: the search draws non-default LSTM kernels; the seed is 1, not 'k5s2_1'."""
    name = "lstm_3_8-16-16_256_k5s2_1"
    assert rsa_parse(name) == ("lstm", "lstm_3_8-16-16_256_k5s2", "1")
    assert tuning_parse(name)["seed"] == 1 and parse_model(name)["seed"] == 1
    assert parse_model_name(name).s_stride == 2


def test_names_outside_the_grammar():
    assert identify("not_a_model_1") is None and parse_model("not_a_model_1") is None
    assert tuning_parse("x_1") == {"arch": "x_1", "seed": -1, "untrained": False}
    with pytest.raises(DeepDrawError, match="did you mean 'spatiotemporal'"):
        split_model_name("spatiotemporl_4_8-8-32-64_7272_1")
    with pytest.raises(DeepDrawError, match="seed"):
        split_model_name("spatiotemporal_4_8-8-32-64_7272_x1")
    with pytest.raises(DeepDrawError, match="malformed"):
        split_model_name("lstm_3_8-16-16")
