"""Worker presence in PostgreSQL (stores/presence.py).

Table ``ttg_workers`` (schema.py): one row per worker supervisor, ``id``
(primary key, host-pid), ``host``, ``pid``, ``state``, ``started``, ``beat``
(epoch seconds, the worker's clock), ``interval``, ``children``, ``chunks``,
``leases`` (jsonb ``[[sweep, start, stop], ...]``), ``refusing`` (jsonb
``[[sweep, reason], ...]``), ``worked`` (jsonb ``[[sweep, chunks], ...]``); rows
whose beat is older
than a day are deleted when a beat is written, in the same statement.
"""

from __future__ import annotations

import json

from ..presence import PRUNE_SECONDS, PresenceStore, WorkerBeat
from .conn import Session

_BEAT = """
WITH pruned AS (DELETE FROM ttg_workers WHERE beat < %(before)s AND id <> %(id)s)
INSERT INTO ttg_workers (id, host, pid, state, started, beat, interval, children, chunks, leases, refusing,
                         worked)
VALUES (%(id)s, %(host)s, %(pid)s, %(state)s, %(started)s, %(beat)s, %(interval)s, %(children)s,
        %(chunks)s, %(leases)s::jsonb, %(refusing)s::jsonb, %(worked)s::jsonb)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, state = excluded.state,
    started = excluded.started, beat = excluded.beat, interval = excluded.interval,
    children = excluded.children, chunks = excluded.chunks, leases = excluded.leases,
    refusing = excluded.refusing, worked = excluded.worked
"""


class PostgresPresence(PresenceStore):
    def __init__(self, url: str) -> None:
        self.session = Session(url)
        self._run = self.session.run

    def beat(self, info: WorkerBeat) -> None:
        params = {"id": info.worker, "host": info.host, "pid": info.pid, "state": info.state,
                  "started": info.started, "beat": info.beat, "interval": info.interval,
                  "children": info.children, "chunks": info.chunks,
                  "leases": json.dumps([list(x) for x in info.leases]),
                  "refusing": json.dumps([list(x) for x in info.refusing]),
                  "worked": json.dumps([list(x) for x in info.worked]),
                  "before": info.beat - PRUNE_SECONDS}
        self._run(lambda db: db.execute(_BEAT, params))

    def workers(self) -> list[WorkerBeat]:
        rows = self._run(lambda db: db.execute(
            "SELECT id, host, pid, started, beat, interval, children, chunks, leases, state, refusing, "
            "worked "
            "FROM ttg_workers ORDER BY beat DESC, id COLLATE \"C\"").fetchall())
        return [WorkerBeat(str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4]), float(r[5]), int(r[6]),
                           int(r[7]), tuple((str(s), int(a), int(b)) for s, a, b in r[8]), str(r[9]),
                           tuple((str(s), str(w)) for s, w in r[10]),
                           tuple((str(s), int(n)) for s, n in r[11]))
                for r in rows]

    def close(self) -> None:
        self.session.close()
