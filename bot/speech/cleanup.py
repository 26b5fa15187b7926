"""What a Discord message should sound like when it is read aloud.

Raw content is full of markup that TTS would read literally ("less than at one two three"),
pings that must never be echoed back, and spoilers or code that nobody wants narrated. The cog
reduces a `discord.Message` to `MessageFacts`, so this module stays free of discord.py.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "MAX_NAME_LENGTH",
    "MORE_MARKER",
    "CleanupOptions",
    "MessageFacts",
    "SpeakerPrefixer",
    "clean_message",
    "clean_name",
    "with_prefix",
]

MAX_NAME_LENGTH = 32
#: Spoken where a long message is cut, so listeners know they did not hear all of it.
MORE_MARKER = " … and more"

_MAX_PASSES = 6  # Clean-up is repeated until stable; real messages settle in two passes.
_LINK = "\ue000"  # Private-use placeholder, so that a run of links can be read as "links".


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """A message reduced to what speech needs; the cog builds it from a discord.Message."""

    content: str
    users: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)
    attachments: Sequence[str] = ()
    stickers: Sequence[str] = ()
    is_reply: bool = False


@dataclass(frozen=True, slots=True)
class CleanupOptions:
    emoji: Literal["name", "drop"] = "name"
    max_length: int = 300
    #: At least 2, since 1 would turn "book" into "bok"; 0 reads repeats as written.
    max_repeat: int = 3

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError("max_length must be at least 1")
        if self.max_repeat < 2 and self.max_repeat != 0:
            raise ValueError("max_repeat must be 0 or at least 2")


_DEFAULT_OPTIONS = CleanupOptions()
_NO_FACTS = MessageFacts("")

# Leftmost wins, as in Discord: "||a ```b|| c```" is a spoiler followed by plain text.
_HIDDEN = re.compile(r"```.*?```|\|\|.+?\|\|", re.DOTALL)
_ESCAPE = re.compile(r"(?<!\\)\\+(?=[*_~`|>#\-\[\]()])")
_MASKED_LINK = re.compile(r"\[([^\[\]\n]+)\]\(\s*<?https?://[^\s<>()]+>?\s*\)", re.IGNORECASE)
_URL = re.compile(
    r"<https?://[^\s<>]+>|(?:https?://|www\.)[^\s<>]*[^\s<>.,!?;:'\")\]}*_~|`]", re.IGNORECASE
)
_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_CHANNEL = re.compile(r"<#(\d+)>")
_EMOJI = re.compile(r"<a?:(\w+):\d+>")
_TIMESTAMP = re.compile(r"<t:-?\d+(?::\w)?>")
_COMMAND = re.compile(r"</([\w -]+):\d+>")
_EVERYONE = re.compile(r"@(everyone|here)")
_SILENT = re.compile(r"^\s*@silent\b")
_LINE_MARKERS = re.compile(r"^[^\S\n]*(?:(?:>{1,3}|-#|#{1,3}|[-*])[^\S\n]+)+", re.MULTILINE)
_LINK_RUN = re.compile(f"{_LINK}(?:[\\s,]*{_LINK})+")
# The last line of defence: whatever got through, nothing in the output may ping or parse.
_PINGABLE = re.compile(r"(?<!<)<+(?=[@#:]|[at]:)|(?<!@)@+(?=everyone|here)", re.IGNORECASE)

_ATTACHMENT_WORDS = {
    "image": ("an image", "images"),
    "video": ("a video", "videos"),
    "audio": ("an audio clip", "audio clips"),
    "file": ("a file", "files"),
}
_EXTENSIONS = {
    "image": {"png", "jpg", "jpeg", "gif", "webp", "bmp", "heic", "heif", "avif", "svg", "tiff"},
    "video": {"mp4", "mov", "webm", "mkv", "avi", "m4v", "wmv"},
    "audio": {"mp3", "ogg", "oga", "opus", "wav", "flac", "m4a", "aac", "wma"},
}


def clean_message(facts: MessageFacts, options: CleanupOptions = _DEFAULT_OPTIONS) -> str:
    """The words to speak for a message, or "" when there is nothing worth saying.

    The joined and cut result is cleaned once more, since a cut or a joint can make new markup
    (a cut after "#" leaves "# … and more", a header); cleaning clean text never lengthens it.
    """
    content = _speakable(facts.content, facts, options)
    description = _describe(facts.attachments, facts.stickers, options)
    fitted = _fit(content, description, options.max_length)
    if fitted == content:
        return content  # Nothing was cut or joined: it is clean already (cleaning is stable).
    return _speakable(fitted, _NO_FACTS, options)


def clean_name(name: str) -> str:
    """A display name as it should be spoken: no markup or pings, and short enough not to drone."""
    return _clean_name(name, _DEFAULT_OPTIONS)


@functools.lru_cache(maxsize=1024)
def _clean_name(name: str, options: CleanupOptions) -> str:
    """Names inside a message follow the message's options, so cleaning stays idempotent.

    Cached: a message may mention the same member thousands of times, and each name would
    otherwise go through every pass again.
    """
    if not name:
        return ""
    return _cap(_speakable(name, _NO_FACTS, options), MAX_NAME_LENGTH)


def _speakable(text: str, facts: MessageFacts, options: CleanupOptions) -> str:
    """Clean until stable, so that removing one marker cannot expose another (idempotence)."""
    text = text.replace(_LINK, "")
    for _ in range(_MAX_PASSES):
        cleaned = _one_pass(text, facts, options)
        if cleaned == text:
            break
        text = cleaned
    return text


def _one_pass(text: str, facts: MessageFacts, options: CleanupOptions) -> str:
    text = _HIDDEN.sub(_hide, text)
    # Thousands of spoilers in a row say nothing more than a few; shortened at once, the
    # passes after this one work on a short text instead of a long run of markers.
    # The markers are the bot's own words: shortened even where members' repeats are not.
    hidden = options.max_repeat or _DEFAULT_OPTIONS.max_repeat
    text = _hidden_run(hidden).sub(lambda m: m[1] * hidden, text)
    text = _ESCAPE.sub("", text)
    text = _MASKED_LINK.sub(r"\1", text)
    text = _URL.sub(_LINK, text)
    text = _resolve_mentions(text, facts, options)
    text = _strip_markdown(text)
    text = _shorten_repeats(text, options.max_repeat)
    text = _LINK_RUN.sub("links", text).replace(_LINK, "a link")
    return _defang(" ".join(text.split()))


@functools.lru_cache(maxsize=8)
def _hidden_run(most: int) -> re.Pattern[str]:
    """More than `most` of the same hidden-content marker in a row (what `_hide` writes)."""
    return re.compile(rf"( code block | spoiler )\1{{{most},}}")


def _hide(match: re.Match[str]) -> str:
    """Name what is hidden without reading it: spoilers are secret, code is unpronounceable."""
    return " code block " if match[0].startswith("```") else " spoiler "


def _resolve_mentions(text: str, facts: MessageFacts, options: CleanupOptions) -> str:
    text = _USER.sub(lambda m: _lookup(facts.users, m[1], options) or "someone", text)
    text = _ROLE.sub(lambda m: _lookup(facts.roles, m[1], options) or "a role", text)
    text = _CHANNEL.sub(lambda m: _lookup(facts.channels, m[1], options) or "a channel", text)
    text = _EMOJI.sub(lambda m: f" {m[1]} " if options.emoji == "name" else " ", text)
    text = _TIMESTAMP.sub("a time", text)
    text = _COMMAND.sub(r"/\1", text)
    text = _SILENT.sub("", text)
    return _EVERYONE.sub(r"\1", text)


def _lookup(names: Mapping[int, str], key: str, options: CleanupOptions) -> str:
    return _clean_name(names.get(int(key), ""), options)


def _strip_markdown(text: str) -> str:
    """Drop formatting but keep the words; underscores become spaces, as in snake_case names.

    Every asterisk goes, even a lone one, since one left next to the ", and sent an image" that
    follows would be stripped when cleaned again.
    """
    text = _LINE_MARKERS.sub("", text)
    for marker, replacement in (("*", ""), ("`", ""), ("~~", ""), ("||", ""), ("_", " ")):
        text = text.replace(marker, replacement)
    return text


def _shorten_repeats(text: str, most: int) -> str:
    """Shorten "soooooo", "!!!!!!" and "hahahaha", but never digits: 1000000 is a number.
    0 shortens nothing. Linear in the text: each position is tried against at most a few
    short units repeated `most` times, and `most` is bounded (storage.validation.MAX_REPEAT).
    """
    if most == 0:
        return text
    text = re.sub(rf"([^\d\s])\1{{{most},}}", lambda m: m[1] * most, text)
    return re.sub(rf"([^\d\s]{{2,4}}?)\1{{{most},}}", lambda m: m[1] * most, text)


def _defang(text: str) -> str:
    while (defanged := _PINGABLE.sub("", text)) != text:
        text = defanged
    return text


def _describe(attachments: Sequence[str], stickers: Sequence[str], options: CleanupOptions) -> str:
    """Say what was sent besides text, since listeners cannot see it."""
    counts = Counter(_attachment_kind(attachment) for attachment in attachments)
    items = [_count(kind, counts[kind]) for kind in _ATTACHMENT_WORDS if counts[kind]]
    if stickers:
        items.append(_describe_stickers(stickers, options))
    return f"sent {_and_list(items)}" if items else ""


def _attachment_kind(attachment: str) -> str:
    """Classify by extension first, then by MIME type, so both filenames and types work."""
    name = attachment.split(";", 1)[0].strip().lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    for kind, extensions in _EXTENSIONS.items():
        if extension in extensions:
            return kind
    major = name.split("/", 1)[0] if "/" in name else ""
    return major if major in _EXTENSIONS else "file"


def _count(kind: str, count: int) -> str:
    one, many = _ATTACHMENT_WORDS[kind]
    return one if count == 1 else f"{count} {many}"


def _describe_stickers(stickers: Sequence[str], options: CleanupOptions) -> str:
    noun = "a sticker" if len(stickers) == 1 else f"{len(stickers)} stickers"
    names = [name for name in (_clean_name(s, options) for s in stickers) if name]
    return f"{noun}: {_and_list(names)}" if names else noun


def _and_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _fit(content: str, description: str, limit: int) -> str:
    """Join content and description within `limit`, cutting the content before the description."""
    if not (content and description):
        return _truncate(content or description, limit)
    joined = _join(content, description)
    if len(joined) <= limit:
        return joined
    room = limit - len(description) - len(", and ")
    if room >= len(MORE_MARKER) + 20:
        return _join(_truncate(content, room), description)
    return _truncate(joined, limit)


def _join(content: str, description: str) -> str:
    if content.endswith((".", "!", "?", "…")):
        return f"{content} And {description}"
    return f"{content}, and {description}"


def _truncate(text: str, limit: int) -> str:
    """Cut at a word boundary and say so; the marker counts towards the limit."""
    if len(text) <= limit:
        return text
    room = limit - len(MORE_MARKER)
    if room < 1:
        return text[:limit].rstrip()
    return f"{_cap(text, room).rstrip(' ,;:-')}{MORE_MARKER}".lstrip()


def _cap(text: str, limit: int) -> str:
    """At most `limit` characters, at a space unless that would lose more than half."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return (text[:cut] if cut >= limit // 2 else text[:limit]).rstrip()


class SpeakerPrefixer:
    """Say "Alice said" before a message, unless Alice also spoke in this channel within `window`.

    Only the last speaker per channel matters (A, B, A all get prefixes), and channels whose
    last message is older than the window are forgotten, so memory stays bounded.
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._last: OrderedDict[int, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        """How many channels are remembered."""
        return len(self._last)

    def prefix(
        self, channel_id: int, author_id: int, author_name: str, now: float, *, reply: bool = False
    ) -> str | None:
        """The prefix to speak, or None when the same member is still talking; records the turn."""
        self._forget_before(now - self.window)
        last = self._last.pop(channel_id, None)
        self._last[channel_id] = (author_id, now)
        if last is not None and last[0] == author_id and now - last[1] <= self.window:
            return None
        verb = "replied" if reply else "said"
        return f"{clean_name(author_name) or 'someone'} {verb}"

    def _forget_before(self, cutoff: float) -> None:
        while self._last:
            channel_id, (_, at) = next(iter(self._last.items()))
            if at >= cutoff:
                return
            del self._last[channel_id]


def with_prefix(prefix: str | None, text: str) -> str:
    """Read as "Alice said: hello"; empty text stays empty, as there is nothing to announce."""
    return f"{prefix}: {text}" if prefix and text else text
