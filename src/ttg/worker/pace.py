"""How long chunks take: short chunks are leased ahead, long ones are not.

Leasing ahead hides the broker's round trip between two short chunks: a child
gets its next chunk while it computes the current one (proxy.py), and
on RabbitMQ the supervisor consumes with a prefetch of four chunks per child.
With long chunks that saves nothing that counts (a lease costs milliseconds)
and costs a lot: chunks that wait unstarted at one worker cannot go to another
one that is idle, and at the end of a sweep that can add two chunk lengths.

So from ``LONG_SECONDS`` on, leases are taken one at a time, when a child asks
for work: a child no longer asks ahead once its last chunk took that long, and
the supervisor stops its RabbitMQ consumers (giving back, uncounted, what they
were pushed) as soon as one of its children has computed a chunk for that long,
and until the chunks computed lately are short again (their median under half
of it).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable

#: a chunk computed for this long (seconds) or longer is long
LONG_SECONDS = 1.0
#: how many of the latest computed chunks decide that chunks are short again
RECENT = 8


class Pace:
    """A supervisor's view of how long its children's chunks take."""

    def __init__(self) -> None:
        self.long = False
        self._recent: deque[float] = deque(maxlen=RECENT)
        #: the median of ``_recent`` (the supervisor asks every step, chunks end less often)
        self._typical = 0.0

    def computed(self, seconds: float) -> None:
        """A child finished computing a chunk it started ``seconds`` ago."""
        self._recent.append(seconds)
        self._typical = statistics.median(self._recent)

    def update(self, running: Iterable[float]) -> bool:
        """Decide from the chunks computed lately and those being computed
        (``running``: for how long each has run); True when the answer changed."""
        was = self.long
        typical = self._typical
        if typical >= LONG_SECONDS or any(r >= LONG_SECONDS for r in running):
            self.long = True
        elif typical < LONG_SECONDS / 2:
            self.long = False
        return self.long != was
