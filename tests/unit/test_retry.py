"""The retry policy: run again, split, or record the single poison index."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttg.core.chunking import Chunk
from ttg.core.retry import Failure, Isolated, Run, SetAside, Split, decide

CRASH = Failure("crashed", "the process died with SIGSEGV", None)


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_runs_again_below_max_attempts(failures: int) -> None:
    assert decide(Chunk(0, 100), failures, 3, CRASH) == Run()


def test_runs_when_the_failure_is_unknown() -> None:
    assert decide(Chunk(0, 100), 5, 3, None) == Run()
    assert decide(Chunk(0, 1), 5, 3, None) == Run()


def test_splits_in_halves_without_a_culprit() -> None:
    assert decide(Chunk(0, 100), 3, 3, CRASH) == Split([Chunk(0, 50), Chunk(50, 100)])


def test_splits_around_the_culprit() -> None:
    last = Failure("crashed", "SIGSEGV", index=42)
    assert decide(Chunk(0, 100), 3, 3, last) == Split([Chunk(0, 42), Chunk(42, 43), Chunk(43, 100)])


def test_a_culprit_outside_the_chunk_is_ignored() -> None:
    last = Failure("crashed", "SIGSEGV", index=500)
    assert decide(Chunk(0, 100), 3, 3, last) == Split([Chunk(0, 50), Chunk(50, 100)])


@pytest.mark.parametrize(("kind", "status"), [("crashed", "crashed"), ("timeout", "timeout")])
def test_a_single_failing_index_is_isolated(kind: str, status: str) -> None:
    decision = decide(Chunk(13, 14), 3, 3, Failure(kind, "killed after 5 s", 13))
    assert decision == Isolated(status, "killed after 5 s (after 3 attempts)")


@pytest.mark.parametrize("signed", [None, 0, 3])
def test_a_lapsed_lease_is_never_recorded_against_an_index(signed: int | None) -> None:
    """Its worker vanished or lost its connection: nobody saw the index fail. It runs
    again; after many such losses it is set aside (no record) for `ttg retry`."""
    lost = Failure("lost", "the lease expired: its worker died, hung or was cut off")
    for failures in range(3, 9):
        assert decide(Chunk(13, 14), failures, 3, lost, signed) == Run()
    aside = decide(Chunk(13, 14), 9, 3, lost, signed)
    assert isinstance(aside, SetAside) and "its worker vanished 9 times" in aside.reason
    assert isinstance(decide(Chunk(0, 10), 3, 3, lost, signed), Split)  # (cuts move; no record)


def test_max_attempts_one_splits_at_once() -> None:
    assert isinstance(decide(Chunk(0, 2), 1, 1, CRASH), Split)
    assert decide(Chunk(0, 2), 0, 1, CRASH) == Run()


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 300), st.integers(1, 5), st.data())
def test_repeated_decisions_isolate_the_poison_index(start: int, n: int, max_attempts: int,
                                                     data: st.DataObject) -> None:
    """Failing every attempt on the pieces that hold the poison index ends with it isolated."""
    poison = data.draw(st.integers(start, start + n - 1))
    known = data.draw(st.booleans())
    chunk = Chunk(start, start + n)
    for _ in range(2 * n.bit_length() + 3):
        last = Failure("timeout", "hung", poison if known else None)
        decision = decide(chunk, max_attempts, max_attempts, last)
        if isinstance(decision, Isolated):
            assert chunk == Chunk(poison, poison + 1)
            assert decision.status == "timeout"
            return
        assert isinstance(decision, Split)
        assert sum(len(p) for p in decision.pieces) == len(chunk)
        chunk = next(p for p in decision.pieces if p.start <= poison < p.stop)
    raise AssertionError("the poison index was never isolated")


def test_failure_dict_round_trip() -> None:
    for f in [CRASH, Failure("timeout", "t", 7), Failure("lost", "", 0)]:
        assert Failure.from_dict(f.to_dict()) == f
    assert Failure.from_dict(None) is None
    assert Failure.from_dict({}) is None
    assert Failure.from_dict({"reason": "x", "index": "7"}) == Failure("crashed", "x", None)


# -- with signing: only a signed history becomes a final record (issue 14, item 3) -------------


def test_with_signing_an_unsigned_history_never_isolates() -> None:
    forged = Failure("timeout", "forged by attacker", 13)
    assert decide(Chunk(13, 14), 3, 3, forged, signed=0) == Run()  # run it: the point may well be fine
    assert decide(Chunk(13, 14), 3, 3, forged, signed=2) == Run()
    set_aside = decide(Chunk(13, 14), 9, 3, forged, signed=0)
    assert isinstance(set_aside, SetAside) and "0 of them signed" in set_aside.reason


def test_with_signing_a_signed_history_isolates() -> None:
    crash = Failure("crashed", "the process was killed by SIGSEGV at index 13", 13)
    assert decide(Chunk(13, 14), 3, 3, crash, signed=3) == Isolated(
        "crashed", "the process was killed by SIGSEGV at index 13 (after 3 attempts)")


def test_with_signing_chunks_still_split_on_any_history() -> None:
    """Splitting only moves chunk boundaries: a forged history costs nothing there."""
    assert isinstance(decide(Chunk(0, 10), 3, 3, Failure("lost", "x"), signed=0), Split)
