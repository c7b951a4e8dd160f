"""Composed configs: ``base = "other.toml"`` chains and ``--set section.key=value`` overrides."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from deepdraw.cli import build_parser, main
from deepdraw.cliargs import config_from_args
from deepdraw.config import DATASET_SECTION_NAMES, config_from_dict, load_config, parse_override
from deepdraw.errors import DeepDrawError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
S7293 = "spatial_temporal_4_8-16-16-32_32-32-64-64_7293"
ST7272 = "spatiotemporal_4_8-8-32-64_7272"
RUN = {"run": {"out_dir": "runs/paper", "seed": 12}, "parallel": {"mode": "sync"}}

# The paper-scale side configs as they were written out in full before they inherited a base: their
# resolved values (and so the digests of the runs they made in runs/paper) must not change.
FLAT = {
    "paper-svm": {
        **RUN,
        "svm": {
            "inputs": [
                "spindle_info",
                "endeffector_coords",
                "joint_coords",
                "muscle_coords",
                "spindle_firing",
            ],
            "subsets": ["full"],
            "project": 128,
            "read_chunk": 1024,
        },
    },
    "paper-train-best": {
        **RUN,
        "train": {"models": [S7293, ST7272], "tasks": ["art"], "seeds": [1], "max_epochs": 50},
    },
    "paper-train-s7293": {
        **RUN,
        "train": {"models": [S7293], "tasks": ["art"], "seeds": [1], "max_epochs": 50},
    },
    "paper-zoo": {
        **RUN,
        "train": {
            "models": [ST7272, S7293],
            "tasks": ["art", "tdt"],
            "seeds": [1, 2, 3, 4, 5],
            "max_epochs": 50,
            "source": "auto",
            "precision": "bf16",  # one protocol over the zoo's seeds (docs/training.md)
        },
    },
}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_side_configs_keep_their_resolved_values(name):
    cfg = load_config(CONFIGS / f"{name}.toml")
    flat = config_from_dict(FLAT[name])
    assert cfg.to_dict() == flat.to_dict()
    assert not set(cfg.given) & set(DATASET_SECTION_NAMES)  # still uses the dataset of runs/paper
    assert len(cfg.layers) >= 2 and cfg.layers[-1].endswith("paper-run.toml")
    assert len((CONFIGS / f"{name}.toml").read_text().split("\n[")) <= 3  # a few sections each


def test_paper_config_resolves_as_before():
    cfg = load_config(CONFIGS / "paper.toml")
    assert (cfg.run.out_dir, cfg.run.seed, cfg.parallel.mode) == ("runs/paper", 12, "local")
    assert cfg.kinematics.n_candidates == 1_000_000 and cfg.assembly.n_samples == 200_000
    assert {"kinematics", "assembly", "run"} <= set(cfg.given)


def test_held_out_configs_differ_from_the_paper_only_in_seed_size_and_folders():
    """configs/paper-heldout.toml draws the paper's distribution (every other dataset key as
    configs/paper.toml) with another seed, and its test file holds the analyses' 4,000 rows;
    configs/paper-zoo-heldout.toml is the zoo analysis with only its folders (and title) changed."""
    paper, held = load_config(CONFIGS / "paper.toml"), load_config(CONFIGS / "paper-heldout.toml")
    a, b = paper.to_dict(), held.to_dict()
    changed = {(sec, k) for sec in a for k in a[sec] if a[sec][k] != b[sec][k]}
    assert changed == {
        ("run", "out_dir"),
        ("run", "seed"),
        ("kinematics", "n_candidates"),
        ("assembly", "n_samples"),
        ("assembly", "test_fraction"),
    }
    assert held.run.seed != paper.run.seed
    analysis = load_config(CONFIGS / "paper-zoo-analysis.toml")
    zoo_held = load_config(CONFIGS / "paper-zoo-heldout.toml")
    n_test = round(held.assembly.n_samples * held.assembly.test_fraction)
    assert n_test == zoo_held.activations.n_samples == analysis.activations.n_samples
    assert zoo_held.run.dataset_dir == held.run.out_dir + "/dataset"
    c, d = analysis.to_dict(), zoo_held.to_dict()
    changed = {(sec, k) for sec in c for k in c[sec] if c[sec][k] != d[sec][k]}
    assert changed == {("run", "out_dir"), ("run", "dataset_dir"), ("report", "title")}


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_base_chain_merges_key_by_key_relative_to_each_file(tmp_path):
    _write(tmp_path, "shared/root.toml", '[run]\nout_dir = "runs/r"\nseed = 4\n[train]\nseeds = [1, 2]\n')
    _write(tmp_path, "shared/mid.toml", 'base = "root.toml"\n[train]\nmax_epochs = 3\n')
    top = _write(tmp_path, "top.toml", 'base = "shared/mid.toml"\n[run]\nseed = 9\n')
    cfg = load_config(top)
    assert (cfg.run.out_dir, cfg.run.seed) == ("runs/r", 9)  # out_dir from root, seed from top
    assert (cfg.train.seeds, cfg.train.max_epochs) == ([1, 2], 3)
    assert sorted(cfg.given) == ["run", "train"]
    assert [Path(x).name for x in cfg.layers] == ["top.toml", "mid.toml", "root.toml"]
    assert cfg.origin() == "top.toml <- mid.toml <- root.toml"


def test_base_errors_name_the_file(tmp_path):
    _write(tmp_path, "a.toml", 'base = "b.toml"\n')
    _write(tmp_path, "b.toml", 'base = "a.toml"\n')
    with pytest.raises(
        DeepDrawError, match=r"b.toml: key 'base' makes a cycle \(.*a.toml -> .*b.toml -> .*a.toml\)"
    ):
        load_config(tmp_path / "a.toml")
    _write(tmp_path, "self.toml", 'base = "self.toml"\n')
    with pytest.raises(DeepDrawError, match="makes a cycle"):
        load_config(tmp_path / "self.toml")
    _write(tmp_path, "missing.toml", 'base = "nowhere.toml"\n')
    with pytest.raises(
        DeepDrawError, match=r"missing.toml: key 'base' names 'nowhere.toml', but .* does not exist"
    ):
        load_config(tmp_path / "missing.toml")
    _write(tmp_path, "num.toml", "base = 3\n")
    with pytest.raises(DeepDrawError, match=r"num.toml: key 'base' is 3; expected the path"):
        load_config(tmp_path / "num.toml")
    _write(tmp_path, "bad.toml", "[train]\nsedes = [1]\n")
    _write(tmp_path, "child.toml", 'base = "bad.toml"\n[run]\nseed = 1\n')
    with pytest.raises(DeepDrawError, match=r"bad.toml: unknown key 'train.sedes'.*'seeds'"):
        load_config(tmp_path / "child.toml")  # the error names the file holding the key


def test_dataset_sections_given_are_the_union_over_the_chain(tmp_path):
    _write(
        tmp_path,
        "data.toml",
        "[kinematics]\nn_candidates = 100\nshard_size = 50\n[assembly]\nn_samples = 50\n",
    )
    child = _write(tmp_path, "child.toml", 'base = "data.toml"\n[train]\nseeds = [1]\n')
    assert {"kinematics", "assembly", "train"} <= set(load_config(child).given)
    other = _write(tmp_path, "other.toml", '[run]\ndataset_dir = "elsewhere/dataset"\n')
    assert "kinematics" not in load_config(other).given
    with pytest.raises(
        DeepDrawError, match=r"with --set assembly.n_samples=10: key 'run.dataset_dir'.*\[assembly\]"
    ):
        load_config(other, ["assembly.n_samples=10"])  # a --set dataset key makes a dataset section given
    with pytest.raises(DeepDrawError, match="run.dataset_dir.*dataset sections"):
        load_config(_write(tmp_path, "both.toml", 'base = "data.toml"\n[run]\ndataset_dir = "x"\n'))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train.seeds=[1,2]", ("train", "seeds", [1, 2])),
        ("run.out_dir=runs/x", ("run", "out_dir", "runs/x")),
        ('run.out_dir="runs/y"', ("run", "out_dir", "runs/y")),
        ("report.title=2026", ("report", "title", "2026")),  # a string key takes the bare text
        ("train.lr = 1e-3", ("train", "lr", 1e-3)),
        ("kinematics.save_trajectories=false", ("kinematics", "save_trajectories", False)),
        ("train.device=cpu", ("train", "device", "cpu")),
    ],
)
def test_set_values_are_toml_literals_or_bare_text(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.sedes=[1]", r"--set train.sedes=\[1\]: unknown key 'train.sedes'; did you mean 'seeds'"),
        ("trian.seeds=[1]", r"--set trian.seeds=\[1\]: unknown section '\[trian\]'; did you mean 'train'"),
        ("train.seeds=one", r"--set train.seeds=one: key 'train.seeds' is 'one'; expected a list of int"),
        ("seeds=[1]", r"--set seeds=\[1\]: expected SECTION.KEY=VALUE"),
        ("train.seeds", r"--set train.seeds: expected SECTION.KEY=VALUE"),
    ],
)
def test_set_errors_name_the_flag_and_key(text, message):
    with pytest.raises(DeepDrawError, match=message):
        parse_override(text)


def test_set_is_validated_with_the_resolved_config(tmp_path):
    p = _write(
        tmp_path, "c.toml", "[kinematics]\nn_candidates = 100\nshard_size = 50\n[assembly]\nn_samples = 50\n"
    )
    with pytest.raises(
        DeepDrawError, match=r"c.toml with --set assembly.n_samples=500: .*exceeds kinematics"
    ):
        load_config(p, ["assembly.n_samples=500"])
    cfg = load_config(p, ["assembly.n_samples=80", "train.seeds=[7]", "assembly.n_samples=90"])
    assert cfg.assembly.n_samples == 90 and cfg.train.seeds == [7]  # later --set wins
    assert cfg.layers[1:] == [
        "--set assembly.n_samples=80",
        "--set train.seeds=[7]",
        "--set assembly.n_samples=90",
    ]
    defaults = load_config(None, ["run.seed=5"])
    assert defaults.run.seed == 5 and defaults.given is None  # no file: makes its dataset, as Config()


def test_every_config_command_takes_set(tmp_path):
    """Each subcommand that reads a config accepts --set; the value reaches the resolved config."""
    from deepdraw import commands  # noqa: F401  (registers the later stages)

    parser = build_parser()
    seen = []

    def walk(p, path):
        for action in p._actions:
            # commands built on _add_config (a positional CONFIG); encode / predict read an optional
            # --config of their own sections and take their settings as options
            if action.dest == "config" and not action.option_strings:
                args = parser.parse_args([*path, "--set", "run.seed=77", "--set", f"run.out_dir={tmp_path}"])
                cfg = config_from_args(args)
                assert (cfg.run.seed, cfg.run.out_dir) == (77, str(tmp_path)), path
                seen.append(" ".join(path))
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])

    walk(parser, [])
    for cmd in ("pipeline", "train", "svm", "rsa", "tuning", "report", "dataset kinematics", "search"):
        assert cmd in seen


def test_set_is_recorded_in_the_provenance(tmp_path):
    """A --set value is in the resolved config stored in the artifact and in the pipeline's stamp."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "-q",
                "pipeline",
                "--only",
                "characters",
                "--set",
                f"run.out_dir={out}",
                "--set",
                "characters.box_cm=8.5",
            ]
        )
        == 0
    )
    with h5py.File(out / "dataset" / "characters.h5") as f:
        assert json.loads(f.attrs["config"])["characters"]["box_cm"] == 8.5
    stamp = json.loads((out / ".stamps" / "characters.done.json").read_text())
    assert stamp["config"]["characters.box_cm"] == 8.5
    assert "--set characters.box_cm=8.5" in stamp["layers"]
