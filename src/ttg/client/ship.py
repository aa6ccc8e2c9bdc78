"""Shipping a function by value to remote workers (``ship=True``, ``ttg submit
--ship``): opt-in, signed, and only to workers that accept it.

What it carries: the function and what it references, pickled by cloudpickle,
with the modules of the user's own files it uses (the one that defines it, its
helpers) pickled by value too, so that a worker without those files (another
machine, a container, another checkout) runs it; modules installed in the
environment (packages, the standard library, TTG) stay references, imported on
the worker. The pickle is kept with the sweep in the
store (at most MAX_SHIPPED_BYTES), and every chunk message names it by its
SHA-256, signed with the message: a worker loads it only if it is that very
pickle (worker/gate.py).

What it trusts: unpickling runs code. So shipping needs TTG_SECRET, and only
workers started with ``--accept-shipped-code`` (and the secret) load it:
anyone who holds the secret can run any code on those workers. Other workers
leave such chunks to them. The sweep's code fingerprint covers the shipped
function as for one given by value (core/fingerprint.py).
"""

from __future__ import annotations

import base64
import functools
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core import fingerprint, funcref
from ..core.sweep import Options, Sweep
from ..errors import ConfigError, FunctionError
from ..settings import Settings
from ..spaces import Space
from .submit import prepare

#: the largest pickle a sweep may ship (it is read from the store by each worker child once)
MAX_SHIPPED_BYTES = 4 * 2**20


def shipped_sweep(fn: Callable[..., Any], space: Space, options: Options, name: str | None,
                  paths: Sequence[str], settings: Settings) -> Sweep:
    """The sweep of ``fn`` shipped by value; ConfigError, before anything is stored,
    without a secret or for a function too big to ship."""
    if not settings.secret:
        raise ConfigError("shipping a function runs it on remote workers from the signed messages alone, and "
                          "there is no TTG_SECRET to sign them with; set TTG_SECRET on this machine and on "
                          "the workers (started with --accept-shipped-code).")
    blob = pickled(fn)  # (first: the fingerprint pickles it too)
    code = fingerprint.of_value(fn, paths)
    if len(blob) > MAX_SHIPPED_BYTES:
        raise ConfigError(f"the function pickles to {len(blob) / 2**20:.1f} MiB with what it references, "
                          f"more than the {MAX_SHIPPED_BYTES // 2**20} MiB a sweep may ship; load big data "
                          "inside the function (from a file or a URL) instead of capturing it.")
    ref = funcref.by_value_ref(fn, code.digest, funcref.SHIPPED)
    funcref.register_local(ref, fn)  # (so that prepare finds it, as a worker will)
    fingerprint.remember(fn, code)
    return prepare(ref, space, options, name, paths, shipped=base64.b64encode(blob).decode())


def pickled(fn: Callable[..., Any]) -> bytes:
    """``fn`` and what it references, every module of the user's own files by value
    (the function's and its helpers'), installed ones by reference."""
    mine = [m for name, m in list(sys.modules.items())
            if name != "__main__" and name.partition(".")[0] != "ttg" and _user_module(m)]
    return dumps(fn, "shipped", "make what it uses picklable, or run it from a module the workers import",
                 by_value=mine)


def dumps(fn: Callable[..., Any], what: str, fix: str, *, by_value: Sequence[Any] = ()) -> bytes:
    """cloudpickle of ``fn`` (``by_value``: modules pickled with it, not imported where
    it is loaded); FunctionError saying it cannot be ``what`` and the ``fix``."""
    import cloudpickle

    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(fn))
    except Exception as exc:  # what a callable references decides what can be pickled
        raise FunctionError(f"{fn!r} cannot be {what}: it references something that cannot be pickled "
                            f"({type(exc).__name__}: {exc}); {fix}.") from None
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)


def _user_module(module: Any) -> bool:
    """A module of the user's own files: not the standard library nor an installed package."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return False
    where = Path(path).resolve()
    return not any(where.is_relative_to(root) for root in _installed())


@functools.cache
def _installed() -> tuple[Path, ...]:
    """Where installed code lives: the standard library and site-packages."""
    paths = sysconfig.get_paths()
    return tuple({Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
                  if (p := paths.get(key))})
