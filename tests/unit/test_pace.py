"""worker/pace.py: when a supervisor stops leasing ahead (chunks are long) and starts again."""

from __future__ import annotations

from ttg.worker.pace import LONG_SECONDS, RECENT, Pace


def test_short_chunks_are_leased_ahead() -> None:
    pace = Pace()
    assert not pace.update([])
    for _ in range(3 * RECENT):
        pace.computed(0.01)
        assert not pace.update([0.005, 0.0])
    assert not pace.long


def test_a_chunk_running_long_switches_at_once_without_waiting_for_it_to_end() -> None:
    pace = Pace()
    for _ in range(RECENT):
        pace.computed(0.01)
    assert not pace.update([LONG_SECONDS * 0.99])
    assert pace.update([0.2, LONG_SECONDS]) and pace.long
    assert not pace.update([LONG_SECONDS * 5])  # no change: stays long


def test_back_to_short_only_when_the_recent_median_is_under_half() -> None:
    pace = Pace()
    for _ in range(RECENT):
        pace.computed(LONG_SECONDS * 2)
    assert pace.update([]) and pace.long
    for _ in range(RECENT):  # in between: no flapping either way
        pace.computed(LONG_SECONDS * 0.7)
        assert not pace.update([0.1]) and pace.long
    for k in range(RECENT):
        pace.computed(LONG_SECONDS * 0.1)
        changed = pace.update([0.01])
        # under half once half of the last RECENT are short: their median is then (0.1 + 0.7) / 2
        assert changed == (k == RECENT // 2 - 1) and pace.long == (k < RECENT // 2 - 1)
