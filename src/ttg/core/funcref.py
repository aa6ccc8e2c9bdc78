"""Function references (``pkg.mod:fn`` or ``path/to/file.py:fn``) and the allow-list.

Code never travels through the broker: a chunk names its function, and each
worker imports it itself, but only if the name is on the worker's allow-list.

A function that workers cannot import (a lambda, a closure, a partial, a bound
method, a callable object, a function defined in a notebook) can still run on
the local workers that ``ttg.run`` and ``ttg.start`` start: it is given to them
by value, through a pipe to the process they run in (client/background.py),
and named ``<local>:NAME_DIGEST``. Only a process that holds it (``register_local``)
resolves that name; every other worker leaves its chunks alone.

A function shipped to remote workers (``ship=True``, client/ship.py) is named
``<shipped>:NAME_DIGEST``: a worker resolves it only once it has loaded and
checked it (worker/gate.py), and only with ``--accept-shipped-code``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import FunctionError, NotAllowed

#: the module part of the reference of a function given by value to local workers
LOCAL = "<local>"
#: ... and of one shipped by value to any worker that accepts shipped code
SHIPPED = "<shipped>"
_local: dict[str, Callable[..., Any]] = {}
#: the files being imported by resolve() in this process, innermost last
_importing: list[str] = []


def by_value_ref(fn: Callable[..., Any], digest: str, module: str = LOCAL) -> str:
    """The reference of ``fn`` given by value, to local workers (``module`` LOCAL) or
    shipped (SHIPPED), whose code fingerprint is ``digest``."""
    name = (getattr(fn, "__qualname__", None) or type(fn).__name__).rpartition(".")[2]
    ident = "_".join(w for w in "".join(c if c.isalnum() else " " for c in name).split()) or "function"
    if not ident[0].isalpha():
        ident = "f_" + ident
    return f"{module}:{ident}_{digest[:12]}"


def register_local(ref: str, fn: Callable[..., Any]) -> None:
    """Let this process (and the children it forks) resolve ``ref`` to ``fn``."""
    _local[ref] = fn


def is_local(ref: str) -> bool:
    return ref.startswith(LOCAL + ":")


def is_shipped(ref: str) -> bool:
    return ref.startswith(SHIPPED + ":")


def importable_ref(fn: Callable[..., Any]) -> str | None:
    """The reference under which workers import ``fn`` itself, or None when they cannot:
    a lambda, a nested function, a partial, a bound method, a callable object, or a
    function of an interactive session (a notebook)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn and (obj is None or obj != fn):  # (a classmethod is bound anew on each access)
        return None
    if module == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        return None if path is None else f"{Path(path).resolve()}:{qualname}"
    return f"{module}:{qualname}"


def importing() -> str | None:
    """The file this process is importing to find a function, if it is doing so now."""
    return _importing[-1] if _importing else None


def split_ref(ref: str) -> tuple[str, str]:
    """``"mod:fn"`` -> ``("mod", "fn")``; raises FunctionError for anything else."""
    module, sep, name = ref.rpartition(":")
    if not sep or not module or not name or not all(p.isidentifier() for p in name.split(".")):
        raise FunctionError(f"{ref!r} is not a function reference; write it as package.module:function "
                            "or path/to/file.py:function.")
    return module, name


def is_file_module(module: str) -> bool:
    return module.endswith(".py")


def normalize(ref: str) -> str:
    """A reference that means the same thing from any working directory (file paths made absolute)."""
    module, name = split_ref(ref)
    if is_file_module(module):
        module = str(Path(module).resolve())
    return f"{module}:{name}"


def resolve(ref: str) -> Callable[..., Any]:
    """Import the module and return the function; raises FunctionError with the reason."""
    module, name = split_ref(ref)
    if module == SHIPPED and ref not in _local:
        raise FunctionError(f"{ref!r} is shipped by value with its sweep: only a worker started with "
                            "--accept-shipped-code (and the sweep's TTG_SECRET) loads it.")
    if module in (LOCAL, SHIPPED):
        if ref not in _local:
            raise FunctionError(f"{ref!r} was given by value to the local workers of the process that "
                                "started its sweep (ttg.run or ttg.start), and only they can run it: define "
                                "it in a module that workers import to run it anywhere else.")
        return _local[ref]
    mod = _import_file(module) if is_file_module(module) else _import_module(ref, module)
    obj: Any = mod
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise FunctionError(f"module {module!r} has no function {name!r}; check the spelling "
                                "after the colon.")
    if not callable(obj):
        raise FunctionError(f"{ref!r} is not callable; point it at a function.")
    return obj  # type: ignore[no-any-return]


def _import_module(ref: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise FunctionError(f"cannot import module {module!r} for {ref!r}; install it or run from "
                                "the directory that contains it (or give a file path).") from exc
        raise FunctionError(f"importing {module!r} failed: {exc}; install the missing package.") from exc
    except Exception as exc:  # the module itself is broken (SyntaxError, an error at import...)
        raise FunctionError(f"importing {module!r} failed: {type(exc).__name__}: {exc}; "
                            "fix the module.") from exc


def _module_name(module: str) -> str:
    """The name a reference's module is imported under (a file: a stable name of its own)."""
    if not is_file_module(module):
        return module
    return "_ttg_file_" + hashlib.sha1(str(Path(module).resolve()).encode()).hexdigest()[:12]


def _import_file(path: str) -> Any:
    p = Path(path).resolve()
    if not p.is_file():
        raise FunctionError(f"file {path!r} does not exist; check the path before the colon.")
    # a stable module name per file, so the module is imported once per process
    modname = _module_name(path)
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, p)
    if spec is None or spec.loader is None:
        raise FunctionError(f"cannot load {path!r} as Python; give a .py file.")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    sys.path.insert(0, str(p.parent))  # so the file can import its neighbours
    _importing.append(str(p))
    try:
        spec.loader.exec_module(mod)
    except FunctionError:  # a sentence of TTG's own (a sweep started at import: api.py)
        del sys.modules[modname]
        raise
    except Exception as exc:
        del sys.modules[modname]
        raise FunctionError(f"importing {path!r} failed: {type(exc).__name__}: {exc}; "
                            "fix the file.") from exc
    finally:
        _importing.pop()
    return mod


class AllowList:
    """Which function references a worker may run.

    A pattern is a function reference (``pkg.mod:fn``: exactly that, whatever it
    is: a function, a class, a callable object), a module (``pkg.mod``: the
    plain functions defined in it), a package prefix (``pkg.*``: the plain
    functions defined in its modules), a file (``path/file.py``: the plain
    functions defined in it), or ``*`` (anything; for trusted single-user setups
    only). "Defined in" is the function's ``__module__``: a callable that a
    module merely imports (``from subprocess import run``), a class, a builtin or
    a callable object is not allowed by a module, package or file pattern.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(_normalize_pattern(p) for p in patterns if p)

    def allows(self, ref: str) -> bool:
        try:
            module, name = split_ref(ref)
        except FunctionError:
            return False
        for pat in self.patterns:
            if pat == "*" or pat == ref:
                return True
            if "." in name:
                # a module, package or file pattern allows the functions at its top level, not
                # whatever is reachable through them ("pkg.mod:os.system")
                continue
            if pat == module:
                return True
            if pat.endswith(".*") and (module == pat[:-2] or module.startswith(pat[:-1])):
                return True
        return False

    def check(self, ref: str) -> None:
        if not self.allows(ref):
            shown = ", ".join(self.patterns) or "nothing"
            raise NotAllowed(f"function {ref!r} is not on this worker's allow-list ({shown}); "
                             "start the worker with --allow for its module.")

    def check_object(self, ref: str, obj: Any) -> None:
        """Once ``ref`` is resolved to ``obj``: raises NotAllowed unless a pattern that
        allows the reference allows this object too (see the class docstring)."""
        module, _ = split_ref(ref)
        home = _module_name(module)
        for pat in self.patterns:
            if pat == "*" or pat == ref:
                return
        defined_in = getattr(obj, "__module__", None) if inspect.isfunction(obj) else None
        for pat in self.patterns:
            if ":" in pat or not self._matches(pat, module):
                continue
            if pat.endswith(".*") and not is_file_module(module):
                if defined_in is not None and (defined_in == pat[:-2] or defined_in.startswith(pat[:-1])):
                    return
            elif defined_in == home:
                return
        what = ("a plain function" if inspect.isfunction(obj)
                else f"a {type(obj).__name__}, not a plain function,")
        raise NotAllowed(f"{ref!r} is {what} defined in {getattr(obj, '__module__', '?')!r}, not in "
                         f"{module!r}: a module, package or file pattern allows only the functions defined "
                         "there; allow this exact reference with --allow if it is meant to run.")

    @staticmethod
    def _matches(pat: str, module: str) -> bool:
        return pat == module or (pat.endswith(".*") and (module == pat[:-2] or module.startswith(pat[:-1])))


def _normalize_pattern(pattern: str) -> str:
    if ":" in pattern:
        return normalize(pattern)
    if pattern.endswith(".py"):
        return str(Path(pattern).resolve())
    return pattern
