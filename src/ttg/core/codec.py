"""Bytes on the wire: msgpack, with optional HMAC-SHA256 signing. Never pickle.

A message is the msgpack array ``["ttg1", body, mac]`` where ``body`` is the
msgpack-encoded payload and ``mac`` is HMAC-SHA256(secret, body), or nil when
no secret is set. A codec with a secret rejects messages that are unsigned or
whose MAC does not match; the caller dead-letters them without running them.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any

import msgpack

from ..errors import BadMessage, BadSignature
from .chunking import Chunk
from .retry import Failure

_VERSION = "ttg1"


def pack(obj: Any) -> bytes:
    """msgpack-encode plain data (dicts, lists, str, bytes, numbers, None)."""
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except TypeError:  # a map key that was a tuple (or a set) comes back as an unhashable list
        return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_pairs)


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(k): v for k, v in pairs}


def _hashable(k: Any) -> Any:
    """A map key as it was stored: arrays (tuples, sets) as tuples."""
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


def _default(obj: Any) -> Any:
    if isinstance(obj, int):  # msgpack asks about ints it cannot write
        raise TypeError(f"cannot store the integer {obj}: it does not fit in 64 bits; return it as a float "
                        "or a string")
    # numpy scalars and arrays are common results; store them as plain numbers and lists
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"cannot store a {type(obj).__name__}; return numbers, strings, lists or dicts")


class Codec:
    """Encodes and decodes broker messages, signing them when given a secret; signs
    and verifies the failure history a supervisor writes (``sign_failure``)."""

    def __init__(self, secret: str | bytes = "") -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret

    @property
    def signing(self) -> bool:
        return bool(self._key)

    def encode(self, payload: Any) -> bytes:
        body = pack(payload)
        mac = hmac.new(self._key, body, hashlib.sha256).digest() if self._key else None
        return pack([_VERSION, body, mac])

    def decode(self, data: bytes) -> Any:
        """The payload, or BadMessage (malformed, unsigned while signing, tampered)."""
        try:
            version, body, mac = unpack(data)
        except Exception as exc:  # msgpack raises several types for garbage; all mean malformed
            raise BadMessage(f"malformed message ({type(exc).__name__}); "
                             "it was not produced by TTG.") from exc
        if version != _VERSION or not isinstance(body, bytes):
            raise BadMessage(f"unknown message version {version!r}; upgrade the worker or the client.")
        if self._key:
            if mac is None:
                raise BadSignature("unsigned message while this worker requires signatures; "
                                 "submit with the same TTG_SECRET as the workers.")
            want = hmac.new(self._key, body, hashlib.sha256).digest()
            if not isinstance(mac, bytes) or not hmac.compare_digest(mac, want):
                raise BadSignature("message signature does not match (tampered, or signed with another "
                                 "secret); submit with the same TTG_SECRET as the workers.")
        try:
            return unpack(body)
        except Exception as exc:
            raise BadMessage(f"malformed message body ({type(exc).__name__}).") from exc

    def sign_failure(self, sweep_id: str, chunk: Chunk, failure: Failure, count: int) -> Failure:
        """``failure`` as the ``count``-th signed failed attempt of this chunk (unchanged
        without a secret)."""
        if not self._key:
            return failure
        signed = replace(failure, count=count, mac=None)
        return replace(signed, mac=self._failure_mac(sweep_id, chunk, signed))

    def signed_failures(self, sweep_id: str, chunk: Chunk, last: Failure | None) -> int | None:
        """How many failed attempts of this chunk a supervisor signed, read from its last
        failure: None without a secret; 0 when that failure is not signed, or not for
        this chunk, or its signature does not match."""
        if not self._key:
            return None
        if last is None or last.mac is None or last.count is None:
            return 0
        want = self._failure_mac(sweep_id, chunk, replace(last, mac=None))
        return last.count if hmac.compare_digest(last.mac, want) else 0

    def _failure_mac(self, sweep_id: str, chunk: Chunk, failure: Failure) -> str:
        body = pack([sweep_id, chunk.start, chunk.stop, failure.kind, failure.reason, failure.index,
                     failure.count])
        return hmac.new(self._key, b"failure" + body, hashlib.sha256).hexdigest()
