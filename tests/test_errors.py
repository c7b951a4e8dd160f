"""deepdraw.errors.did_you_mean: the one wording of an unknown name's hint, used by every registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from deepdraw.config import config_from_dict
from deepdraw.errors import DeepDrawError, did_you_mean
from deepdraw.names import split_model_name
from deepdraw.nn.models import get_family, get_task

SRC = Path(__file__).resolve().parents[1] / "src" / "deepdraw"


def test_closest_names_all_names_or_nothing():
    assert did_you_mean("atr", ["art", "tdt", "tdt_pv"]) == "; did you mean 'art'?"
    # several close names, best first (difflib ratio), quoted
    assert (
        did_you_mean("model_1", ["model_2", "model_12", "other"], n=2)
        == "; did you mean 'model_12', 'model_2'?"
    )
    # nothing close: every option, sorted, once
    assert did_you_mean("zzz", ["b", "a", "b"]) == "; expected one of a, b."
    assert did_you_mean("zzz", ["b", "a"], list_all=False) == ""
    # the cutoff decides what counts as close ('seeds' vs 'sedes': ratio 0.8)
    assert did_you_mean("sedes", ["seeds"], cutoff=0.9) == "; expected one of seeds."


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_task("atr"), "Unknown task 'atr'; did you mean 'art'?"),
        (lambda: get_family("lsmt"), "Unknown model family 'lsmt'; did you mean 'lstm'?"),
        (lambda: split_model_name("spatiotemporl_4_8-8-32-64_7272_1"), "did you mean 'spatiotemporal'?"),
        (lambda: config_from_dict({"trian": {}}), r"unknown section '\[trian\]'; did you mean 'train'\?"),
    ],
)
def test_every_registry_words_it_the_same(call, match):
    with pytest.raises(DeepDrawError, match=match):
        call()


def test_no_other_module_words_its_own_hint():
    """One definition: no module but errors.py calls difflib's close-match search."""
    users = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "get_close_matches":
                users.append(path.relative_to(SRC).as_posix())
    assert users == ["errors.py"]


@pytest.mark.parametrize("bad", [0, -3, 0.5, 2.5, float("nan"), True, "4"])
def test_a_count_is_a_positive_integer_in_every_section(bad):
    """Counts are checked as integers >= 1, also in sections built in Python (no TOML type check)."""
    from deepdraw.rsa.checks import check_rsa_config
    from deepdraw.settings import RsaConfig, TuningConfig
    from deepdraw.tuning.checks import check_tuning_config

    for check, section in (
        (check_tuning_config, TuningConfig(chunk=bad)),
        (check_rsa_config, RsaConfig(per_class=bad)),
    ):
        with pytest.raises(
            DeepDrawError, match=r"key '(tuning\.chunk|rsa\.per_class)' is .*; expected a positive integer"
        ):
            check(section)
    check_tuning_config(TuningConfig(chunk=1))  # the smallest count passes
    from deepdraw.value_checks import check_count, check_positive

    check_count("x.n", 1)
    with pytest.raises(DeepDrawError, match=r"key 'x.lr' is nan; expected a positive learning rate"):
        check_positive("x.lr", float("nan"), "a positive learning rate")
