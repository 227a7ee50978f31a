"""The notice rate limit spaces sends evenly (a fake clock here; the real one paces the SMTP tests)."""

from __future__ import annotations

import pytest

from dereg.errors import NotifyError
from dereg.notify.deliver import RateLimiter


def test_sends_are_spaced_by_the_rate():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one every 0.5 s
    for _ in range(4):
        limiter.wait()
    assert slept == [0.5, 0.5, 0.5]
    now[0] += 10  # a pause longer than the interval: no waiting after it
    limiter.wait()
    assert slept == [0.5, 0.5, 0.5]


def test_a_rate_below_one_is_refused():
    with pytest.raises(NotifyError, match="rate_per_minute must be at least 1"):
        RateLimiter(0)
