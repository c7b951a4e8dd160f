"""One place per definition: the artifact contracts (deepdraw.contracts) are defined once and used.

* an AST scan of the package finds no module-level assignment of a contract name (kinds, schemas,
  class and frame counts, muscle and joint names, joint limits, seed streams) outside contracts.py,
  and no artifact read or written with a hand-typed kind string;
* every schema of the registry accepts a file built from it and refuses one missing any required key,
  naming the file and the key;
* the stages' readers of each kind validate with the contract schema (a file missing one dataset is
  refused with a message naming the file and the dataset).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from deepdraw import contracts, store
from deepdraw.errors import DeepDrawError

PKG = Path(contracts.__file__).resolve().parent

CONTRACT_NAMES = {
    "LETTERS", "N_CLASSES", "N_FRAMES", "PCRT_FRAMES", "N_MUSCLES", "MUSCLES", "MUSCLE_NAMES", "JOINTS",
    "JOINT_NAMES", "Q_MIN", "Q_MAX", "LATENT_KEYS", "ACTIVATION_KINDS", "SCHEMAS",
}  # fmt: skip
CONTRACT_PATTERNS = (r".*_SCHEMA", r"SEED_STREAM_.*", r"STREAM_.*", r"KIND_.*", r".*_KIND")


def is_contract_name(name: str) -> bool:
    return name in CONTRACT_NAMES or any(re.fullmatch(p, name) for p in CONTRACT_PATTERNS)


def module_assignments(source: str) -> list[tuple[str, int]]:
    """(name, line) of every module-level assignment of a contract name in ``source``."""
    out = []
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and is_contract_name(n.id):
                    out.append((n.id, node.lineno))
    return out


def package_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.name != "contracts.py")


def test_the_scan_finds_a_planted_definition():
    src = "import x\nN_CLASSES = 20\nFOO_SCHEMA: dict = {}\nSEED_STREAM_X, y = 3, 4\ndef f():\n    N_FRAMES = 1\n"
    assert module_assignments(src) == [("N_CLASSES", 2), ("FOO_SCHEMA", 3), ("SEED_STREAM_X", 4)]
    assert module_assignments("from deepdraw.contracts import N_CLASSES\n") == []  # a re-export is fine


def test_contract_names_are_assigned_only_in_contracts():
    found = [
        f"{p.relative_to(PKG.parent)}:{line}: {name}"
        for p in package_files()
        for name, line in module_assignments(p.read_text())
    ]
    assert not found, "contract names defined outside deepdraw/contracts.py:\n" + "\n".join(found)


def test_contracts_define_each_name_once_with_a_docstring():
    tree = ast.parse((PKG / "contracts.py").read_text())
    names = [n for n, _ in module_assignments((PKG / "contracts.py").read_text())]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for required in ("LETTERS", "N_CLASSES", "N_FRAMES", "MUSCLES", "JOINTS", "Q_MIN", "Q_MAX"):
        assert required in names
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            nxt = body[i + 1] if i + 1 < len(body) else None
            doc = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
            assert doc and isinstance(nxt.value.value, str), (
                f"contracts.py:{node.lineno} has no docstring line"
            )


def _kind_literals(source: str) -> list[tuple[str, int]]:
    """String literals passed as the kind of a store reader or writer (keyword or second argument)."""
    calls = {"write_artifact": 2, "ArtifactWriter": 1, "open_artifact": 1, "read_arrays": 2, "provenance": 0}
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if fn not in calls:
            continue
        args = [kw.value for kw in node.keywords if kw.arg == "kind"]
        if len(node.args) > calls[fn]:
            args.append(node.args[calls[fn]])
        out += [
            (a.value, node.lineno) for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
    return out


def test_no_artifact_kind_is_typed_by_hand():
    assert _kind_literals("store.write_artifact(p, a, 'pcrt')\nopen_artifact(p, kind='svm')\n") == [
        ("pcrt", 1),
        ("svm", 2),
    ]
    found = [
        f"{p.relative_to(PKG.parent)}:{line}: {k!r}"
        for p in package_files()
        for k, line in _kind_literals(p.read_text())
    ]
    assert not found, "kinds typed by hand (use deepdraw.contracts.KIND_*):\n" + "\n".join(found)


def test_constants():
    assert contracts.N_CLASSES == len(contracts.LETTERS) == len(set(contracts.LETTERS)) == 20
    assert contracts.N_MUSCLES == len(contracts.MUSCLES) == len(set(contracts.MUSCLES)) == 25
    assert len(contracts.JOINTS) == contracts.Q_MIN.shape[0] == contracts.Q_MAX.shape[0] == 4
    assert np.all(contracts.Q_MIN < contracts.Q_MAX)
    streams = {k: v for k, v in vars(contracts).items() if k.startswith("SEED_STREAM_")}
    assert len(streams) >= 9 and len(set(streams.values())) == len(streams), streams
    kinds = {k: v for k, v in vars(contracts).items() if k.startswith("KIND_")}
    assert len(set(kinds.values())) == len(kinds), kinds
    assert set(contracts.SCHEMAS) <= set(kinds.values())
    assert contracts.PCRT_SCHEMA["spindle_info"].shape == ("n", 25, contracts.N_FRAMES, 2)


def test_old_names_are_the_contract_objects():
    """Where an old module still offers a name (public API, notebooks), it is the contract's object."""
    import deepdraw
    from deepdraw import tuning
    from deepdraw.dataset import arm, assemble, muscles
    from deepdraw.encode import io
    from deepdraw.svm import stage as svm_stage

    assert deepdraw.LETTERS is contracts.LETTERS
    assert assemble.MUSCLES is muscles.MUSCLES is contracts.MUSCLES
    assert io.JOINTS is muscles.JOINTS is contracts.JOINTS
    assert arm.Q_MIN is muscles.Q_MIN is contracts.Q_MIN and arm.Q_MAX is contracts.Q_MAX
    assert svm_stage.SVM_SCHEMA is contracts.SVM_SCHEMA
    assert tuning.ACTIVATIONS_SCHEMA is contracts.ACTIVATIONS_SCHEMA


# ------------------------------------------------------------------------------------ schemas on files
_DTYPES = {
    "f": np.float32,
    "iu": np.int64,
    "i": np.int32,
    "u": np.uint8,
    "b": np.bool_,
    "S": "S10",
    "SOU": "S10",
}
_SIZES = {"n": 3}


def conforming_arrays(schema: store.Schema) -> dict[str, np.ndarray]:
    """Small arrays that satisfy ``schema``: named sizes 3 for "n" and 2 otherwise, free sizes 2."""
    out = {}
    for key, field in schema.items():
        shape = tuple(
            d if isinstance(d, int) else _SIZES.get(d, 2) if isinstance(d, str) else 2 for d in field.shape
        )
        out[key] = np.zeros(shape, dtype=_DTYPES[field.dtype])
    return out


@pytest.mark.parametrize("kind", sorted(contracts.SCHEMAS))
def test_every_schema_refuses_a_file_missing_a_required_key(kind, tmp_path):
    schema = contracts.SCHEMAS[kind]
    arrays = conforming_arrays(schema)
    ok = store.write_artifact(tmp_path / "ok.h5", arrays, kind)
    store.open_artifact(ok, kind, schema).close()
    for key in [k for k, f in schema.items() if f.required]:
        p = store.write_artifact(
            tmp_path / f"no_{key.replace('/', '_')}.h5", {k: v for k, v in arrays.items() if k != key}, kind
        )
        with pytest.raises(DeepDrawError, match=re.escape(f"{p}: key '{key}' is missing")):
            store.open_artifact(p, kind, schema)


def _without(tmp_path, kind, key, name="x.h5", attrs=None) -> Path:
    arrays = conforming_arrays(contracts.SCHEMAS[kind])
    del arrays[key]
    return store.write_artifact(tmp_path / name, arrays, kind, attrs=attrs)


def test_pcrt_missing_a_dataset_is_refused_naming_file_and_dataset(tmp_path):
    p = _without(tmp_path, contracts.KIND_PCRT, "spindle_firing", "pcrt_test.h5")
    with pytest.raises(DeepDrawError, match=re.escape(f"{p}: key 'spindle_firing' is missing")):
        store.open_artifact(p, contracts.KIND_PCRT, contracts.PCRT_SCHEMA)


def test_stage_readers_validate_with_the_contract_schema(tmp_path):
    """The readers of characters, start points, predict results and activations refuse a missing key."""
    from deepdraw.dataset.kinematics import load_characters, load_startpoints
    from deepdraw.encode.results import load_results
    from deepdraw.rsa.stage import read_model_info
    from deepdraw.tuning import ActivationsFile

    cases = [
        (load_characters, contracts.KIND_CHARACTERS, "lengths", {}),
        (load_startpoints, contracts.KIND_STARTPOINTS, "vertical", {}),
        (load_results, contracts.KIND_PREDICT, "noise_ceiling", {}),
        (
            ActivationsFile,
            contracts.KIND_ACTIVATIONS,
            "label",
            {"model_name": "m_1", "layer_names": ["input"]},
        ),
        (
            lambda p: read_model_info(p, [], False),
            contracts.KIND_ACTIVATIONS,
            "sample_index",
            {"model_name": "m_1"},
        ),
    ]
    for i, (reader, kind, key, attrs) in enumerate(cases):
        p = _without(tmp_path, kind, key, f"f{i}.h5", attrs)
        with pytest.raises(DeepDrawError, match=re.escape(f"{p}: key '{key}' is missing")):
            reader(p)


def test_schemas_are_read_only():
    with pytest.raises(TypeError):
        contracts.PCRT_SCHEMA["extra"] = store.Field(("n",))  # type: ignore[index]
    assert contracts.schema_subset(contracts.PCRT_SCHEMA, ("label",)) == {
        "label": contracts.PCRT_SCHEMA["label"]
    }
    with pytest.raises(KeyError, match="nope"):
        contracts.schema_subset(contracts.PCRT_SCHEMA, ("nope",))
