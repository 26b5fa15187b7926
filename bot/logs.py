"""Logging for the bot and the terminal: text for people, or one JSON object a line for log
collectors (`LOG_FORMAT=json`), with the secrets' values redacted from every record.

Redaction is central, on the handler, rather than trusted to each call site: a library
(aiohttp, discord.py) may echo a header or a URL into an exception that some log line prints,
and neither the token nor the key may ever reach a log, whatever the format. Pieces count
too: no run of 8 or more of a secret's characters is written (`bot.redaction`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import unquote, urlsplit

from bot.config import Settings
from bot.redaction import MIN_RUN, REDACTED, Redactor

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
    "make_handler",
    "secrets_of",
]

#: Shorter values are not redacted: replacing every "k" of a test key would garble the logs,
#: and real tokens and keys are far longer.
MIN_SECRET_LENGTH = MIN_RUN
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Removes each secret, whole or in pieces, from a record's message, arguments, traceback
    and stack."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact:
            return True
        message = record.getMessage()
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the
    traceback as one string when there is one. Newlines inside stay escaped, so a collector
    never splits one record into several."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def secrets_of(settings: Settings) -> list[str]:
    """The values that must never be logged (nor shown in an operator's alert): the token,
    the key, and the passwords in DATABASE_URL and REDIS_URL."""
    found = [
        secret.get_secret_value()
        for secret in (settings.discord_token, settings.segmind_api_key)
        if secret is not None
    ]
    for url in (settings.database_url, settings.redis_url):
        try:
            password = urlsplit(url).password if url else None
        except ValueError:  # Not a URL the engines would take either.
            password = None
        if password:
            found.extend({password, unquote(password)})
    return found


def make_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler in the configured format that redacts the configured secrets."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    return handler


def configure_logging(settings: Settings) -> None:
    """Log to stderr at LOG_LEVEL in LOG_FORMAT; a no-op if logging is already set up (as
    `logging.basicConfig` is), so an embedding program or a test keeps its own handlers."""
    logging.basicConfig(level=settings.log_level, handlers=[make_handler(settings)])
