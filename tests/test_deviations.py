"""docs/deviations.md: every config setting it names (``section.key = value``) exists and is accepted.

The page tells users which key restores the original behaviour; a renamed key or a value the config
no longer accepts would leave them with an error (or worse, a silently different run). Each setting is
validated on its own, as a config holding only that key, by the same checks as a config file.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from deepdraw.config import SECTIONS, config_from_dict
from deepdraw.errors import DeepDrawError

PAGE = Path(__file__).resolve().parents[1] / "docs" / "deviations.md"

# `section.key = value` inside backticks; the value may be a TOML literal over several lines
SETTING = re.compile(r"`([a-z_]+)\.([a-z_0-9]+) = ([^`]+)`")


def settings(text: str) -> list[tuple[str, str, str]]:
    """Every ``(section, key, raw value)`` written as `section.key = value` in ``text``."""
    return [(m.group(1), m.group(2), " ".join(m.group(3).split())) for m in SETTING.finditer(text)]


def check_setting(section: str, key: str, raw: str) -> object:
    """Validate one setting as a config file would; return the value the config ends up with."""
    where = f"docs/deviations.md: `{section}.{key} = {raw}`"
    if section not in SECTIONS:
        raise AssertionError(f"{where}: no config section [{section}]; expected one of {sorted(SECTIONS)}")
    keys = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in keys:
        raise AssertionError(f"{where}: section [{section}] has no key '{key}'")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise AssertionError(f"{where}: the value is not a TOML literal ({e})") from None
    try:
        cfg = config_from_dict({section: {key: value}}, where)
    except DeepDrawError as e:
        raise AssertionError(f"{where}: rejected by the config checks: {e}") from None
    got = getattr(getattr(cfg, section), key)
    assert got == value, f"{where}: the config holds {got!r}, not the value written"
    return got


def test_parser_finds_planted_settings():
    text = 'a `train.schedule = "constant"` b `svm.c_grid = [0.1,\n  1.0]` c `not a setting` `x.y`'
    assert settings(text) == [("train", "schedule", '"constant"'), ("svm", "c_grid", "[0.1, 1.0]")]


def test_checker_rejects_unknown_keys_and_bad_values():
    with pytest.raises(AssertionError, match="no key 'shedule'"):
        check_setting("train", "shedule", '"constant"')
    with pytest.raises(AssertionError, match="no config section"):
        check_setting("training", "schedule", '"constant"')
    with pytest.raises(AssertionError, match="rejected by the config checks"):
        check_setting("train", "schedule", '"never"')
    with pytest.raises(AssertionError, match="not a TOML literal"):
        check_setting("train", "schedule", "constant")
    assert check_setting("train", "schedule", '"constant"') == "constant"


def test_every_setting_on_the_page_is_valid():
    found = settings(PAGE.read_text())
    # the page names the options that restore the original for every stage; far fewer means the
    # pattern no longer matches how the page writes them
    assert len(found) >= 25, f"{PAGE}: only {len(found)} `section.key = value` settings found"
    for section in ("kinematics", "muscles", "svm", "train", "search", "activations", "rsa", "tuning"):
        assert any(s == section for s, _, _ in found), f"{PAGE}: no setting of [{section}]"
    for section, key, raw in found:
        check_setting(section, key, raw)


def silent_defaults(text: str) -> list[str]:
    """Settings named on a "**Restores ...**" line whose value is the key's default, without the line
    saying so (such a key would restore nothing)."""
    out = []
    for block in re.split(r"\n(?=- \*\*)", text):
        if not block.startswith("- **Restores"):
            continue
        for section, key, raw in settings(block):
            value = tomllib.loads(f"v = {raw}")["v"]
            field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            after = block.split(f"`{section}.{key} =", 1)[1][:200]
            if value == default and "default" not in after:
                out.append(f"{section}.{key} = {raw}")
    return out


def test_silent_defaults_planted():
    text = (
        '- **Why**: `train.group = "none"`\n'
        '- **Restores the original**: `train.group = "none"`.\n'
        '- **Restores the original**: `train.group = "none"` (the default).\n'
        '- **Restores the original**: `train.group = "seeds"`.\n'
    )
    assert silent_defaults(text) == ['train.group = "none"']


def test_restoring_options_differ_from_the_defaults():
    """A key named as restoring the original changes something, or the page says it is the default."""
    bad = silent_defaults(PAGE.read_text())
    assert not bad, f"{PAGE}: named as restoring the original but equal to the default: {bad}"


def slug(heading: str) -> str:
    """The anchor of a Markdown heading, as MkDocs (toc) and GitHub make it."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_slug():
    assert slug("Train/test split of the tuning fits") == "traintest-split-of-the-tuning-fits"
    assert slug("LSTM learning rate, batch size and spatial kernel") == (
        "lstm-learning-rate-batch-size-and-spatial-kernel"
    )
    assert slug("Dataset (stage 1)") == "dataset-stage-1"


def test_links_to_entries_resolve():
    """Every link to an entry of the page (from the page itself, the other docs and the README) names
    a heading that exists: the stage pages point to the entries instead of repeating them."""
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#{2,4} (.+)$", PAGE.read_text(), re.M)}
    root = PAGE.parents[1]
    sources = [*sorted((root / "docs").glob("*.md")), root / "README.md"]
    links = 0
    for path in sources:
        text = path.read_text()
        own = path == PAGE
        pattern = r"\]\((#[\w-]+)\)" if own else r"\]\(deviations\.md(#[\w-]+)\)"
        for m in re.finditer(pattern, text):
            links += 1
            assert m.group(1)[1:] in anchors, (
                f"{path.name}: link to deviations.md{m.group(1)}: no such heading"
            )
    assert links >= 20, f"only {links} links to entries of {PAGE.name} found"
