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
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def of_function(fn: Callable[..., Any], paths: Iterable[str] = (), base: Path | None = None) -> Code:
    """The fingerprint of ``fn``'s module plus ``paths`` (relative ones from ``base``,
    the working directory by default)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    label, content = _module_part(module, getattr(fn, "__module__", "?"))
    parts = {label: content}
    extra: list[tuple[str, str]] = []
    given = tuple(paths)
    for p in given:
        for name, digest in _path_parts(p, base or Path.cwd()):
            parts[name] = digest
            extra.append((name, digest))
    blob = json.dumps([content, sorted(extra)], separators=(",", ":"))
    return Code(hashlib.sha256(blob.encode()).hexdigest(), parts, given)


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
