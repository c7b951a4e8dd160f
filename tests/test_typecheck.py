"""The type checker holds the package's annotations: mypy ([tool.mypy] in pyproject.toml) reports no error.

`make lint` runs the same check; this test makes `make test` (CI) enforce it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_package_type_checks_clean():
    pytest.importorskip("mypy", reason="mypy is a dev dependency (pip install -e '.[dev]')")
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    errors = [line for line in res.stdout.splitlines() if ": error:" in line]
    assert res.returncode == 0 and not errors, (
        f"mypy (pyproject.toml [tool.mypy]) reports {len(errors)} error(s); expected none:\n"
        + "\n".join(errors[:40])
        + res.stderr[-2000:]
    )


def test_mypy_config_checks_the_package_without_silencing_it():
    """The configuration covers src/deepdraw and silences no module of ours (only untyped libraries)."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert cfg["files"] == ["src/deepdraw"]
    for override in cfg.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not any(m.split(".")[0] == "deepdraw" for m in modules), override
        assert "ignore_errors" not in override, override
