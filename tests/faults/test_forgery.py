"""A forged failure history never becomes a final record (issue 14, item 3).

With TTG_SECRET set, the failure count and last failure of a queued chunk live
in the broker's record, outside the message's signature: the embedded broker's
columns, Redis stream fields, RabbitMQ headers. An attacker with write access to
the broker edits them to say that a one-point chunk timed out three times. The
worker must not record ``timeout: forged by attacker`` for an index whose
function never ran: it runs the point, and the record is its real result."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import redis

from tests.conftest import rabbit_vhost, redis_url, store_records_per_index, ttg
from tests.processes import executions, submit
from ttg.drivers.redis import keyspace

SECRET = "s3cret"
FORGED = {"kind": "timeout", "reason": "forged by attacker", "index": 0}


def _forge_local(home: Path, url: str, sweep: str) -> None:
    with sqlite3.connect(home / "broker.db") as db:
        n = db.execute("UPDATE chunks SET failures = 3, last_failure = ? WHERE sweep = ?",
                       (json.dumps(FORGED), sweep)).rowcount
    assert n == 1


def _forge_redis(home: Path, url: str, sweep: str) -> None:
    plain, ns = keyspace(url)
    r = redis.Redis.from_url(plain)
    try:
        [(entry_id, fields)] = r.xrange(f"{ns}q:{sweep}")
        forged = {**fields, b"f": b"3", b"l": json.dumps(FORGED).encode()}
        r.xdel(f"{ns}q:{sweep}", entry_id)
        r.xadd(f"{ns}q:{sweep}", forged)
    finally:
        r.close()


def _forge_amqp(home: Path, url: str, sweep: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        method, props, body = ch.basic_get(f"ttg.q.{sweep}", auto_ack=False)
        assert method is not None
        headers = {**props.headers, "ttg-failures": 3, "ttg-last-failure": json.dumps(FORGED)}
        ch.basic_publish("", f"ttg.q.{sweep}", body, pika.BasicProperties(delivery_mode=2, headers=headers))
        ch.basic_ack(method.delivery_tag)
    finally:
        conn.close()


Backend = tuple[str, list[str], Callable[..., Any]]


@pytest.fixture(params=["local", "redis", "amqp"])
def backend(request: pytest.FixtureRequest, home: Path) -> Iterator[Backend]:
    """(broker URL, the CLI's arguments for it, how to forge its record)."""
    home.mkdir(parents=True, exist_ok=True)
    store = ["--store", f"sqlite://{home / 'results.db'}"]
    if request.param == "local":
        yield "local", [], _forge_local
    elif request.param == "redis":
        url = redis_url(home)
        yield url, ["--broker", url, *store], _forge_redis
    else:
        vhost = rabbit_vhost(home)
        vhost.delete()
        with vhost:
            yield vhost.url, ["--broker", vhost.url, *store], _forge_amqp


def test_a_forged_failure_history_is_not_a_record(backend: Backend, home: Path, tmp_path: Path) -> None:
    url, args, forge = backend
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted", "--range", "1", "--chunk-size", "1", "--max-attempts", "3",
                   *args, TTG_SECRET=SECRET)
    forge(home, url, sweep)
    ttg(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1", *args, check=True,
        TTG_SECRET=SECRET, TTG_TEST_COUNTER=str(counter))
    assert executions(counter) == {0: 1}, "the point was not run"
    errors = ttg(home, "errors", sweep, *args, check=True).stdout
    assert "forged" not in errors, errors
    assert store_records_per_index(f"sqlite://{home / 'results.db'}", sweep) == {0: 1}
    status = ttg(home, "status", sweep, *args, check=True).stdout
    assert "ok 1  error 0  crashed 0  timeout 0" in status, status


@pytest.mark.parametrize(("field", "value", "outcome"), [
    (b"s", b"1", "rejected"),  # the record names another chunk than its message
    (b"e", b"2", "rejected"),
    (b"b", None, "rejected"),  # the body: its signature fails on a sweep whose other chunk verified
    (b"p", b"99", "run"),  # its priority: only the order changes
    (b"f", b"3", "run"),  # a failure count with no failure: nothing to record
    (b"l", json.dumps(FORGED).encode(), "run"),  # a failure with no count
])
def test_any_field_of_a_redis_record_tampered_is_never_a_wrong_record(
        field: bytes, value: bytes | None, outcome: str, home: Path, tmp_path: Path) -> None:
    """Every field of a queued chunk's Redis entry, changed: the chunk is run (and
    its record is its own), dead-lettered, or left queued for other workers;
    never a record that its function did not compute."""
    url = redis_url(home)
    args = ["--broker", url, "--store", f"sqlite://{home / 'results.db'}"]
    home.mkdir(parents=True, exist_ok=True)
    counter = tmp_path / "counter"
    sweep = submit(home, "tests.funcs:counted", "--range", "2", "--chunk-size", "1", *args, TTG_SECRET=SECRET)
    plain, ns = keyspace(url)
    with redis.Redis.from_url(plain) as r:
        entry_id, fields = next((i, f) for i, f in r.xrange(f"{ns}q:{sweep}") if f[b"s"] == b"0")
        if value is None:  # flip a bit of the body, inside the signed part
            body = bytearray(fields[b"b"])
            body[len(body) // 2] ^= 0x01
            value = bytes(body)
        r.xdel(f"{ns}q:{sweep}", entry_id)
        r.xadd(f"{ns}q:{sweep}", {**fields, field: value})
    ttg(home, "worker", "--burst", "--allow", "tests.funcs", "--workers", "1", *args, check=True,
        TTG_SECRET=SECRET, TTG_TEST_COUNTER=str(counter))
    records = store_records_per_index(f"sqlite://{home / 'results.db'}", sweep)
    status = ttg(home, "status", sweep, *args, check=True).stdout
    if outcome == "run":
        assert executions(counter) == {0: 1, 1: 1} and records == {0: 1, 1: 1}
        assert "ok 2  error 0  crashed 0  timeout 0" in status, status
    else:  # index 0 never ran and has no record; index 1 ran once
        assert executions(counter) == {1: 1} and records == {1: 1}
        dead = "dead-letter" in ttg(home, "errors", sweep, *args, check=True).stdout
        assert dead == (outcome == "rejected"), status
