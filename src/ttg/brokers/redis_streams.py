"""The Redis Streams broker: chunks in one stream per sweep, leased through a
consumer group; for workers on many machines.

Keys (one Redis instance, not Cluster: the lease script walks sweeps), each
under ``NAME:`` too when the URL says ``?prefix=NAME`` (drivers/redis.py):

``ttg:q:{sweep}``     stream of queued and leased chunks; fields ``s`` start,
                      ``e`` stop, ``b`` message body, ``f`` failed attempts,
                      ``l`` last failure (JSON), ``p`` priority. Consumer group
                      ``w``. A lease is a pending entry owned by the worker's
                      consumer; its idle time is the time since its last
                      heartbeat (XCLAIM resets it). An acked chunk is XDELed,
                      so memory does not grow with the sweep.
``ttg:k:{sweep}``     set of ``start:stop`` of live chunks: submit adds nothing twice.
``ttg:x:{sweep}``     hash entry id -> leases lost on it (expired and reclaimed),
                      added to ``f`` when the chunk is next released.
``ttg:dl:{sweep}``    zset of released-with-delay chunks (msgpack), scored by
                      the time (ms) they are ready again.
``ttg:dead:{sweep}``  list of dead letters (JSON: start, stop, reason, at).
``ttg:active``        zset sweep -> priority: the sweeps a lease looks at.
``ttg:all``           set of every sweep submitted (for stats).
``ttg:cancelled``     set of cancelled sweeps.
``ttg:wake``          stream (capped at ~100 entries) with an entry per submit and
                      release: idle workers block on it (XREAD) instead of polling.

Every step that reads then writes is one Lua script, so it is atomic. An
expired lease is reclaimed with XAUTOCLAIM (min idle time = the lease period)
by whichever live worker leases next, and counts as a failed attempt.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

from ..core.chunking import Chunk
from ..core.clock import SYSTEM, Clock
from ..core.codec import Codec, pack
from ..core.retry import Failure
from ..drivers.redis import Keyspace
from ..errors import BrokerUnavailable, LeaseLost
from ..settings import Settings
from .base import BrokerBackend, DeadLetter, Lease, QueueStats

log = logging.getLogger(__name__)

_OWNED = """
local function owned(q, id, consumer)
  if redis.call('EXISTS', q) == 0 then return false end
  local p = redis.call('XPENDING', q, 'w', id, id, 1)
  return #p > 0 and p[1][2] == consumer
end
local function field(flat, name)
  for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
  return nil
end
"""

# tell the workers blocked on ttg:wake (in ``lease``) that a chunk is ready
_WAKE = "redis.call('XADD', 'ttg:wake', 'MAXLEN', '~', 100, '*', 's', 1)"

_SUBMIT = """
-- KEYS: q, keyset, active, cancelled, all; ARGV: sweep, priority, (start, stop, body)...
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], 'w', '0', 'MKSTREAM')
end
local n = 0
for i = 3, #ARGV, 3 do
  if redis.call('SADD', KEYS[2], ARGV[i] .. ':' .. ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[1], '*', 's', ARGV[i], 'e', ARGV[i + 1], 'b', ARGV[i + 2],
               'f', 0, 'l', '', 'p', ARGV[2])
    n = n + 1
  end
end
if n > 0 then """ + _WAKE + """ end
return n
"""

_LEASE_FN = """
-- Lease one chunk: a reclaimed expired lease first, else a new entry. Returns
-- {sweep, id, fields, lost}, or {wake id} when there is none: the newest entry of
-- ttg:wake, to block on for the next submit or release.
local function lease(consumer, idle, only, skipped)
  local skip = {}
  for _, sw in ipairs(cmsgpack.unpack(skipped)) do skip[sw] = true end
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local sweeps
  if only ~= '' then sweeps = {only} else sweeps = redis.call('ZREVRANGE', 'ttg:active', 0, -1) end
  for _, sw in ipairs(sweeps) do
    if not skip[sw] then  -- (Lua 5.1: no continue)
      local q = 'ttg:q:' .. sw
      for _, m in ipairs(redis.call('ZRANGEBYSCORE', 'ttg:dl:' .. sw, '-inf', now, 'LIMIT', 0, 100)) do
        local e = cmsgpack.unpack(m)
        redis.call('ZREM', 'ttg:dl:' .. sw, m)
        redis.call('XADD', q, '*', 's', e[1], 'e', e[2], 'b', e[3], 'f', e[4], 'l', e[5], 'p', e[6])
      end
      if redis.call('EXISTS', q) == 1 then
        local got = redis.call('XAUTOCLAIM', q, 'w', consumer, idle, '0-0', 'COUNT', 1)
        if #got[2] > 0 then
          local id = got[2][1][1]
          local lost = redis.call('HINCRBY', 'ttg:x:' .. sw, id, 1)
          return {sw, id, got[2][1][2], lost}
        end
        local r = redis.call('XREADGROUP', 'GROUP', 'w', consumer, 'COUNT', 1, 'STREAMS', q, '>')
        if r and #r[1][2] > 0 then
          return {sw, r[1][2][1][1], r[1][2][1][2], 0}
        end
      end
    end
  end
  local w = redis.call('XREVRANGE', 'ttg:wake', '+', '-', 'COUNT', 1)
  if #w > 0 then return {w[1][1]} end
  return {'0-0'}
end
"""

_LEASE = _LEASE_FN + """
-- ARGV: consumer, min idle ms, only this sweep ('' for any), sweeps to skip (msgpack array)
return lease(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

_EXTEND = _OWNED + """
-- KEYS: q; ARGV: id, consumer
if not owned(KEYS[1], ARGV[1], ARGV[2]) then return 0 end
redis.call('XCLAIM', KEYS[1], 'w', ARGV[2], 0, ARGV[1], 'JUSTID')
return 1
"""

_FINISH_FN = _OWNED + """
-- ack, release or dead-letter, only by the owner.
-- K: q, keyset, x, dl, dead, active, cancelled
-- A: id, consumer, sweep, mode ('ack'|'release'|'dead'), failed (0|1), failure JSON,
--    delay ms, dead-letter JSON
local function finish(K, A)
  local q, id = K[1], A[1]
  if not owned(q, id, A[2]) then return 0 end
  local entry = redis.call('XRANGE', q, id, id)[1][2]
  local s, e = field(entry, 's'), field(entry, 'e')
  local lost = tonumber(redis.call('HGET', K[3], id) or '0')
  redis.call('XACK', q, 'w', id)
  redis.call('XDEL', q, id)
  redis.call('HDEL', K[3], id)
  local mode = A[4]
  if mode == 'release' and redis.call('SISMEMBER', K[7], A[3]) == 0 then
    local f = tonumber(field(entry, 'f')) + lost + tonumber(A[5])
    local l = field(entry, 'l')
    if A[5] == '1' then l = A[6]
    elseif lost > 0 then
      l = cjson.encode({kind = 'lost', reason = 'the lease expired: its worker died, hung or was cut off'})
    end
    local b, p = field(entry, 'b'), field(entry, 'p')
    if tonumber(A[7]) > 0 then
      local t = redis.call('TIME')
      local ready = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(A[7])
      redis.call('ZADD', K[4], ready, cmsgpack.pack({s, e, b, f, l, p, id}))
    else
      redis.call('XADD', q, '*', 's', s, 'e', e, 'b', b, 'f', f, 'l', l, 'p', p)
      """ + _WAKE + """
    end
    return 1
  end
  redis.call('SREM', K[2], s .. ':' .. e)
  if mode == 'dead' then redis.call('RPUSH', K[5], A[8]) end
  if redis.call('SCARD', K[2]) == 0 then redis.call('ZREM', K[6], A[3]) end
  return 1
end
"""

_FINISH = _FINISH_FN + "return finish(KEYS, ARGV)"

# ack one chunk and lease the next in one round trip; ARGV: finish's 8, then lease's 4
_ACK_LEASE = _FINISH_FN + _LEASE_FN + """
finish(KEYS, ARGV)
return lease(ARGV[9], ARGV[10], ARGV[11], ARGV[12])
"""

_CANCEL = """
-- KEYS: q, keyset, x, dl, active, cancelled; ARGV: sweep
redis.call('SADD', KEYS[6], ARGV[1])
local n = redis.call('SCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return n
"""


_GLOBAL = ("active", "all", "cancelled", "wake")


class RedisBroker(BrokerBackend):
    def __init__(self, url: str, lease_seconds: float = 10.0, poll_seconds: float = 0.05,
                 clock: Clock = SYSTEM) -> None:
        super().__init__(lease_seconds, clock)
        self.url = url
        self.poll_seconds = poll_seconds
        self.db = Keyspace(url, BrokerUnavailable)
        self.r, self.ns, self._do = self.db.r, self.db.ns, self.db.do
        script = self.db.script
        self._submit = script(_SUBMIT)
        self._lease = script(_LEASE)
        self._extend = script(_EXTEND)
        self._finish = script(_FINISH)
        self._ack_lease = script(_ACK_LEASE)
        self._cancel = script(_CANCEL)

    @classmethod
    def from_url(cls, url: str, settings: Settings, clock: Clock = SYSTEM) -> RedisBroker:
        return cls(url, settings.lease_seconds, poll_seconds=settings.poll_seconds, clock=clock)

    def submit(self, sweep_id: str, items: Iterable[tuple[Chunk, bytes]], *, priority: int = 0) -> int:
        args: list[Any] = [sweep_id, priority]
        for chunk, body in items:
            args += [chunk.start, chunk.stop, body]
        keys = self._keys(sweep_id, "q", "k", "active", "cancelled", "all")
        return int(self._call(self._submit, keys, args))

    def lease(self, worker_id: str, *, timeout: float, sweep_id: str | None = None,
              skip: Collection[str] = ()) -> Lease | None:
        """Try; when nothing is ready, block on ``ttg:wake`` (XREAD, no polling) until
        a submit or release, at most ``poll_seconds`` at a time, since expired
        leases and delayed chunks become ready without anyone writing."""
        idle_ms = int(self.lease_seconds * 1000)
        end = time.monotonic() + timeout
        args = [worker_id, idle_ms, sweep_id or "", pack(sorted(skip))]
        while True:
            got = self._lease_reply(worker_id, self._call(self._lease, [], args))
            if isinstance(got, Lease):
                return got
            if got is None:  # an unreadable entry, set aside: try again
                continue
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._wait(got, max(1, int(min(left, self.poll_seconds) * 1000)))

    def _wait(self, wake_id: bytes, block_ms: int) -> None:
        self._do(lambda: self.r.xread({f"{self.ns}wake": wake_id}, count=1, block=block_ms))

    def ack_and_lease(self, done: Lease, worker_id: str, *, sweep_id: str | None = None,
                      skip: Collection[str] = ()) -> Lease | None:
        keys, args = self._finish_args(done, "ack")
        args += [worker_id, int(self.lease_seconds * 1000), sweep_id or "", pack(sorted(skip))]
        got = self._lease_reply(worker_id, self._call(self._ack_lease, keys, args))
        return got if isinstance(got, Lease) else None

    def _lease_reply(self, worker_id: str, got: list[Any]) -> Lease | bytes | None:
        """The lease script's reply as a Lease, or the wake id to block on; None when
        the entry it leased could not be read (set aside)."""
        if len(got) == 1:
            return bytes(got[0])
        sweep, entry_id, flat, lost = got
        f = dict(zip(flat[::2], flat[1::2], strict=True))
        try:
            last = f.get(b"l") or b""
            failure = Failure.from_dict(json.loads(last)) if last else None
            if int(lost):
                failure = Failure("lost", "the lease expired: its worker died, hung or was cut off")
            failures = int(f[b"f"]) + int(lost)
            lease = Lease(sweep.decode(), Chunk(int(f[b"s"]), int(f[b"e"])), f[b"b"],
                          f"{entry_id.decode()}|{worker_id}", self.clock.monotonic() + self.lease_seconds,
                          failures, failure, int(f[b"p"]), fresh=failures == 0)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            self._set_aside(sweep.decode(), entry_id, f, exc)
            return None
        return lease

    def _set_aside(self, sweep: str, entry_id: bytes, f: dict[bytes, bytes], exc: Exception) -> None:
        """An entry whose fields cannot be read (edited by hand, or by an attacker)
        never runs: it leaves the queue for the dead letters, named by the chunk its
        message says it is (unverified: only a name), so that ``ttg retry`` can
        queue that chunk again."""
        try:
            told = Codec().decode(f[b"b"])
            chunk: Chunk | None = Chunk(int(told["start"]), int(told["stop"]))
        except Exception:  # any garbage: the chunk is unknown
            chunk = None
        reason = f"an unreadable broker record ({type(exc).__name__}: {exc}); set aside, never run"
        log.error("%s %s: %s", sweep, chunk or "(chunk unknown)", reason)
        raw = f"{f.get(b's', b'').decode(errors='replace')}:{f.get(b'e', b'').decode(errors='replace')}"
        members = {raw} | ({f"{chunk.start}:{chunk.stop}"} if chunk else set())

        def set_aside() -> None:
            pipe = self.r.pipeline(transaction=True)
            pipe.xack(self._q(sweep), "w", entry_id)
            pipe.xdel(self._q(sweep), entry_id)
            pipe.srem(f"{self.ns}k:{sweep}", *members)
            if chunk is not None:
                pipe.rpush(f"{self.ns}dead:{sweep}", json.dumps(
                    {"start": chunk.start, "stop": chunk.stop, "reason": reason, "at": self.clock.time()}))
            pipe.execute()

        self._do(set_aside)

    def extend(self, lease: Lease) -> Lease:
        entry_id, consumer = _token(lease)
        if not self._call(self._extend, [self._q(lease.sweep_id)], [entry_id, consumer]):
            raise LeaseLost(f"lease on {lease.sweep_id} {lease.chunk} was lost; another worker has "
                            "the chunk (or it was acked or cancelled).")
        return replace(lease, deadline=self.clock.monotonic() + self.lease_seconds)

    def _finish_lease(self, lease: Lease, mode: str, failure: Failure | None = None, delay: float = 0.0,
                      reason: str = "") -> None:
        self._call(self._finish, *self._finish_args(lease, mode, failure, delay, reason))

    def _finish_args(self, lease: Lease, mode: str, failure: Failure | None = None, delay: float = 0.0,
                     reason: str = "") -> tuple[list[Any], list[Any]]:
        entry_id, consumer = _token(lease)
        s = lease.sweep_id
        keys = self._keys(s, "q", "k", "x", "dl", "dead", "active", "cancelled")
        dead = json.dumps({"start": lease.chunk.start, "stop": lease.chunk.stop, "reason": reason,
                           "at": self.clock.time()}) if mode == "dead" else ""
        args: list[Any] = [entry_id, consumer, s, mode, 1 if failure else 0,
                           json.dumps(failure.to_dict()) if failure else "", int(delay * 1000), dead]
        return keys, args

    def ack(self, lease: Lease) -> None:
        self._finish_lease(lease, "ack")

    def release(self, lease: Lease, *, failure: Failure | None = None, delay: float = 0.0) -> None:
        self._finish_lease(lease, "release", failure, delay)

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self._finish_lease(lease, "dead", reason=reason)

    def dead_letters(self, sweep_id: str) -> list[DeadLetter]:
        rows = self._do(lambda: self.r.lrange(f"{self.ns}dead:{sweep_id}", 0, -1))
        out = []
        for raw in rows:
            d = json.loads(raw)
            out.append(DeadLetter(sweep_id, Chunk(d["start"], d["stop"]), d["reason"], d["at"]))
        return out

    def stats(self, sweep_id: str | None = None) -> QueueStats:
        sweeps = [sweep_id] if sweep_id else sorted(s.decode() for s in self._do(
            lambda: self.r.smembers(f"{self.ns}all")))
        queued = leased = dead = 0
        for s in sweeps:
            def read(s: str = s) -> list[Any]:
                pipe = self.r.pipeline(transaction=False)
                pipe.xlen(self._q(s))
                pipe.exists(self._q(s))
                pipe.zcard(f"{self.ns}dl:{s}")
                pipe.llen(f"{self.ns}dead:{s}")
                out: list[Any] = pipe.execute()
                pending = self.r.xpending(self._q(s), "w")["pending"] if out[1] else 0
                return [*out, pending]

            length, _, delayed, d, pending = self._do(read)
            queued += length - pending + delayed
            leased += pending
            dead += d
        return QueueStats(queued, leased, dead)

    def cancel(self, sweep_id: str) -> int:
        s = sweep_id
        keys = self._keys(s, "q", "k", "x", "dl", "active", "cancelled")
        return int(self._call(self._cancel, keys, [s]))

    def close(self) -> None:
        self.r.close()

    def _call(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        return self._do(lambda: script(keys=keys, args=args))

    def _q(self, sweep_id: str) -> str:
        return f"{self.ns}q:{sweep_id}"

    def _keys(self, sweep_id: str, *names: str) -> list[Any]:
        """The keys a script is given: per sweep (``q``, ``k``, ...) or global
        (``active``, ``cancelled``, ``all``), in this broker's key space."""
        return [f"{self.ns}{n}" if n in _GLOBAL else f"{self.ns}{n}:{sweep_id}" for n in names]


def _token(lease: Lease) -> tuple[str, str]:
    entry_id, _, consumer = lease.token.partition("|")
    return entry_id, consumer
