"""TTG's errors: one root, one class per layer.

Every message is one sentence that names the problem and the fix, because the
CLI prints it as it is (exit status 2) and the user should not need a
traceback to act on it.
"""

from __future__ import annotations


class TtgError(Exception):
    """Root of every error TTG raises on purpose."""

    exit_code = 2


class ConfigError(TtgError):
    """A setting, flag or environment variable is wrong."""


class SpecError(TtgError):
    """A space spec or space file is malformed."""


class FunctionError(TtgError):
    """A function reference cannot be resolved (unknown module or function)."""


class NotAllowed(TtgError):
    """A chunk names a function that is not on the worker's allow-list."""


class BadMessage(TtgError):
    """A message could not be decoded, or its signature is missing or wrong."""


class BadSignature(BadMessage):
    """A message is unsigned or its signature does not match this worker's secret
    (tampered, or signed with another secret)."""


class OtherCode(TtgError):
    """This worker imports other code than the sweep's (its fingerprint differs)."""


class SpecNotInStore(TtgError):
    """A chunk message names its space by digest, and this worker's store does not
    hold that spec (the worker is on another store, or the record was changed)."""


class SweepNotFound(TtgError):
    """No sweep with that name or id exists in the store."""


class BrokerError(TtgError):
    """The broker failed."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (or refused our credentials)."""


class LeaseLost(BrokerError):
    """The lease no longer owns its chunk: it expired and someone else took it."""


class DiskFull(TtgError):
    """The local disk that holds TTG's files is full: nothing can go on until there
    is room, so the command stops (rather than retrying) with this error."""


class StoreError(TtgError):
    """The result store failed."""


class StoreUnavailable(StoreError):
    """The result store cannot be reached (or refused our credentials)."""
