"""Log output: text or one JSON object a line, and the secrets' values never in either."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.logs import REDACTED, make_handler, secrets_of
from tests.conftest import TEST_API_KEY

TOKEN = "discord-SECRET-token.abc"


def logged(settings: Settings, emit: Callable[[logging.Logger], None]) -> str:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(make_handler(settings, stream))
    emit(logger)
    return stream.getvalue()


def leak(logger: logging.Logger) -> None:
    logger.info("key is %s", TEST_API_KEY)
    logger.warning(f"header Authorization: Bot {TOKEN}")
    try:
        raise RuntimeError(f"upstream echoed {TEST_API_KEY}")
    except RuntimeError:
        logger.exception("failed with %r", {"token": TOKEN})


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_are_redacted_in_every_format(
    make_settings: Callable[..., Settings], log_format: str
) -> None:
    settings = make_settings(discord_token=TOKEN, log_format=log_format)
    output = logged(settings, leak)
    assert TEST_API_KEY not in output
    assert TOKEN not in output
    assert output.count(REDACTED) >= 4
    assert "upstream echoed" in output


def test_json_is_one_object_per_line(make_settings: Callable[..., Settings]) -> None:
    output = logged(make_settings(discord_token=TOKEN, log_format="json"), leak)
    lines = output.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR"]
    assert records[0]["message"] == f"key is {REDACTED}"
    assert "RuntimeError: upstream echoed [redacted]" in records[2]["exception"]
    assert records[0]["time"].endswith("+00:00")
    assert {"time", "level", "logger", "message"} <= set(records[0])


def test_log_format_is_checked(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(Exception, match="LOG_FORMAT"):
        make_settings(log_format="xml")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_piece_of_a_secret_beside_punctuation_is_redacted_too(
    make_settings: Callable[..., Settings], log_format: str
) -> None:
    """An echo cut short by upstream (or by anything) is still too much of the secret."""
    settings = make_settings(discord_token=TOKEN, log_format=log_format)

    def echo(logger: logging.Logger) -> None:
        logger.error("upstream said api_key=%s… and /%s.", TEST_API_KEY[:12], TOKEN[3:15])
        try:
            raise RuntimeError(f"key={TEST_API_KEY[-9:]};")
        except RuntimeError:
            logger.exception("failed")

    output = logged(settings, echo)
    for secret in (TEST_API_KEY, TOKEN):
        runs = {secret[i : i + 8] for i in range(len(secret) - 7)}
        assert not [run for run in runs if run in output]
    assert "upstream said api_key=" in output


def test_the_database_and_redis_passwords_are_redacted_too(
    make_settings: Callable[..., Settings],
) -> None:
    database, cache = "pg-pass/w0rd-long", "redis-pass-w0rd-long"
    settings = make_settings(
        database_url="postgresql://tts:pg-pass%2Fw0rd-long@db:5432/tts",
        redis_url=f"redis://:{cache}@cache:6379/0",
    )

    def emit(logger: logging.Logger) -> None:
        # A driver may echo the password as written in the URL, or decoded.
        logger.error("could not connect: password %s (pg-pass%%2Fw0rd-long)", database)
        logger.error("redis refused %s", cache)

    text = logged(settings, emit)
    assert "w0rd-long" not in text
    assert text.count(REDACTED) == 3
    # A URL without a password, or none at all, adds nothing to redact.
    assert secrets_of(make_settings(database_url="postgresql://db/tts")) == [TEST_API_KEY]
