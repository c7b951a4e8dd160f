"""benchmarks/current.py: the table of current figures in benchmarks/README.md matches
benchmarks/results.json, and a benchmark's last JSON line is merged into the results as documented."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def current():
    spec = importlib.util.spec_from_file_location("bench_current", ROOT / "benchmarks" / "current.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_matches_results(current, capsys):
    assert current.main(["--check"]) == 0, capsys.readouterr()


def test_every_target_is_read_as_written(current):
    """Each figure's 'met' column agrees with a hand reading of its target string."""
    figures = current.load()["figures"]
    n = 0
    for figs in figures.values():
        for e in figs.values():
            t = e["target"]
            if t is None:
                assert current.met(e["value"], t) == ""
                continue
            n += 1
            x = float(t.lstrip(">=<± "))
            want = (
                e["value"] >= x
                if t.startswith(">=")
                else e["value"] <= x
                if t.startswith("<=")
                else abs(e["value"]) <= x
            )
            assert current.met(e["value"], t) == ("yes" if want else "**no**"), (e["figure"], t)
    assert n >= 10


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    shutil.copy(ROOT / "benchmarks" / "results.json", results)
    shutil.copy(ROOT / "benchmarks" / "README.md", readme)
    return results, readme


def test_record_merges_the_last_json_line(current, tmp_path):
    results, readme = _planted(tmp_path)
    before = json.loads(results.read_text())
    out = tmp_path / "ik.out"
    planted = {"ik_speedup": 1234.5, "ik_batch_fps": 99999.0, "not_a_figure": 7, "n_frames": 10}
    out.write_text('some log line\n{"ik_speedup": 1}\n' + json.dumps(planted) + "\n\n")
    rc = current.main(
        ["--record", str(out), "--bench", "ik", "--date", "2031-01-02", "--machine", "test machine"],
        results=results,
        readme=readme,
    )
    assert rc == 0
    after = json.loads(results.read_text())
    ik = after["figures"]["ik"]
    assert ik["ik_speedup"]["value"] == 1234.5 and ik["ik_batch_fps"]["value"] == 99999.0
    assert ik["ik_speedup"]["date"] == "2031-01-02" and ik["ik_speedup"]["machine"] == "test machine"
    assert ik["ik_speedup"]["command"] == before["figures"]["ik"]["ik_speedup"]["command"]  # kept
    # a listed key the output lacks, and every other group, are untouched; unlisted keys are not added
    assert (
        ik["frac_frames_within_0p5deg_one_step"]
        == before["figures"]["ik"]["frac_frames_within_0p5deg_one_step"]
    )
    assert set(ik) == set(before["figures"]["ik"])
    assert {k: v for k, v in after["figures"].items() if k != "ik"} == {
        k: v for k, v in before["figures"].items() if k != "ik"
    }
    # the README's table was rewritten from the merged file: its row shows the new value and date
    text = readme.read_text()
    row = next(line for line in text.splitlines() if "`ik.ik_speedup`" in line)
    assert "| 1,234.5 |" in row and "| 2031-01-02 |" in row and "test machine" in row
    assert current.main(["--check"], results=results, readme=readme) == 0
    # and the text outside the table is the same as before
    orig = (ROOT / "benchmarks" / "README.md").read_text()
    assert text.split(current.START)[0] == orig.split(current.START)[0]
    assert text.split(current.END)[1] == orig.split(current.END)[1]


def test_check_fails_on_a_disagreement(current, tmp_path, capsys):
    results, readme = _planted(tmp_path)
    data = json.loads(results.read_text())
    data["figures"]["svm"]["svm_speedup"]["value"] = 321
    results.write_text(json.dumps(data))
    assert current.main(["--check"], results=results, readme=readme) == 1
    assert "differs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, args, message",
    [
        ('{"ik_speedup": 5}', ["--bench", "nope"], "no such group"),
        ('{"other": 5}', ["--bench", "ik"], "none of the keys"),
        ("not json", ["--bench", "ik"], "last line is not JSON"),
        ('{"ik_speedup": "fast"}', ["--bench", "ik"], "expected a finite number"),
        ('{"ik_speedup": 5, "quick": true}', ["--bench", "ik"], "--quick run"),
    ],
)
def test_record_refuses_bad_output(current, tmp_path, capsys, text, args, message):
    results, readme = _planted(tmp_path)
    before = results.read_text(), readme.read_text()
    out = tmp_path / "bench.out"
    out.write_text(text + "\n")
    assert current.main(["--record", str(out), *args], results=results, readme=readme) == 2
    assert message in capsys.readouterr().err
    assert (results.read_text(), readme.read_text()) == before  # nothing written


def test_results_file_errors_name_the_field(current):
    bad = {"format": 1, "figures": {"ik": {"ik_speedup": {"figure": "x", "value": 1, "target": "> 3",
                                                           "date": "2026-01-01", "command": "c", "machine": "m"}}}}  # fmt: skip
    with pytest.raises(current.ResultsError, match=r"figures\.ik\.ik_speedup\.target"):
        current.check_results(bad, "r.json")
    bad["figures"]["ik"]["ik_speedup"].update(target=None, date="yesterday")
    with pytest.raises(current.ResultsError, match=r"figures\.ik\.ik_speedup\.date"):
        current.check_results(bad, "r.json")
    del bad["figures"]["ik"]["ik_speedup"]["machine"]
    with pytest.raises(current.ResultsError, match="missing field.*machine"):
        current.check_results(bad, "r.json")


def test_value_format(current):
    assert [current.fmt(v) for v in (1147, 1306.0, 0.0175, 0.000187, 99.0, 1234.5, -0.75)] == [
        "1,147", "1,306", "0.0175", "1.87e-04", "99.0", "1,234.5", "-0.75",
    ]  # fmt: skip


def test_record_of_a_quick_run_into_a_quick_group(current, tmp_path):
    """A --quick output goes into a group whose recorded command says --quick, without --command."""
    results, readme = _planted(tmp_path)
    out = tmp_path / "predict.out"
    out.write_text(json.dumps({"benchmark": "predict", "speedup": 999, "quick": True}) + "\n")
    args = ["--record", str(out), "--bench", "predict_quick", "--date", "2031-01-02"]
    assert current.main(args, results=results, readme=readme) == 0
    assert json.loads(results.read_text())["figures"]["predict_quick"]["speedup"]["value"] == 999
    args[3] = "predict"  # the full-size group: its command has no --quick
    assert current.main(args, results=results, readme=readme) == 2
