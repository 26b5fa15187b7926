from __future__ import annotations

import pytest

from bot.synthesis.backoff import (
    MAX_HONOURED_WAIT,
    backoff_delay,
    parse_moment,
    retry_after_seconds,
)

NOW = 1_764_072_000.0  # 2025-11-25T12:00:00Z


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "Tue, 25 Nov 2025 12:00:30 GMT"}, 30.0),
        ({"x-rate-limit-reset-at-utc": "2025-11-25T12:00:45Z"}, 45.0),
        ({"x-rate-limit-reset-at-utc": "2025-11-25T12:00:45+00:00"}, 45.0),
        ({"x-rate-limit-reset-at-utc": "2025-11-25T12:00:45"}, 45.0),
        ({"x-rate-limit-reset-at-utc": "2025-11-25T13:00:45+01:00"}, 45.0),
        ({"X-Rate-Limit-Reset-At-UTC": "Tue, 25 Nov 2025 12:01:00 GMT"}, 60.0),
        ({"x-rate-limit-reset-at-utc": str(int(NOW) + 12)}, 12.0),
        ({"x-rate-limit-reset-at-utc": str((int(NOW) + 12) * 1000)}, 12.0),
        # Retry-After wins when both are present.
        ({"Retry-After": "3", "x-rate-limit-reset-at-utc": "2025-11-25T12:00:45Z"}, 3.0),
        # An unparsable Retry-After falls through to the reset header.
        ({"Retry-After": "soon", "x-rate-limit-reset-at-utc": "2025-11-25T12:00:05Z"}, 5.0),
        # A reset in the past means go now.
        ({"x-rate-limit-reset-at-utc": "2025-11-25T11:59:00Z"}, 0.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "999999"}, MAX_HONOURED_WAIT),
        ({}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"x-rate-limit-remaining": "0"}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    result = retry_after_seconds(headers, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_parse_moment_rejects_garbage() -> None:
    assert parse_moment("") is None
    assert parse_moment("yesterday") is None
    assert parse_moment("-5") is None


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    lows = [backoff_delay(n, base=1.0, cap=60.0, rng=lambda: 0.0) for n in range(1, 9)]
    highs = [backoff_delay(n, base=1.0, cap=60.0, rng=lambda: 1.0) for n in range(1, 9)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert highs == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
