"""Code fingerprints (core/fingerprint.py): what they cover, and what does not
change them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack._cmsgpack
import pytest

from ttg.core import fingerprint
from ttg.core.fingerprint import Code
from ttg.errors import ConfigError


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def fn_of(tmp_path: Path, source: str, file: str = "m.py", name: str = "fp_mod") -> Any:
    path = tmp_path / file
    path.write_text(source)
    return load(path, f"{name}_{abs(hash(str(path)))}").g


def test_the_module_counts_every_byte_of_it(tmp_path: Path) -> None:
    a = fingerprint.of_function(fn_of(tmp_path, "def g(x):\n    return x + 1\n"))
    b = fingerprint.of_function(fn_of(tmp_path, "def g(x):\n    return x + 100\n", "n.py"))
    helper = fingerprint.of_function(fn_of(tmp_path, "def h():\n    pass\n\ndef g(x):\n    return x + 1\n",
                                           "o.py"))
    spaces = fingerprint.of_function(fn_of(tmp_path, "def g(x):\n    return x + 1  # a comment\n", "p.py"))
    assert len({a.digest, b.digest, helper.digest, spaces.digest}) == 4


def test_a_renamed_file_with_the_same_content_keeps_its_fingerprint(tmp_path: Path) -> None:
    source = "def g(x):\n    return x * 3\n"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = fingerprint.of_function(fn_of(tmp_path / "one", source, "model.py"))
    second = fingerprint.of_function(fn_of(tmp_path / "two", source, "renamed.py"))
    assert first.digest == second.digest


def test_code_paths_count_files_and_directories(tmp_path: Path) -> None:
    fn = fn_of(tmp_path, "def g(x):\n    return x\n")
    helpers = tmp_path / "helpers"
    (helpers / "__pycache__").mkdir(parents=True)
    (helpers / "util.py").write_text("K = 1\n")
    (helpers / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "data.txt").write_text("v1")
    base = fingerprint.of_function(fn, ["helpers", "data.txt"], tmp_path)
    assert set(base.parts) == {"m.py", "helpers/util.py", "data.txt"}
    assert base.paths == ("helpers", "data.txt")
    (helpers / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"another cache")
    assert fingerprint.of_function(fn, ["helpers", "data.txt"], tmp_path).digest == base.digest
    (helpers / "util.py").write_text("K = 2\n")
    changed = fingerprint.of_function(fn, ["helpers", "data.txt"], tmp_path)
    assert changed.digest != base.digest and base.differing(changed) == ["helpers/util.py"]
    with pytest.raises(ConfigError, match="code path 'nowhere' does not exist"):
        fingerprint.of_function(fn, ["nowhere"], tmp_path)


def test_a_module_without_source_counts_as_its_distribution() -> None:
    packer = fingerprint.of_function(msgpack._cmsgpack.Packer)
    (label, value), = packer.parts.items()
    assert "no source: distribution msgpack" in label
    assert value == f"msgpack=={importlib.metadata.version('msgpack')}"
    builtin = fingerprint.of_function(math.sqrt)
    assert list(builtin.parts.values()) == [f"python=={'.'.join(map(str, sys.version_info[:3]))}"]


def test_a_fingerprint_round_trips() -> None:
    code = Code("ab" * 32, {"m.py": "cd" * 32}, ("helpers",))
    assert Code.from_dict(code.to_dict()) == code and code.short == "ab" * 6


def test_ttg_code_lists_paths() -> None:
    import os

    assert fingerprint.paths_from_env({"TTG_CODE": f"a{os.pathsep}b/c{os.pathsep}"}) == ["a", "b/c"]
    assert fingerprint.paths_from_env({}) == []
