"""Reading what an answer says: the audio a JSON answer carries, and a short, redacted summary
of an error body for operators and members.

Split from the client so every parse of upstream bytes lives in one place: each is bounded in
depth and size, so a hostile body (deeply nested JSON, megabytes of HTML) gives a typed error
upstream of here, never a RecursionError or a slow regex on the event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "AUDIO_KEYS",
    "DATA_URI",
    "find_audio_value",
    "media_type",
    "pad_base64",
    "upstream_message",
]

#: Keys under which a JSON answer might carry its audio, most likely first.
AUDIO_KEYS = (
    "audio",
    "audio_base64",
    "audioContent",
    "audio_content",
    "audio_url",
    "output",
    "data",
    "result",
    "url",
    "file",
)
_MESSAGE_KEYS = ("error", "message", "detail", "msg", "errors")
DATA_URI = re.compile(r"^data:(?P<type>[\w/.+-]+)?(?:;[^,]*)?;base64,", re.IGNORECASE)
#: Bytes of an error body worth summarising: a message is at its start.
_SUMMARY_BYTES = 64 * 1024
#: How deep error-message and audio searches look into a JSON answer.
_MAX_JSON_DEPTH = 4


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def pad_base64(encoded: str) -> str:
    encoded = "".join(encoded.split())
    return encoded + "=" * (-len(encoded) % 4)


def find_audio_value(document: Any, depth: int = 0) -> str | None:
    """The first string under a likely audio key, searching nested objects a few levels deep."""
    if depth >= _MAX_JSON_DEPTH:
        return None
    if isinstance(document, list):
        for item in document[:5]:
            found = find_audio_value(item, depth + 1)
            if found:
                return found
        return None
    if isinstance(document, str):
        return document if len(document) > 16 else None
    if not isinstance(document, dict):
        return None
    for key in AUDIO_KEYS:
        if key in document:
            found = find_audio_value(document[key], depth + 1)
            if found:
                return found
    return None


def upstream_message(raw: bytes, content_type: str | None, redact: Callable[[str], str]) -> str:
    """A short, printable summary of an error body: its message field, or its first words.

    ``redact`` (`bot.redaction`) is the last step before any cut, so a key straddling the cut
    cannot leave its first half behind.
    """
    if not raw:
        return ""
    kind = media_type(content_type)
    text = raw[:_SUMMARY_BYTES].decode("utf-8", errors="replace").strip()
    if kind == "application/json" or text[:1] in "{[":
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            message = _message_from_json(document)
            if message:
                return _shorten(message, redact)
    if kind == "text/html" or text[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = f" titled “{_shorten(title.group(1), redact, 80)}”" if title else ""
        return "an HTML page" + shown
    if kind.startswith(("audio/", "application/octet-stream")):
        return ""
    return _shorten(text, redact)


def _message_from_json(document: Any, depth: int = 0) -> str | None:
    if depth >= _MAX_JSON_DEPTH:
        return None
    if isinstance(document, str):
        return document
    if isinstance(document, list) and document:
        return _message_from_json(document[0], depth + 1)
    if isinstance(document, dict):
        for key in _MESSAGE_KEYS:
            if key in document:
                found = _message_from_json(document[key], depth + 1)
                if found:
                    return found
    return None


def _shorten(text: str, redact: Callable[[str], str], limit: int = 300) -> str:
    """One line of at most ``limit`` characters, redacted after every change but the cut."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
