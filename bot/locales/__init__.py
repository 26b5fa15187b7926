"""What members read, in their own language: one catalogue of messages per language, English
the source, each message found by its key.

Pure (no Discord): a Discord locale arrives as its plain string ("de", "pt-BR", "en-US"). A
language the bot does not speak, a key a language lacks (the catalogue test forbids it) and a
missing locale all fall back to English, so a member always reads something.

A `Line` is a message not yet put into a language: a `str` that reads as English where text is
expected (logs, tests, older callers), carrying its key and fields so the edge that knows the
member's locale can render it again in theirs (`render`).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from types import MappingProxyType

from bot.locales import de, en, es, fr, ja, pt_br

__all__ = [
    "CATALOGUES",
    "ENGLISH",
    "LANGUAGES",
    "Line",
    "language_of",
    "line",
    "message_of",
    "placeholders",
    "render",
    "text",
]

ENGLISH = "en"

#: Each language's messages, by the language's name as the bot keeps it: the part of a Discord
#: locale before the dash, except Brazilian Portuguese, which is "pt-BR" on Discord.
CATALOGUES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "en": en.MESSAGES,
        "de": de.MESSAGES,
        "fr": fr.MESSAGES,
        "es": es.MESSAGES,
        "pt-BR": pt_br.MESSAGES,
        "ja": ja.MESSAGES,
    }
)
LANGUAGES = tuple(CATALOGUES)


def language_of(locale: str | None) -> str:
    """The catalogue for a Discord locale: "es-ES" and "es-419" are Spanish, "en-GB" English,
    Portugal's "pt" (not on Discord today) Brazilian Portuguese rather than nothing."""
    if not locale:
        return ENGLISH
    if locale in CATALOGUES:
        return locale
    base = locale.split("-", 1)[0].casefold()
    if base in CATALOGUES:
        return base
    if base == "pt":
        return "pt-BR"
    return ENGLISH


def text(key: str, locale: str | None = None, /, **fields: object) -> str:
    """The message `key` in the locale's language (English where it has none), its {fields}
    filled in; a field that is itself a `Line` is rendered in the same language."""
    messages = CATALOGUES[language_of(locale)]
    template = messages.get(key)
    if template is None:
        template = en.MESSAGES[key]  # An unknown key is a bug: KeyError, loudly.
    values = {
        name: value.to(locale) if isinstance(value, Line) else value
        for name, value in fields.items()
    }
    return template.format_map(values)


def placeholders(template: str) -> frozenset[str]:
    """The {fields} a message fills in (format specs aside: "{seconds:g}" is "seconds")."""
    return frozenset(
        name.split(".", 1)[0].split("[", 1)[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    )


class Line(str):
    """A message by key, reading as English until rendered in a member's language."""

    key: str
    fields: Mapping[str, object]

    def __new__(cls, key: str, /, **fields: object) -> Line:
        self = super().__new__(cls, text(key, ENGLISH, **fields))
        self.key = key
        self.fields = fields
        return self

    def to(self, locale: str | None) -> str:
        return text(self.key, locale, **self.fields)

    def __reduce__(self) -> tuple[object, ...]:
        """Copied or pickled by its key and fields: a `str`'s own way would make it again
        from its English, which is not a key."""
        return (_remake, (self.key, dict(self.fields)))


def _remake(key: str, fields: dict[str, object]) -> Line:
    return Line(key, **fields)


def line(key: str, /, **fields: object) -> Line:
    return Line(key, **fields)


def message_of(error: BaseException) -> str:
    """What an error says, keeping a `Line` as one (`str(error)` would make it plain English)."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, str) else str(error)


def render(message: str, locale: str | None) -> str:
    """A message in the locale's language when it is a `Line`; any other text as it is (a
    server's own wording, what Segmind said)."""
    return message.to(locale) if isinstance(message, Line) else message
