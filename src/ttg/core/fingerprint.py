"""Code fingerprints: which code a sweep's results come from.

A sweep's fingerprint covers the source of the module that defines its function
(every byte of the file: editing the function, a helper beside it, even a
comment or a blank line changes it), and the files a user names besides
(``--code PATH``, ``code=[...]``, ``TTG_CODE``: a file, or a directory whose
files all count, by their path under it). A module without readable source (a
compiled extension) counts as its distribution and version, and says so. The
module's own file counts by content alone: renaming it changes nothing.

Workers compute the fingerprint of the code they import and run a chunk only
when it matches the one its (signed) message names; a committed chunk records
the fingerprint it was computed with.

A function given by value to local workers (core/funcref.py) counts as what it
is pickled as (cloudpickle: its code and the values it references, closures
and globals of a notebook included; importable modules by name), read without
file names and line numbers so that the same cell run in a new session
fingerprints the same, plus the source file of the module its code lives in,
when it has one. The process that received it by value knows its fingerprint
from the process that sent it (``remember``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import sys
import types
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle

from ..errors import ConfigError

#: files under a --code directory that never count (caches, editor and VCS files)
_SKIPPED_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", "~", ".swp")


@dataclass(frozen=True)
class Code:
    """A fingerprint: ``digest`` over the parts; ``parts`` maps a label (the
    function's module, or a path of ``paths``) to the sha256 of its content, or
    to ``dist==version`` for a module without source."""

    digest: str
    parts: dict[str, str] = field(default_factory=dict)
    #: the extra paths, as given (resolved against each worker's own directory)
    paths: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.digest[:12]

    def differing(self, other: Code) -> list[str]:
        """The labels whose content differs between the two (or is in one only)."""
        labels = self.parts.keys() | other.parts.keys()
        return sorted(k for k in labels if self.parts.get(k) != other.parts.get(k))

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "parts": dict(self.parts), "paths": list(self.paths)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Code:
        return cls(str(d["digest"]), {str(k): str(v) for k, v in dict(d.get("parts") or {}).items()},
                   tuple(str(p) for p in d.get("paths") or ()))


#: functions given by value, by id: (the function, its fingerprint as its sender made it)
_remembered: dict[int, tuple[Callable[..., Any], Code]] = {}


def remember(fn: Callable[..., Any], code: Code) -> None:
    """``fn`` was given by value with this fingerprint: ``of_function`` answers it."""
    _remembered[id(fn)] = (fn, code)


def of_function(fn: Callable[..., Any], paths: Iterable[str] = (), base: Path | None = None) -> Code:
    """The fingerprint of ``fn``'s module plus ``paths`` (relative ones from ``base``,
    the working directory by default)."""
    known = _remembered.get(id(fn))
    if known is not None and known[0] is fn:
        return known[1]
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    label, content = _module_part(module, getattr(fn, "__module__", "?"))
    return _with_paths({label: content}, content, paths, base)


def of_value(fn: Callable[..., Any], paths: Iterable[str] = (), base: Path | None = None) -> Code:
    """The fingerprint of ``fn`` given by value (see the module's docstring)."""
    home = home_of(fn)
    parts = {f"{_name(fn)} (by value)": _stable_digest(fn)}
    module = sys.modules.get(getattr(home, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if path and str(path).endswith(".py") and Path(path).is_file():
        label, content = _module_part(module, home.__module__)
        parts[label] = content
    return _with_paths(parts, json.dumps(sorted(parts.items())), paths, base)


def _with_paths(parts: dict[str, str], content: str, paths: Iterable[str], base: Path | None) -> Code:
    extra: list[tuple[str, str]] = []
    given = tuple(paths)
    for p in given:
        for name, digest in _path_parts(p, base or Path.cwd()):
            parts[name] = digest
            extra.append((name, digest))
    blob = json.dumps([content, sorted(extra)], separators=(",", ":"))
    return Code(hashlib.sha256(blob.encode()).hexdigest(), parts, given)


def home_of(fn: Any) -> Any:
    """What holds the code of ``fn``: the function under a partial or a bound method,
    the class of a callable object."""
    while True:
        if hasattr(fn, "func") and callable(fn.func):  # functools.partial
            fn = fn.func
        elif hasattr(fn, "__func__"):  # a bound method
            fn = fn.__func__
        elif isinstance(fn, types.FunctionType | type):
            return fn
        else:
            return type(fn)


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


class _Stable(cloudpickle.Pickler):  # type: ignore[misc]
    """Pickles a code object as what it does (its instructions, constants, names),
    without the file it came from or its line numbers; and a class defined in a
    notebook or a script without the random id cloudpickle tags it with."""

    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: lambda code: (tuple, (_code_fields(code),))}, cloudpickle.Pickler.dispatch_table)

    def reducer_override(self, obj: Any) -> Any:
        rv = super().reducer_override(obj)
        if isinstance(obj, type) and isinstance(rv, tuple) and len(rv) > 1 and isinstance(rv[1], tuple):
            args = tuple("<class>" if isinstance(a, str) and _TRACKER_ID.fullmatch(a) else a for a in rv[1])
            rv = (rv[0], args, *rv[2:])
        return rv


#: cloudpickle's id of a class it pickles by value (uuid4().hex)
_TRACKER_ID = re.compile(r"[0-9a-f]{32}")


def _code_fields(code: types.CodeType) -> tuple[Any, ...]:
    names = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals", "co_flags", "co_code",
             "co_consts", "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_name", "co_qualname",
             "co_exceptiontable")
    return tuple(getattr(code, n, None) for n in names)


def _stable_digest(fn: Any) -> str:
    buf = io.BytesIO()
    _Stable(buf, protocol=5).dump(fn)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def paths_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """``TTG_CODE``: extra paths, separated by the platform's path separator."""
    return [p for p in environ.get("TTG_CODE", "").split(os.pathsep) if p]


def _module_part(module: Any, name: str) -> tuple[str, str]:
    path = getattr(module, "__file__", None)
    if path and str(path).endswith(".py"):
        try:
            return Path(path).name, _sha256(Path(path))
        except OSError:
            pass
    top = name.partition(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if dists:
        dist = dists[0]
        return f"{name} (no source: distribution {dist})", f"{dist}=={importlib.metadata.version(dist)}"
    version = ".".join(map(str, sys.version_info[:3]))
    return f"{name} (no source: built into Python)", f"python=={version}"


def _path_parts(given: str, base: Path) -> list[tuple[str, str]]:
    root = Path(given).expanduser()
    root = root if root.is_absolute() else base / root
    if root.is_file():
        return [(given, _sha256(root))]
    if not root.is_dir():
        raise ConfigError(f"code path {given!r} does not exist (from {base}); name a file or a directory "
                          "of the code that counts, relative to where the command runs.")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for f in sorted(filenames):
            if not f.endswith(_SKIPPED_SUFFIXES):
                full = Path(dirpath) / f
                out.append((f"{given.rstrip('/')}/{full.relative_to(root).as_posix()}", _sha256(full)))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
