"""Failover: which URL a call goes to, and which error comes out."""

from __future__ import annotations

import pytest

from dmr_appliance.wire.failover import Failover


def test_a_failure_passed_on_goes_to_the_next_and_that_one_stays_current():
    failover, seen = Failover(["https://a/", "https://b"]), []

    def call(url: str) -> str:
        seen.append(url)
        if url == "https://a":
            raise ConnectionError("refused")
        return url

    assert failover.call(call, lambda url, exc: True) == "https://b"
    assert failover.call(call, lambda url, exc: True) == "https://b"
    assert seen == ["https://a", "https://b", "https://b"] and failover.current == "https://b"


def test_a_failure_not_passed_on_is_raised_at_once():
    failover, seen = Failover(["https://a", "https://b"]), []

    def call(url: str) -> str:
        seen.append(url)
        raise ValueError(url)

    with pytest.raises(ValueError, match="https://a"):
        failover.call(call, lambda url, exc: False)
    assert seen == ["https://a"]


def test_every_url_failing_raises_the_last_error_and_keeps_the_current_one():
    failover, passed = Failover(["https://a", "https://b", "https://c"]), []
    failover.index = 1

    def call(url: str) -> str:
        raise ConnectionError(url)

    with pytest.raises(ConnectionError, match="https://a"):  # b, c, then a: the last
        failover.call(call, lambda url, exc: passed.append(url) or True)
    assert passed == ["https://b", "https://c", "https://a"] and failover.index == 1


def test_no_url_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        Failover([])
