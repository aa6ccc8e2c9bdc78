"""The Redis result store: for moderate result volumes shared by many machines.

Keys (each under ``NAME:`` too when the URL says ``?prefix=NAME``, as the
broker's: drivers/redis.py):

``ttg:s:{sweep}``      hash: ``record`` (JSON), ``state``, ``created``, ``updated``
                       and the exact counters ``ok``, ``error``, ``crashed``, ``timeout``.
``ttg:sweeps``         zset sweep -> created time.
``ttg:r:{sweep}``      zset of committed ranges, member ``start:stop`` scored by start.
``ttg:d:{sweep}``      hash start -> the chunk's records blob (core/records.py).
``ttg:fail:{sweep}``   zset of committed ranges that hold failed records.
``ttg:workers``        worker presence (``RedisPresence``): hash worker id -> its
                       newest beat as JSON (stores/presence.py).
``ttg:workers:beat``   zset worker id -> the time of that beat; beats older than a
                       day leave both keys when a beat is written (one script).

A commit is one Lua script: it looks up the committed range with the largest
start below the new stop; the new range overlaps something exactly when that
range ends after the new start (committed ranges are disjoint). It then either
refuses the commit or stores the blob, the range and the counters together:
first commit wins, atomically, however many workers race.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ..core.records import STATUSES, ChunkRecords
from ..core.sweep import Sweep
from ..drivers.redis import Keyspace
from ..errors import StoreUnavailable
from .base import Progress, ResultStore, SweepInfo
from .presence import PRUNE_SECONDS, PresenceStore, WorkerBeat

_INSERT = """
local function insert(sweep, start, stop, blob, failed, ok, err, crashed, timeout)
  local member = start .. ':' .. stop
  redis.call('ZADD', 'ttg:r:' .. sweep, start, member)
  redis.call('HSET', 'ttg:d:' .. sweep, start, blob)
  if tonumber(failed) > 0 then redis.call('ZADD', 'ttg:fail:' .. sweep, start, member) end
  local h = 'ttg:s:' .. sweep
  redis.call('HINCRBY', h, 'ok', ok)
  redis.call('HINCRBY', h, 'error', err)
  redis.call('HINCRBY', h, 'crashed', crashed)
  redis.call('HINCRBY', h, 'timeout', timeout)
end
"""

_COMMIT = _INSERT + """
-- ARGV: sweep, start, stop, blob, n_failed, ok, error, crashed, timeout, now
local last = redis.call('ZREVRANGEBYSCORE', 'ttg:r:' .. ARGV[1], '(' .. ARGV[3], '-inf', 'LIMIT', 0, 1)
if #last > 0 then
  local stop = tonumber(string.match(last[1], ':(%d+)$'))
  if stop > tonumber(ARGV[2]) then return 0 end
end
insert(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
redis.call('HSET', 'ttg:s:' .. ARGV[1], 'updated', ARGV[10])
return 1
"""

_REPLACE = _INSERT + """
-- ARGV: sweep, old start, old stop, -ok, -error, -crashed, -timeout, now, then
--       (start, stop, blob, n_failed, ok, error, crashed, timeout) per new chunk
local sweep = ARGV[1]
local member = ARGV[2] .. ':' .. ARGV[3]
if redis.call('ZREM', 'ttg:r:' .. sweep, member) == 0 then return 0 end
redis.call('ZREM', 'ttg:fail:' .. sweep, member)
redis.call('HDEL', 'ttg:d:' .. sweep, ARGV[2])
local h = 'ttg:s:' .. sweep
redis.call('HINCRBY', h, 'ok', ARGV[4])
redis.call('HINCRBY', h, 'error', ARGV[5])
redis.call('HINCRBY', h, 'crashed', ARGV[6])
redis.call('HINCRBY', h, 'timeout', ARGV[7])
redis.call('HSET', h, 'updated', ARGV[8])
for i = 9, #ARGV, 8 do
  insert(sweep, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
         ARGV[i + 6], ARGV[i + 7])
end
return 1
"""


_BEAT = """
-- ARGV: worker id, beat JSON, beat time, prune before
redis.call('HSET', 'ttg:workers', ARGV[1], ARGV[2])
redis.call('ZADD', 'ttg:workers:beat', ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', 'ttg:workers:beat', '-inf', '(' .. ARGV[4])
if #old > 0 then
  redis.call('HDEL', 'ttg:workers', unpack(old))
  redis.call('ZREM', 'ttg:workers:beat', unpack(old))
end
return #old
"""


class RedisStore(ResultStore):
    concurrent_commit = True  # the driver releases the GIL while the server works

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Keyspace(url, StoreUnavailable)
        self.r, self.ns, self._do = self.db.r, self.db.ns, self.db.do
        self._commit = self.db.script(_COMMIT)
        self._replace_script = self.db.script(_REPLACE)

    def _save_sweep(self, sweep: Sweep, *, created: bool) -> None:
        def save() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.hset(f"{self.ns}s:{sweep.id}", mapping={"record": json.dumps(sweep.to_record()),
                                                    "state": "active", "updated": time.time()})
            pipe.hsetnx(f"{self.ns}s:{sweep.id}", "created", sweep.created)
            pipe.zadd(f"{self.ns}sweeps", {sweep.id: sweep.created}, nx=True)
            pipe.execute()

        self._do(save)

    def find(self, sweep_id: str) -> Sweep | None:
        raw = self._do(lambda: self.r.hget(f"{self.ns}s:{sweep_id}", "record"))
        return Sweep.from_record(json.loads(raw)) if raw else None

    def sweeps(self) -> list[SweepInfo]:
        ids = [i.decode() for i in self._do(lambda: self.r.zrevrange(f"{self.ns}sweeps", 0, -1))]
        out = []
        for sweep_id in ids:
            h = self._hash(sweep_id)
            if b"record" not in h:
                continue
            sweep = Sweep.from_record(json.loads(h[b"record"]))
            out.append(SweepInfo(sweep, h[b"state"].decode(), _progress(sweep.total, h),
                                 float(h.get(b"updated", 0))))
        return out

    def state(self, sweep_id: str) -> str:
        self.sweep(sweep_id)
        return str(self._do(lambda: self.r.hget(f"{self.ns}s:{sweep_id}", "state")).decode())

    def delete(self, sweep_id: str) -> int:
        n = self.progress(sweep_id).done if self.find(sweep_id) is not None else 0
        keys = [f"{self.ns}{k}:{sweep_id}" for k in ("s", "r", "d", "fail")]

        def delete() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(*keys)
            pipe.zrem(f"{self.ns}sweeps", sweep_id)
            pipe.execute()

        self._do(delete)
        return n

    def set_state(self, sweep_id: str, state: str) -> None:
        now = time.time()
        self._do(lambda: self.r.hset(f"{self.ns}s:{sweep_id}", mapping={"state": state, "updated": now}))

    def commit(self, sweep_id: str, records: ChunkRecords) -> bool:
        counts = records.counts()
        failed = len(records) - counts.get("ok", 0)
        args: list[Any] = [sweep_id, records.start, records.stop, records.encode(), failed,
                           *(counts.get(k, 0) for k in STATUSES), time.time()]
        return bool(self._do(lambda: self._commit(keys=[], args=args)))

    def committed_ranges(self, sweep_id: str, start: int, stop: int) -> list[tuple[int, int]]:
        def read() -> list[bytes]:
            pipe = self.r.pipeline(transaction=False)
            pipe.zrevrangebyscore(f"{self.ns}r:{sweep_id}", f"({start}", "-inf", start=0, num=1)
            pipe.zrangebyscore(f"{self.ns}r:{sweep_id}", start, f"({stop}")
            before, inside = pipe.execute()
            return [*before, *inside]

        out = []
        for member in self._do(read):
            a, b = _range(member)
            if b > start and a < stop:
                out.append((a, b))
        return out

    def progress(self, sweep_id: str) -> Progress:
        sweep = self.sweep(sweep_id)
        return _progress(sweep.total, self._hash(sweep_id))

    def _hash(self, sweep_id: str) -> dict[bytes, bytes]:
        h: dict[bytes, bytes] = self._do(lambda: self.r.hgetall(f"{self.ns}s:{sweep_id}"))
        return h

    def chunks(self, sweep_id: str, *, failed_only: bool = False) -> Iterator[ChunkRecords]:
        index = f"{self.ns}fail:{sweep_id}" if failed_only else f"{self.ns}r:{sweep_id}"
        at = "-inf"
        while True:  # pages of 64 chunks: memory stays proportional to a page
            page = self._page(sweep_id, index, at)
            if not page:
                return
            for (a, b), blob in page:
                if blob is not None:
                    yield ChunkRecords.decode(a, b, blob)
            at = f"({page[-1][0][0]}"

    def _page(self, sweep_id: str, index: str, at: str) -> list[tuple[tuple[int, int], bytes | None]]:
        def read() -> list[tuple[tuple[int, int], bytes | None]]:
            members: list[bytes] = self.r.zrangebyscore(index, at, "+inf", start=0, num=64)  # type: ignore[assignment]
            ranges = [_range(m) for m in members]
            blobs: list[bytes | None] = (self.r.hmget(f"{self.ns}d:{sweep_id}", [a for a, _ in ranges])  # type: ignore[assignment]
                                         if ranges else [])
            return list(zip(ranges, blobs, strict=True))

        page: list[tuple[tuple[int, int], bytes | None]] = self._do(read)
        return page

    def _replace(self, sweep_id: str, old: ChunkRecords, new: list[ChunkRecords]) -> bool:
        c = old.counts()
        args: list[Any] = [sweep_id, old.start, old.stop, *(-c.get(k, 0) for k in STATUSES), time.time()]
        for rec in new:
            n = rec.counts()
            args += [rec.start, rec.stop, rec.encode(), len(rec) - n.get("ok", 0),
                     *(n.get(k, 0) for k in STATUSES)]
        return bool(self._do(lambda: self._replace_script(keys=[], args=args)))

    def close(self) -> None:
        self.r.close()


class RedisPresence(PresenceStore):
    """Worker beats in the store's Redis (keys ``ttg:workers``, ``ttg:workers:beat``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Keyspace(url, StoreUnavailable)
        self.r, self.ns, self._do = self.db.r, self.db.ns, self.db.do
        self._beat = self.db.script(_BEAT)

    def beat(self, info: WorkerBeat) -> None:
        args = [info.worker, info.to_json(), repr(info.beat), repr(info.beat - PRUNE_SECONDS)]
        self._do(lambda: self._beat(keys=[], args=args))

    def workers(self) -> list[WorkerBeat]:
        raw: dict[bytes, bytes] = self._do(lambda: self.r.hgetall(f"{self.ns}workers"))
        beats = [WorkerBeat.from_json(v) for v in raw.values()]
        return sorted(beats, key=lambda b: (-b.beat, b.worker))

    def close(self) -> None:
        self.r.close()


def _range(member: bytes) -> tuple[int, int]:
    a, _, b = member.partition(b":")
    return int(a), int(b)


def _progress(total: int, h: dict[bytes, bytes]) -> Progress:
    return Progress(total, *(int(h.get(k.encode(), 0)) for k in STATUSES))
