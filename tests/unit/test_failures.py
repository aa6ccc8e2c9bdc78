"""A sweep's failure policy (core/failures.py): which exceptions are tried again,
how long it waits, how its options are checked, and when its failures stop it."""

from __future__ import annotations

import mmap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttg.core.failures import Retries, failure_limit, parse_max_failures, stopped_reason
from ttg.core.sweep import Options
from ttg.errors import ConfigError


class Mine(ConnectionError):
    pass


@pytest.mark.parametrize(("retry_on", "exc", "tried"), [
    ((), ValueError("x"), True),  # none named: any Exception
    (("ConnectionError",), ConnectionResetError("x"), True),  # a subclass
    (("builtins.ConnectionError",), Mine("x"), True),  # qualified, through a user's subclass
    ((f"{__name__}.Mine",), Mine("x"), True),
    (("Mine",), ConnectionError("x"), False),  # a base is not its subclass
    (("ConnectionError",), ValueError("x"), False),
    (("ValueError",), SystemExit(3), False),  # never: SystemExit and KeyboardInterrupt
    ((), KeyboardInterrupt(), False),
])
def test_which_exceptions_are_tried_again(retry_on: tuple[str, ...], exc: BaseException, tried: bool) -> None:
    assert Retries(2, retry_on).matches(exc) is tried


def test_the_waits_double() -> None:
    assert [Retries(5, backoff=0.5).delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]


def beacon() -> Any:
    return memoryview(mmap.mmap(-1, 16)).cast("q")


def test_a_wrapped_function_counts_its_tries_and_bumps_the_beacon() -> None:
    calls: list[int] = []

    def flaky(x: int) -> int:
        calls.append(x)
        if calls.count(x) < 3:
            raise ConnectionResetError(x)
        return x

    b, tries = beacon(), {}
    fn = Retries(4, ("ConnectionError",)).wrap(flaky, b, tries)
    b[0] = 8  # index 7
    assert fn(70) == 70
    assert tries == {7: 3} and b[1] == 2 and b[0] == 8
    b[0] = 9
    with pytest.raises(ConnectionResetError):
        Retries(1, ("ConnectionError",)).wrap(lambda x: flaky(x), b, tries)(80)
    assert tries == {7: 3, 8: 2}
    b[0] = 10
    with pytest.raises(ValueError):
        fn_value = Retries(4, ("ConnectionError",)).wrap(lambda x: int("no"), b, tries)
        fn_value(0)
    assert 9 not in tries  # one try: not noted


@pytest.mark.parametrize(("given_", "canonical"), [(10, "10"), ("10", "10"), (" 7 ", "7"), ("5%", "5%"),
                                                   ("2.50%", "2.5%"), ("100%", "100%"), (None, None)])
def test_max_failures_reads(given_: Any, canonical: str | None) -> None:
    assert parse_max_failures(given_) == canonical


@pytest.mark.parametrize("bad", [0, "0", "-1", "0%", "101%", "nan%", "ten", "1.5", "", "%"])
def test_max_failures_refuses_with_one_sentence(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"^max failures must be .*\.$"):
        parse_max_failures(bad)


@given(st.integers(1, 10**8), st.floats(0.001, 100))
def test_a_percentage_is_of_the_sweeps_points_and_at_least_one(total: int, pct: float) -> None:
    spec = parse_max_failures(f"{pct}%")
    assert spec is not None
    limit = failure_limit(spec, total)
    assert 1 <= limit <= total
    assert stopped_reason(spec, limit - 1, total) is None
    assert stopped_reason(spec, limit, total) is not None


@pytest.mark.parametrize(("kw", "match"), [
    ({"retries": -1}, "retries must be an integer from 0 to 100"),
    ({"retries": 101}, "retries must be"),
    ({"retries": 1, "retry_backoff": -1.0}, "back-off must be from 0 to 3600"),
    ({"retries": 1, "retry_backoff": float("nan")}, "back-off must be"),
    ({"retries": 1, "retry_on": ("Connection Error",)}, "is not an exception class name"),
    ({"retries": 1, "retry_on": ("",)}, "is not an exception class name"),
    ({"retry_on": ("ConnectionError",)}, "retries is 0"),
    ({"max_failures": "0"}, "max failures must be"),
])
def test_options_refuse_a_policy_that_cannot_be_meant(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Options(**kw)


def test_options_read_back_from_a_record() -> None:
    o = Options(retries=2, retry_on=["ConnectionError"], retry_backoff=0.1, max_failures=10)  # type: ignore[arg-type]
    assert o.retry_on == ("ConnectionError",) and o.max_failures == "10"
