"""Messages on the wire: msgpack, optional HMAC signing, never pickle."""

from __future__ import annotations

import datetime
import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.core.codec import Codec, pack, unpack
from ttg.errors import BadMessage

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
TASK = {"sweep": "f-123", "start": 0, "stop": 100, "fn": "pkg.mod:f", "space": {"kind": "range"}}


@settings(max_examples=50, deadline=None)
@given(PLAIN, st.sampled_from(["", "s3cret", b"\x00binary-key"]))
def test_round_trip(payload: Any, secret: str | bytes) -> None:
    codec = Codec(secret)
    assert codec.signing == bool(secret)
    assert codec.decode(codec.encode(payload)) == payload
    assert unpack(pack(payload)) == payload


def test_int_keys_survive() -> None:
    assert unpack(pack({0: "a", 17: ["b"]})) == {0: "a", 17: ["b"]}


#: any key msgpack can write: scalars, and arrays of them (a tuple, or a set, as a key)
KEYS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(ANY)
def test_any_msgpack_value_reads_back(value: Any) -> None:
    """Whatever msgpack writes, TTG reads back: a tuple key (written as an array) comes
    back a tuple, not an unhashable list that would stop every read of its chunk."""
    assert unpack(pack(value)) == value


def test_an_int_beyond_64_bits_says_so() -> None:
    with pytest.raises(TypeError, match="cannot store the integer 1180591620717411303424: it does not fit "
                       "in 64 bits; return it as a float or a string"):
        pack(2**70)


def _tamper(data: bytes) -> bytes:
    version, body, mac = unpack(data)
    payload = unpack(body)
    payload["fn"] = "os:system"
    return pack([version, pack(payload), mac])


def test_signed_messages_are_accepted() -> None:
    codec = Codec("s3cret")
    assert codec.decode(codec.encode(TASK)) == TASK
    assert Codec(b"s3cret").decode(codec.encode(TASK)) == TASK


def test_tampered_body_is_rejected() -> None:
    codec = Codec("s3cret")
    with pytest.raises(BadMessage, match="signature does not match"):
        codec.decode(_tamper(codec.encode(TASK)))


def test_flipped_bit_is_rejected() -> None:
    codec = Codec("s3cret")
    data = bytearray(codec.encode(TASK))
    data[20] ^= 0x01  # inside the body
    with pytest.raises(BadMessage):
        codec.decode(bytes(data))


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(BadMessage, match="signature does not match"):
        Codec("other").decode(Codec("s3cret").encode(TASK))


def test_unsigned_message_is_rejected_when_signing() -> None:
    with pytest.raises(BadMessage, match="unsigned message"):
        Codec("s3cret").decode(Codec().encode(TASK))


def test_forged_mac_of_the_wrong_type_is_rejected() -> None:
    body = pack(TASK)
    for mac in ("not bytes", 12345, b"", b"\x00" * 32):
        with pytest.raises(BadMessage):
            Codec("s3cret").decode(pack(["ttg1", body, mac]))


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",  # never used in msgpack
    b"garbage that is not msgpack at all \xff\xfe",
    pack(5),
    pack(["ttg1", pack(TASK)]),
    pack(["ttg0", pack(TASK), None]),
    pack(["ttg1", "a str body", None]),
    pack(["ttg1", b"\xc1", None]),
    pack("abc"),
    Codec().encode(TASK) + b"trailing",
    Codec().encode(TASK)[:-3],
])
@pytest.mark.parametrize("secret", ["", "s3cret"])
def test_garbage_is_rejected(data: bytes, secret: str) -> None:
    with pytest.raises(BadMessage) as info:
        Codec(secret).decode(data)
    assert "\n" not in str(info.value)


def test_pickle_is_never_used() -> None:
    import pickle

    with pytest.raises(BadMessage):
        Codec().decode(pickle.dumps(TASK))


def test_numpy_values_are_packed_as_plain_numbers_and_lists() -> None:
    value = {
        "i": np.int64(3), "u": np.uint8(200), "f": np.float32(0.5), "d": np.float64(1.25),
        "b": np.bool_(True), "a": np.arange(6).reshape(2, 3), "z": np.array([0.5, math.inf]),
        "nested": [np.int32(1), (np.float16(2.0), 3)],
    }
    out = unpack(pack(value))
    assert out == {"i": 3, "u": 200, "f": 0.5, "d": 1.25, "b": True, "a": [[0, 1, 2], [3, 4, 5]],
                   "z": [0.5, math.inf], "nested": [1, [2.0, 3]]}
    assert type(out["i"]) is int
    assert type(out["f"]) is float
    assert type(out["b"]) is bool
    # plain msgpack reads them: nothing numpy-specific is on the wire
    assert msgpack.unpackb(pack(np.arange(3)), raw=False) == [0, 1, 2]


def test_tuples_and_sets_become_lists() -> None:
    assert unpack(pack((1, 2))) == [1, 2]
    assert unpack(pack({"s": {7}, "fs": frozenset({"a"})})) == {"s": [7], "fs": ["a"]}


@pytest.mark.parametrize("value", [
    object(), datetime.datetime(2024, 1, 1), {"x": [1, object()]}, lambda x: x, Exception("boom"),
    2**70,
])
def test_unstorable_values_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot store"):
        pack(value)
    with pytest.raises(TypeError):
        Codec("s").encode({"v": value})


# -- signed failure history (issue 14, item 3) ---------------------------------------------


def test_a_signed_failure_verifies_only_for_its_chunk_and_unchanged() -> None:
    from dataclasses import replace

    from ttg.core.chunking import Chunk
    from ttg.core.retry import Failure

    codec = Codec("s3cret")
    f = codec.sign_failure("s", Chunk(13, 14), Failure("crashed", "SIGSEGV at index 13", 13), 2)
    round_trip = Failure.from_dict(f.to_dict())
    assert round_trip == f and codec.signed_failures("s", Chunk(13, 14), round_trip) == 2
    for forged in (replace(f, count=9), replace(f, reason="forged"), replace(f, kind="timeout"),
                   replace(f, index=12), replace(f, mac=None)):
        assert codec.signed_failures("s", Chunk(13, 14), forged) == 0
    assert codec.signed_failures("s", Chunk(12, 13), f) == 0  # another chunk's history
    assert codec.signed_failures("t", Chunk(13, 14), f) == 0  # another sweep's
    assert Codec("other").signed_failures("s", Chunk(13, 14), f) == 0
    assert Codec("").signed_failures("s", Chunk(13, 14), f) is None  # not signing: not checked
    assert Codec("").sign_failure("s", Chunk(13, 14), Failure("crashed", "x"), 1).mac is None
