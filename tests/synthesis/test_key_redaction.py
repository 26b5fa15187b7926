"""No piece of the API key reaches anyone, for both clients, whatever the upstream echoes.

The fake server echoes (part of) the very key the request sent inside an error body, with
punctuation, letters, digits or other scripts beside it, as a careless gateway does. Each
failure then goes the way it goes in the bot: through the scheduler (which halts on a key
problem and logs), to the member's line, the exception's text, the log records and what
/healthz reports. No run of 8 or more of the key's characters may be in any of them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.errors import SegmindError
from bot.health import Status, judge
from bot.logs import make_handler
from bot.metrics import Metrics, MetricsServer
from bot.redaction import MIN_RUN
from bot.services import open_services
from bot.speech.access import Requester
from bot.speech.request import build_request
from bot.synthesis.client import SegmindClient, Timeouts
from bot.synthesis.client_v2 import SegmindV2Client
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from tests import fake_segmind as fs

REQUEST = build_request("Say this, please.", voice="Kore")
QUICK = Timeouts(request_timeout=5.0, first_poll=0.01, last_poll=0.05)
CONFIG = SchedulerConfig(rpm=600, user_cooldown=0, max_attempts=1, backoff_base=0.01)

KEY_CHARS = string.ascii_letters + string.digits + "_-"
keys = st.one_of(
    st.builds(lambda h: "SG_" + h, st.text("0123456789abcdef", min_size=16, max_size=32)),
    # A digit in every 8 characters, as in real keys: a run of letters alone can be the bot's
    # own words ("equestEr" is in "BadRequestError"), which is no leak of the key.
    st.lists(
        st.tuples(st.text(KEY_CHARS, max_size=7), st.sampled_from(string.digits)).map("".join),
        min_size=3,
        max_size=8,
    )
    .map("".join)
    .filter(lambda key: 12 <= len(key) <= 64),
)
neighbours = st.lists(
    st.one_of(
        st.sampled_from(list(".=/:;,'\"()[]{}<>?!&%+*#@$^|~`\\ -_")),
        st.sampled_from(["…", "é", "→", "ß", "😀", "中", "\u200b"]),
        st.sampled_from(list(KEY_CHARS)),
    ),
    max_size=3,
).map("".join)

#: Where the echo comes from, and the status it comes with; the poll cases exist in v2 only.
CASES = [
    ("v1", "submit", 400),  # the member's line carries what upstream said
    ("v1", "submit", 401),  # the key rejected: speech halts, /healthz and the log say why
    ("v1", "submit", 502),
    ("v2", "submit", 400),
    ("v2", "submit", 401),
    ("v2", "submit", 502),
    ("v2", "status poll", 400),
    ("v2", "failed job", 200),
    ("v2", "failed job", 422),
]


def runs_of(key: str) -> list[str]:
    return [key[i : i + MIN_RUN] for i in range(len(key) - MIN_RUN + 1)]


def assert_no_piece(texts: dict[str, str], key: str) -> None:
    found = [(where, run) for where, text in texts.items() for run in runs_of(key) if run in text]
    assert not found, (found, texts)


@st.composite
def echoes(draw: st.DrawFn) -> tuple[str, str, tuple[int, int], str]:
    """(key, body template, cut, body kind): one piece of the key, ≥ 8 long, in a body."""
    key = draw(keys)
    kind = draw(st.sampled_from(["prefix", "suffix", "middle", "whole"]))
    length = len(key) if kind == "whole" else draw(st.integers(MIN_RUN, len(key)))
    start = {"prefix": 0, "suffix": len(key) - length, "whole": 0}.get(kind)
    if start is None:
        start = draw(st.integers(0, len(key) - length))
    said = draw(st.sampled_from(["invalid api_key", "key", "Unauthorized:", "see /keys/", ""]))
    message = f"{said}{draw(neighbours)}{{key}}{draw(neighbours)} {draw(st.text(max_size=40))}"
    body = draw(st.sampled_from(["json", "text", "html"]))
    return key, message, (start, start + length), body


def fault_for(code: int, message: str, cut: tuple[int, int], body: str) -> fs.Fault:
    if body == "text":
        return fs.echo_key(code, message, start=cut[0], stop=cut[1], content_type="text/plain")
    if body == "html":
        page = f"<html><head><title>{message}</title></head><body>{message}</body></html>"
        return fs.echo_key(code, page, start=cut[0], stop=cut[1], content_type="text/html")
    document = {"error": message}
    if code == 200:  # a result document saying the job FAILED, with its reason
        document = {"status": "FAILED", "error": message}
    return fs.echo_key(code, json.dumps(document), start=cut[0], stop=cut[1])


class Kept(logging.Handler):
    """Every record of the bot's loggers, formatted with its traceback, as a collector sees."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@contextmanager
def kept_logs() -> Iterator[Kept]:
    logger = logging.getLogger("bot")
    kept, level = Kept(), logger.level
    logger.addHandler(kept)
    logger.setLevel(logging.DEBUG)
    try:
        yield kept
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)


async def provoke(
    protocol: str, where: str, key: str, fault: fs.Fault
) -> tuple[SegmindError, dict[str, str]]:
    """One request through the scheduler against a fake that echoes the key: the error, and
    every text that failure put where people read (member, exception, logs, /healthz)."""
    with kept_logs() as logs:
        async with fs.FakeSegmind(api_key=key) as fake, aiohttp.ClientSession() as session:
            if where == "submit":
                fake.enqueue(fault)
            elif where == "status poll":
                fake.v2.status_faults.append(fault)
            else:
                fake.v2.fail_next = 1
                fake.v2.result_faults.append(fault)
            cls = SegmindV2Client if protocol == "v2" else SegmindClient
            client = cls(session, api_key=key, base_url=fake.base_url, timeouts=QUICK)
            scheduler = Scheduler(client.synthesize, CONFIG)
            scheduler.start()
            try:
                ticket = scheduler.submit(REQUEST, Requester(1, cooldown=0))
                with pytest.raises(SegmindError) as caught:
                    await asyncio.wait_for(ticket.result(), 20)
                halted = scheduler.halted
                # What /healthz says: the app's probe gives str(halted) to `judge`.
                now = time.time()
                _, health = judge(
                    Status(True, halted=str(halted) if halted else None, updated=now), now
                )
            finally:
                await scheduler.close(grace=0)
    error = caught.value
    return error, {
        "member": error.user_message,
        "exception": f"{error} {error!r} {error.args}",
        "healthz": health,
        "logs": "\n".join(logs.lines),
    }


@pytest.mark.parametrize(("protocol", "where", "code"), CASES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(echo=echoes())
def test_no_piece_of_the_key_reaches_anyone(
    protocol: str, where: str, code: int, echo: tuple[str, str, tuple[int, int], str]
) -> None:
    key, message, cut, body = echo
    if where != "submit" and body == "html":
        body = "json"  # a poll's answer is JSON (an HTML one is a blip, polled through)
    _, texts = asyncio.run(provoke(protocol, where, key, fault_for(code, message, cut, body)))
    assert_no_piece(texts, key)
    if code == 401:  # the key rejected: speech halted, and the log and /healthz say why
        assert "paused for everyone" in texts["healthz"]
        assert "Speech calls halted" in texts["logs"]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_reported_echo_is_shown_without_the_key(protocol: str) -> None:
    """What a member saw: 12 of the key's 19 characters beside `=`, and the rest of the
    upstream's words, which still help."""
    key = "SG_4f9c2e71a8b3d605"
    fault = fs.echo_key(400, json.dumps({"error": "bad api_key={key}…"}), stop=12)
    error, texts = asyncio.run(provoke(protocol, "submit", key, fault))
    assert_no_piece(texts, key)
    assert error.user_message == (
        "The speech service refused this request: bad api_key=[redacted]…"
    )


@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_a_halt_on_an_echoed_key_leaves_no_piece_in_healthz_or_the_logs(
    protocol: str, make_settings: Callable[..., Settings]
) -> None:
    """The real path: services as the bot opens them, the bot's own log handler, /healthz
    over HTTP; the key rejected with a piece of it echoed beside a slash."""
    key = "SG_9d1e4c7b2a6f8035"
    async with fs.FakeSegmind(api_key=key) as fake:
        fake.enqueue(fs.echo_key(401, json.dumps({"error": "no such key /{key}/"}), start=3))
        settings_ = make_settings(
            segmind_api_key=key,
            segmind_api=protocol,
            segmind_base_url=fake.base_url,
            segmind_rpm=600,
            user_cooldown=0,
        )
        stream = io.StringIO()
        handler = make_handler(settings_, stream)
        logger = logging.getLogger("bot")
        logger.addHandler(handler)
        services = await open_services(settings_)
        scheduler = services.scheduler
        server = MetricsServer(
            Metrics(services),
            # As the app's probe does (`BotApp.health_status`).
            health=lambda: Status(True, halted=str(scheduler.halted) if scheduler.halted else None),
        )
        await server.start("127.0.0.1", 0)
        try:
            ticket = services.scheduler.submit(REQUEST, Requester(1, cooldown=0))
            with pytest.raises(SegmindError) as caught:
                await asyncio.wait_for(ticket.result(), 20)
            url = f"http://127.0.0.1:{server.port}/healthz"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                status, health = response.status, await response.text()
        finally:
            await server.close()
            await services.close()
            logger.removeHandler(handler)
    assert status == 503
    assert "paused for everyone" in health
    assert "no such key" in health  # what upstream said is still there, minus the key
    error = caught.value
    texts = {"member": error.user_message, "exception": str(error), "healthz": health}
    assert_no_piece({**texts, "logs": stream.getvalue()}, key)
