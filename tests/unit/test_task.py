"""A chunk message as a worker reads it (worker/task.py): whatever any field of it
holds, a worker gets a task it may run or a BadMessage, never another error; and
with a secret, changing any field of a signed message is caught."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ttg.brokers.base import Lease
from ttg.core.chunking import Chunk
from ttg.core.codec import Codec, pack, unpack
from ttg.core.sweep import Options, Sweep
from ttg.errors import BadMessage, BadSignature
from ttg.spaces import GridSpace, RangeSpace
from ttg.worker.task import Task

from .test_codec import ANY

SWEEP = Sweep.create("tests.funcs:square", RangeSpace(100),
                     Options(chunk_size=10, timeout=5.0, retries=2, retry_on=("ConnectionError",),
                             retry_backoff=0.5, max_failures="5%", concurrency=4))
BIG = Sweep.create("tests.funcs:square", GridSpace({"i": list(range(2000))}), Options(chunk_size=10))
SHIPPED = Sweep.create("<shipped>:f_0123456789ab", RangeSpace(100), Options(chunk_size=10),
                       shipped=base64.b64encode(b"a pickle").decode())
CHUNK = Chunk(10, 20)
#: every field a chunk message may carry (rows: a file space's; space_ref: a big spec's)
FIELDS = ["sweep", "start", "stop", "fn", "batched", "timeout", "max_attempts", "auto", "first", "space",
          "space_ref", "rows", "code", "code_paths", "retries", "max_failures", "concurrency",
          "shipped"]


def lease(sweep: Sweep) -> Lease:
    return Lease(sweep.id, CHUNK, b"", "t", 0.0, 0, None)


def body(sweep: Sweep) -> dict[str, Any]:
    return sweep.task(CHUNK, first=True)


@pytest.mark.parametrize("sweep", [SWEEP, BIG, SHIPPED], ids=["inline-spec", "spec-by-digest", "shipped"])
def test_the_message_of_a_sweep_parses(sweep: Sweep) -> None:
    task = Task.parse(body(sweep), lease(sweep))
    assert task.shipped == (hashlib.sha256(b"a pickle").hexdigest() if sweep is SHIPPED else None)
    assert (task.sweep_id, task.chunk, task.fn) == (sweep.id, CHUNK, sweep.function)
    o = sweep.options
    if o.retries:
        assert task.retries is not None
        assert (task.retries.retries, task.retries.retry_on, task.retries.backoff) == (
            o.retries, o.retry_on, o.retry_backoff)
    else:
        assert task.retries is None
    assert task.max_failures == o.max_failures
    assert task.concurrency == o.concurrency
    assert (task.space is None) == (sweep is BIG) and (task.space_ref is None) == (sweep is not BIG)


@settings(max_examples=300, deadline=None)
@given(sweep=st.sampled_from([SWEEP, BIG, SHIPPED]), field=st.sampled_from(FIELDS), value=ANY | st.none())
def test_any_value_in_any_field_parses_or_is_a_bad_message(sweep: Sweep, field: str, value: Any) -> None:
    tampered = dict(body(sweep), **{field: value})
    try:
        Task.parse(tampered, lease(sweep))
    except BadMessage:
        pass


@settings(max_examples=300, deadline=None)
@given(sweep=st.sampled_from([SWEEP, BIG, SHIPPED]), field=st.sampled_from(FIELDS), value=ANY | st.none())
def test_changing_any_field_of_a_signed_message_is_caught(sweep: Sweep, field: str, value: Any) -> None:
    codec = Codec("s3cret")
    version, inner, mac = unpack(codec.encode(body(sweep)))
    payload = unpack(inner)
    had = field in payload
    assume(payload.get(field, object()) != value)
    payload[field] = value
    with pytest.raises(BadSignature):
        codec.decode(pack([version, pack(payload), mac]))
    if had:  # and so is dropping it
        del payload[field]
        with pytest.raises(BadSignature):
            codec.decode(pack([version, pack(payload), mac]))
