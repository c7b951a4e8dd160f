"""Containers and conda: the Dockerfile, deepdraw.def and environment.yml install the pinned list that
`make install` installs (requirements/lock.txt), which matches pyproject.toml and this environment.

No container engine runs on the project's machines, so no image is built here: these tests check the
files against the list, lint the Dockerfile, and run the entry command of this environment, which
`make install` built from the same list (docs/containers.md).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = "requirements/lock.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _lock() -> tuple[str, dict[str, str]]:
    """(python version of the header, name -> pinned version)."""
    text = (ROOT / LOCK).read_text()
    py = re.search(r"^# python (\d+\.\d+) ", text, re.M)
    assert py, f"{LOCK}: header names no python version"
    pins = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, eq, version = line.partition("==")
            assert eq and version, f"{LOCK}: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return py.group(1), pins


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock", ROOT / "requirements" / "lock.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lock_pins_every_runtime_dependency_within_pyproject():
    _, pins = _lock()
    deps = [
        Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in pins, f"{LOCK} lacks {req.name} (pyproject.toml); run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    assert pins["torch"] == "2.13.0" and "torch==2.13.0" in [str(r) for r in deps]


def test_lock_is_this_environment():
    """requirements/lock.py would write the same file from the environment the tests run in (built by
    `make install` from the lock): a dependency added, removed or upgraded without `make lock` fails."""
    mod = _lock_module()
    want = mod.render(mod.closure(mod.runtime_requirements()))
    strip = lambda t: [x for x in t.splitlines() if not x.startswith("#")]  # noqa: E731
    assert strip((ROOT / LOCK).read_text()) == strip(want)


def _pip_installs(lines: list[str]) -> list[list[str]]:
    """The argument lists of every `pip install` in shell lines (continuations and && chains split)."""
    text = "".join(line.rstrip("\\").strip() + (" " if line.endswith("\\") else " ; ") for line in lines)
    return [
        shlex.split(part.split("pip install", 1)[1])
        for part in re.split(r"&&|;", text)
        if "pip install" in part
    ]


def _check_installs(installs: list[list[str]], lock_path: str, project: str) -> None:
    """Exactly: the lock with the torch index as an extra index, then the project without dependencies;
    no package named anywhere else (so no version can drift from the lock)."""
    assert len(installs) == 2, installs
    first, second = installs
    assert first[first.index("-r") + 1] == lock_path and "--extra-index-url" in first, first
    assert "--no-deps" in second and second[-1] == project, second
    named = [a for a in first + second if not a.startswith("-") and a not in (lock_path, project)]
    assert all(a.startswith(("$", "{{", "http")) for a in named), named  # only the index URL


def test_dockerfile_installs_the_lock():
    text = (ROOT / "Dockerfile").read_text()
    py, _ = _lock()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == [f"python:{py}-slim"]
    assert re.search(rf"^ARG TORCH_INDEX={re.escape(CPU_INDEX)}$", text, re.M)
    assert re.search(rf"^COPY {LOCK} {LOCK}$", text, re.M)
    runs = [m.group(1).split("\n") for m in re.finditer(r"^RUN ((?:.*\\\n)*.*)$", text, re.M)]
    _check_installs([i for r in runs for i in _pip_installs(r)], LOCK, ".")
    copied = {m.split()[0] for m in re.findall(r"^COPY (.+)$", text, re.M)}
    copied |= set(re.search(r"^COPY (pyproject.toml .*) \./$", text, re.M).group(1).split())
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :] and all(f"!{c}" in ignore for c in copied), copied


def _def_sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = "header"
    for line in text.splitlines():
        if line.startswith("%"):
            current = line[1:].strip()
            out[current] = []
        elif line.strip() and not line.lstrip().startswith("#"):
            out.setdefault(current, []).append(line.strip())
    return out


def test_apptainer_definition_installs_the_lock():
    sec = _def_sections((ROOT / "deepdraw.def").read_text())
    py, _ = _lock()
    assert "Bootstrap: docker" in sec["header"] and f"From: python:{py}-slim" in sec["header"]
    assert f"TORCH_INDEX={CPU_INDEX}" in sec["arguments"]
    target = f"/opt/deepdraw/{LOCK}"
    assert f"{LOCK} {target}" in sec["files"]
    _check_installs(_pip_installs(sec["post"]), target, "/opt/deepdraw")
    docker_copies = set(re.findall(r"^COPY (\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    def_files = {line.split()[0] for line in sec["files"]}
    assert docker_copies - {"pyproject.toml"} <= def_files  # the same sources in both images
    assert any("DEEPDRAW_DATA=/opt/deepdraw/data" in x for x in sec["environment"])
    assert sec["runscript"] == ['exec deepdraw "$@"']


def test_environment_yml_installs_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    py, _ = _lock()
    deps = env["dependencies"]
    assert f"python={py}" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == [f"--extra-index-url {CPU_INDEX}", f"-r {LOCK}", "-e ."]
    assert [d for d in deps if isinstance(d, str)] == [f"python={py}", "pip"]  # nothing conda could pin apart


def test_make_install_uses_the_lock():
    text = (ROOT / "Makefile").read_text()
    installs = re.findall(r"pip install (.+)", text)
    assert any(f"-r {LOCK}" in i for i in installs) and any(f'-c {LOCK} -e ".[dev]"' in i for i in installs)
    assert not any("==" in i for i in installs)  # no pin outside the lock
    assert "hadolint Dockerfile" in text


def _bin(name: str) -> Path:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path} missing: `make install` installs it (pyproject.toml)"
    return path


def test_dockerfile_passes_hadolint():
    res = subprocess.run([_bin("hadolint"), ROOT / "Dockerfile"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    "args, expect", [(["--version"], "deepdraw 0.1.0"), (["pipeline", "--help"], "--set")]
)
def test_entry_command_of_the_environment(args, expect):
    """The `deepdraw` console script of this environment (what the images' ENTRYPOINT / runscript run)."""
    res = subprocess.run([_bin("deepdraw"), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert expect in res.stdout
