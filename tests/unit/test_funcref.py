"""Function references and the worker's allow-list."""

from __future__ import annotations

import functools
import sys
import uuid
from pathlib import Path

import pytest

from tests import funcs
from ttg.core.funcref import (
    AllowList,
    by_value_ref,
    importable_ref,
    is_local,
    normalize,
    register_local,
    resolve,
    split_ref,
)
from ttg.errors import FunctionError, NotAllowed


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # importing a file puts its directory on sys.path; keep that to this test
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.mark.parametrize(("ref", "parts"), [
    ("pkg.mod:fn", ("pkg.mod", "fn")),
    ("mod:Class.method", ("mod", "Class.method")),
    ("path/to/file.py:fn", ("path/to/file.py", "fn")),
    ("C:/work/file.py:fn", ("C:/work/file.py", "fn")),  # the last colon separates
])
def test_split_ref(ref: str, parts: tuple[str, str]) -> None:
    assert split_ref(ref) == parts


@pytest.mark.parametrize("ref", [
    "", "pkg.mod", "pkg.mod.fn", ":fn", "pkg.mod:", "pkg.mod:1fn", "pkg.mod:fn-name",
    "pkg.mod:fn()", "pkg.mod:a..b", "pkg.mod:fn ",
])
def test_split_ref_errors(ref: str) -> None:
    with pytest.raises(FunctionError) as info:
        split_ref(ref)
    message = str(info.value)
    assert f"{ref!r} is not a function reference" in message
    assert "package.module:function" in message
    assert "\n" not in message


def test_resolve_module_function() -> None:
    assert resolve("tests.funcs:square") is funcs.square
    assert resolve("tests.funcs:square")(7) == 49
    assert resolve("pathlib:Path.cwd") == Path.cwd


def _write_module(directory: Path, text: str, suffix: str = ".py") -> Path:
    path = directory / f"ttg_test_mod_{uuid.uuid4().hex[:8]}{suffix}"
    path.write_text(text)
    return path


def test_resolve_file_function(tmp_path: Path) -> None:
    (tmp_path / "helper_for_ttg_test.py").write_text("OFFSET = 100\n")
    path = _write_module(tmp_path, "import helper_for_ttg_test\n\n"
                         "def f(x):\n    return x + helper_for_ttg_test.OFFSET\n")
    fn = resolve(f"{path}:f")
    assert fn(1) == 101
    assert resolve(f"{path}:f") is fn  # imported once per process


def test_resolve_relative_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_module(tmp_path, "def g(x):\n    return -x\n")
    monkeypatch.chdir(tmp_path)
    assert resolve(f"{path.name}:g")(3) == -3
    assert normalize(f"{path.name}:g") == f"{path}:g"
    assert normalize("pkg.mod:g") == "pkg.mod:g"


@pytest.mark.parametrize(("ref", "expected"), [
    ("no_such_module_for_ttg:f", "cannot import module 'no_such_module_for_ttg'"),
    ("no_such_package_for_ttg.sub:f", "cannot import module 'no_such_package_for_ttg.sub'"),
    ("tests.funcs:no_such_function", "module 'tests.funcs' has no function 'no_such_function'"),
    ("tests.funcs:square.nope", "has no function 'square.nope'"),
    ("tests.funcs:__doc__", "is not callable"),
    ("/no/such/dir/work.py:f", "file '/no/such/dir/work.py' does not exist"),
])
def test_resolve_errors(ref: str, expected: str) -> None:
    with pytest.raises(FunctionError) as info:
        resolve(ref)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_function_in_a_file(tmp_path: Path) -> None:
    path = _write_module(tmp_path, "def f(x):\n    return x\n")
    with pytest.raises(FunctionError, match="has no function 'nope'; check the spelling"):
        resolve(f"{path}:nope")


@pytest.mark.parametrize(("text", "expected"), [
    ("def f(x) return x\n", "SyntaxError"),
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("import no_such_dependency_for_ttg\n", "No module named 'no_such_dependency_for_ttg'"),
])
def test_broken_file_module(tmp_path: Path, text: str, expected: str) -> None:
    path = _write_module(tmp_path, text)
    with pytest.raises(FunctionError, match=r"importing .* failed") as info:
        resolve(f"{path}:f")
    assert expected in str(info.value)
    # importing again retries rather than returning a half-imported module
    with pytest.raises(FunctionError):
        resolve(f"{path}:f")


@pytest.mark.parametrize(("text", "expected"), [
    ("def f(x) return x\n", "SyntaxError"),
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("import no_such_dependency_for_ttg\n", "install the missing package"),
])
def test_broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    path = _write_module(tmp_path, text)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FunctionError, match=f"importing '{path.stem}' failed") as info:
        resolve(f"{path.stem}:f")
    assert expected in str(info.value)


def test_importable_ref() -> None:
    assert importable_ref(funcs.square) == "tests.funcs:square"
    assert importable_ref(Path.cwd) == "pathlib:Path.cwd"  # bound anew on each access

    def nested(x: int) -> int:
        return x

    class Callable_:
        def __call__(self, x: int) -> int:
            return x

        def method(self, x: int) -> int:
            return x

    # workers cannot import these: ttg.run gives them to its local workers by value
    for fn in (lambda x: x, nested, functools.partial(funcs.square), Callable_(), Callable_().method):
        assert importable_ref(fn) is None  # type: ignore[arg-type]


def test_a_function_given_by_value_resolves_only_where_it_was_registered() -> None:
    fn = lambda x: x + 1  # noqa: E731
    ref = by_value_ref(fn, "ab" * 32)
    assert ref == "<local>:lambda_abababababab" and is_local(ref)
    with pytest.raises(FunctionError, match="given by value to the local workers"):
        resolve(ref)
    register_local(ref, fn)
    assert resolve(ref) is fn
    assert by_value_ref(functools.partial(funcs.square), "0" * 64) == "<local>:partial_000000000000"


# -- the allow-list ---------------------------------------------------------------------

OTHERS = ["os:system", "subprocess:run", "builtins:eval", "tests.funcs2:square", "tests:funcs",
          "tests.funcs.sub:f", "testsx.funcs:square", "not a ref", ""]


def test_module_pattern() -> None:
    allow = AllowList(["tests.funcs"])
    assert allow.allows("tests.funcs:square")
    assert allow.allows("tests.funcs:anything_in_it")
    for ref in OTHERS:
        assert not allow.allows(ref), ref


def test_module_pattern_does_not_reach_through_attributes() -> None:
    allow = AllowList(["tests.funcs"])
    assert not allow.allows("tests.funcs:os.system")  # tests.funcs imports os
    assert not allow.allows("tests.funcs:time.sleep")
    assert AllowList(["tests.*"]).allows("tests.funcs:square")
    assert not AllowList(["tests.*"]).allows("tests.funcs:os.system")
    # an exact reference may name a method
    assert AllowList(["pathlib:Path.cwd"]).allows("pathlib:Path.cwd")
    assert not AllowList(["pathlib:Path.cwd"]).allows("pathlib:Path.home")


def test_function_pattern() -> None:
    allow = AllowList(["tests.funcs:square"])
    assert allow.allows("tests.funcs:square")
    assert not allow.allows("tests.funcs:noop")
    assert not allow.allows("tests.funcs:square_x")
    for ref in OTHERS:
        assert not allow.allows(ref), ref


def test_package_pattern() -> None:
    allow = AllowList(["tests.*"])
    assert allow.allows("tests.funcs:square")
    assert allow.allows("tests:f")
    assert allow.allows("tests.a.b.c:f")
    assert not allow.allows("testsx.funcs:square")
    assert not allow.allows("tests_other:f")
    assert not allow.allows("os:system")


def test_file_pattern(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work.py"
    monkeypatch.chdir(tmp_path)
    for pattern in ("work.py", str(work)):
        allow = AllowList([pattern])
        assert allow.allows(f"{work}:f")
        assert allow.allows(normalize("work.py:g"))
        assert not allow.allows(f"{tmp_path / 'other.py'}:f")
        assert not allow.allows("work:f")
        assert not allow.allows(f"{work}:os.system")
        assert not allow.allows("os:system")
    exact = AllowList(["work.py:f"])
    assert exact.allows(f"{work}:f")
    assert not exact.allows(f"{work}:g")


def test_star_allows_anything_well_formed() -> None:
    allow = AllowList(["*"])
    assert allow.allows("os:system")
    assert allow.allows("any.module:any.attr")
    assert not allow.allows("not a ref")


def test_several_patterns_and_empty_ones() -> None:
    allow = AllowList(["", "tests.funcs:square", "pathlib"])
    assert allow.patterns == ("tests.funcs:square", "pathlib")
    assert allow.allows("tests.funcs:square")
    assert allow.allows("pathlib:PurePath")
    assert not allow.allows("tests.funcs:noop")


def test_empty_allow_list_rejects_everything() -> None:
    allow = AllowList([])
    for ref in ["tests.funcs:square", "os:system", *OTHERS]:
        assert not allow.allows(ref)
    with pytest.raises(NotAllowed, match=r"allow-list \(nothing\)"):
        allow.check("tests.funcs:square")


def test_check() -> None:
    allow = AllowList(["tests.funcs"])
    allow.check("tests.funcs:square")
    with pytest.raises(NotAllowed) as info:
        allow.check("os:system")
    message = str(info.value)
    assert "function 'os:system' is not on this worker's allow-list (tests.funcs)" in message
    assert "--allow" in message
    assert "\n" not in message


# -- what a pattern allows once the reference is resolved (issue 14, item 2) -------------------

RELMOD = '''
import functools
from subprocess import run  # a callable this module only imports
from os import system


def own(x):
    return x


def _wrap(f):
    @functools.wraps(f)
    def inner(x):
        return f(x)
    return inner


@_wrap
def decorated(x):
    return x


class Model:
    def __call__(self, x):
        return x


instance = Model()
'''


@pytest.fixture
def relmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"relmod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(RELMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("attr", ["run", "system", "Model", "instance"])
def test_a_module_pattern_allows_no_callable_it_only_imports(relmod: str, attr: str) -> None:
    """The audit's exploit: ``--allow relmod`` must not run ``relmod:run``, which is
    subprocess.run re-exported; nor a class or a callable object of the module."""
    ref = f"{relmod}:{attr}"
    allow = AllowList([relmod])
    assert allow.allows(ref)  # the name alone passes...
    with pytest.raises(NotAllowed, match="a module, package or file pattern allows only the functions "
                                         "defined there"):
        allow.check_object(ref, resolve(ref))  # ...what it names does not


@pytest.mark.parametrize("attr", ["own", "decorated"])
def test_a_module_pattern_allows_its_own_functions(relmod: str, attr: str) -> None:
    ref = f"{relmod}:{attr}"
    AllowList([relmod]).check_object(ref, resolve(ref))


def test_an_exact_reference_allows_what_it_names(relmod: str) -> None:
    for attr in ("run", "Model", "instance"):
        ref = f"{relmod}:{attr}"
        AllowList([ref]).check_object(ref, resolve(ref))
        AllowList(["*"]).check_object(ref, resolve(ref))


def test_a_file_pattern_allows_only_functions_defined_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fileplugin.py"
    path.write_text(RELMOD)
    allow = AllowList([str(path)])
    allow.check_object(f"{path}:own", resolve(f"{path}:own"))
    with pytest.raises(NotAllowed):
        allow.check_object(f"{path}:run", resolve(f"{path}:run"))


def test_a_package_pattern_allows_functions_of_its_modules() -> None:
    allow = AllowList(["tests.*"])
    allow.check_object("tests.funcs:square", resolve("tests.funcs:square"))
    with pytest.raises(NotAllowed):  # tests.funcs imports ctypes... and os, whose functions are not its own
        allow.check_object("tests.funcs:os.getpid", funcs.os.getpid)
