"""Unexpected errors reach the operator: one alert per kind a minute, with the reference the
log holds, and no piece of a secret."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.incidents import DETAIL_CHARS, ErrorAlerts
from tests.conftest import TEST_API_KEY

TOKEN = "discord-SECRET-token.xyz"


class Operator:
    """What the alert channel received, and a clock the test moves."""

    def __init__(self) -> None:
        self.told: list[str] = []
        self.now = 1000.0

    async def send(self, line: str) -> None:
        self.told.append(line)

    def alerts(self, **options: Any) -> ErrorAlerts:
        return ErrorAlerts(
            self.send, secrets=[TEST_API_KEY, TOKEN], clock=lambda: self.now, **options
        )


async def settle(alerts: ErrorAlerts) -> None:
    await asyncio.gather(*alerts._tasks)


async def test_an_unexpected_error_is_told_with_its_reference_and_where() -> None:
    operator = Operator()
    alerts = operator.alerts()
    assert alerts.report("/speak", "a1b2c3", KeyError("voice"))
    await settle(alerts)
    assert operator.told == [
        "🐞 Unexpected error in /speak (ref `a1b2c3`): KeyError: 'voice'. "
        "The log has its traceback under ref=a1b2c3."
    ]


async def test_one_alert_per_kind_a_minute_and_the_next_counts_the_rest() -> None:
    operator = Operator()
    alerts = operator.alerts()
    assert alerts.report("/speak", "000001", KeyError("a"))
    assert not alerts.report("/speak", "000002", KeyError("b"))
    operator.now += 59
    assert not alerts.report("/speak", "000003", KeyError("c"))
    # Another kind: another place, or another type of error, has its own minute.
    assert alerts.report("narration", "000004", KeyError("d"))
    assert alerts.report("/speak", "000005", ValueError("e"))
    operator.now += 1.5  # A minute after the first /speak KeyError.
    assert alerts.report("/speak", "000006", KeyError("f"))
    await settle(alerts)
    refs = [line.split("`")[1] for line in operator.told]
    assert refs == ["000001", "000004", "000005", "000006"]
    assert operator.told[-1].endswith(
        "2 more of this kind since the last alert (each in the log with its ref)."
    )
    assert "more of this kind" not in operator.told[0]
    # The count starts again after it is told.
    operator.now += 60
    assert alerts.report("/speak", "000007", KeyError("g"))
    await settle(alerts)
    assert "more of this kind" not in operator.told[-1]


async def test_no_piece_of_a_secret_is_told_and_the_text_is_cut_short() -> None:
    operator = Operator()
    alerts = operator.alerts()
    error = RuntimeError(
        f"upstream said: bad key {TEST_API_KEY}\n token={TOKEN[3:15]}… " + "x" * 1000
    )
    alerts.report("narration", "abcdef", error)
    await settle(alerts)
    (line,) = operator.told
    assert TEST_API_KEY[:8] not in line
    assert TOKEN[3:11] not in line
    assert "[redacted]" in line
    assert "\n" not in line
    detail = line.split(": ", 1)[1].split(". The log", 1)[0]
    assert len(detail) <= DETAIL_CHARS
    assert detail.endswith("…")


async def test_a_failed_delivery_is_logged_never_raised_nor_reported_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[str] = []

    async def down(line: str) -> None:
        attempts.append(line)
        raise ConnectionResetError("discord is down")

    alerts = ErrorAlerts(down, clock=lambda: 0.0)
    assert alerts.report("/speak", "abcdef", KeyError("x"))
    await settle(alerts)
    assert len(attempts) == 1
    assert "Could not deliver the operator alert" in caplog.text


async def test_close_drops_alerts_still_being_sent() -> None:
    started = asyncio.Event()

    async def slow(line: str) -> None:
        started.set()
        await asyncio.sleep(3600)

    alerts = ErrorAlerts(slow)
    alerts.report("/speak", "abcdef", KeyError("x"))
    await started.wait()
    async with asyncio.timeout(5):
        await alerts.close()
    assert not alerts._tasks


async def test_an_error_without_text_is_shown_by_its_type(caplog: pytest.LogCaptureFixture) -> None:
    operator = Operator()
    alerts = operator.alerts()
    with caplog.at_level(logging.ERROR):
        alerts.report("/join", "abcdef", TimeoutError())
    await settle(alerts)
    assert "in /join (ref `abcdef`): TimeoutError. The log" in operator.told[0]
    assert not caplog.records


async def test_processes_sharing_redis_tell_each_kind_once_for_the_cluster(redis_url: str) -> None:
    from bot.synthesis.cluster import OncePerCluster, open_link

    operator = Operator()
    links = [await open_link(redis_url) for _ in range(3)]
    try:
        processes = [
            operator.alerts(once=OncePerCluster(link, secret=TOKEN).first) for link in links
        ]
        for alerts in processes:
            assert alerts.report("narration", "ref1", KeyError("x"))
            await settle(alerts)
        assert len(operator.told) == 1
        processes[2].report("/speak", "ref2", KeyError("x"))  # another kind: told too
        await settle(processes[2])
        assert len(operator.told) == 2
    finally:
        for link in links:
            await link.close()


async def test_without_redis_each_process_tells_the_operator_itself() -> None:
    from bot.synthesis.cluster import OncePerCluster

    operator = Operator()
    processes = [operator.alerts(once=OncePerCluster(None, secret=TOKEN).first) for _ in range(2)]
    for alerts in processes:
        alerts.report("narration", "ref1", KeyError("x"))
        await settle(alerts)
    assert len(operator.told) == 2


async def test_a_redis_that_does_not_answer_lets_each_process_tell_the_operator() -> None:
    """Redis gone (nothing listens): an alert told twice beats one never told."""
    from bot.synthesis.cluster import OncePerCluster, open_link
    from tests.servers import free_port

    operator = Operator()
    url = f"redis://127.0.0.1:{free_port()}/0"
    links = [await open_link(url, budget=0.5) for _ in range(2)]
    try:
        processes = [
            operator.alerts(once=OncePerCluster(link, secret=TOKEN).first) for link in links
        ]
        for alerts in processes:
            alerts.report("narration", "ref1", KeyError("x"))
            await settle(alerts)
        assert len(operator.told) == 2
    finally:
        for link in links:
            await link.close()
