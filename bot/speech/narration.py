"""Narration: which messages are read aloud, and what is said for each, without Discord types.

The cog turns a discord.Message into `MessageFacts` and asks here; the rules come from the
server's settings, the voice from the member's (or a stable one picked from their id).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from bot.locales import text
from bot.speech.cleanup import CleanupOptions, MessageFacts, clean_message, clean_name, with_prefix
from bot.speech.voices import voice_for_user
from bot.storage import DEFAULT_MAX_REPEAT, DEFAULT_SAID, GuildSettings, MemberSettings

__all__ = [
    "AUTO",
    "SAME_SPEAKER_WINDOW",
    "AutoPrefix",
    "NarrationRules",
    "Narrator",
    "Reading",
    "announce",
    "member_voice",
    "skip_reason",
]

#: The English default for a reply's speaker; other languages' are the catalogue's.
DEFAULT_REPLIED = "{name} replied"

#: "Alice said" is skipped when Alice also spoke in the channel within this many seconds.
SAME_SPEAKER_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class NarrationRules:
    skip_prefix: str = ";"
    voice_only: bool = True
    max_length: int = 300
    emoji: Literal["name", "drop"] = "name"
    say_names: bool = True
    #: Skip messages sent with @silent (Discord's "suppress notifications").
    skip_silent: bool = False
    #: The longest text one request may speak in this server (`text_limit`): a message longer
    #: than this, "Alice said" included, is read from its start, "… and more", never dropped.
    text_limit: int = 2000
    #: How a speaker is announced, with a {name} placeholder.
    said: str = DEFAULT_SAID
    #: How the speaker of a reply is announced: "{name} replied" by default, the server's own
    #: wording (`said`) when it chose one.
    replied: str = DEFAULT_REPLIED
    #: Seconds a message may wait before it is no longer worth reading (0: always read).
    stale_after: int = 300
    #: Members listening in a Stage's audience are not read.
    ignore_stage_audience: bool = False
    #: When set, only messages starting with it are read (and it is not said).
    require_prefix: str = ""
    #: A character repeated more than this is read this many times; 0 as written.
    max_repeat: int = DEFAULT_MAX_REPEAT

    @classmethod
    def from_guild(
        cls, guild: GuildSettings, *, text_limit: int, locale: str | None = None
    ) -> NarrationRules:
        """The server's rules; `text_limit` is the limit in force there (the server's own
        figure already bounded by the operator's), computed in one place by the caller.

        `locale` is the server's preferred Discord locale: unless the server chose its own
        wording, "Alice said" is said in the server's language, since everyone hears it."""
        if guild.narration_said:
            said = replied = guild.narration_said
        else:
            # The wording keeps its {name}, filled in for each speaker by `announce`.
            said = text("narration.said", locale, name="{name}")
            replied = text("narration.replied", locale, name="{name}")
        return cls(
            skip_prefix=guild.narration_skip_prefix,
            voice_only=guild.narration_voice_only,
            max_length=guild.narration_max_length,
            emoji=guild.narration_emoji,
            say_names=guild.narration_say_names,
            skip_silent=guild.narration_skip_silent,
            text_limit=text_limit,
            said=said,
            replied=replied,
            stale_after=guild.narration_stale_after,
            ignore_stage_audience=guild.narration_ignore_stage_audience,
            require_prefix=guild.narration_require_prefix,
            max_repeat=guild.narration_max_repeat,
        )

    def without_prefix(self, content: str) -> str:
        """The words to read of a message that passed `skip_reason`: the required prefix,
        which asked for it to be read, is not itself read."""
        if not self.require_prefix:
            return content
        return content.lstrip().removeprefix(self.require_prefix)


def skip_reason(
    content: str,
    *,
    author_is_bot: bool,
    author_in_voice: bool,
    rules: NarrationRules,
    system: bool = False,
    silent: bool = False,
    stage_audience: bool = False,
) -> str | None:
    """Why a message is not read, or None to read it.

    System messages (a thread was created, a member joined, a pin) are Discord's words, not a
    member's: reading them would speak a thread's name or a join notice aloud. Every reason is
    known before anything is spent; a member who asked never to be read
    (`MemberSettings.narrated`) is refused next, once their settings are read.
    """
    if system:
        return "a system message"
    if author_is_bot:
        return "written by a bot"
    if silent and rules.skip_silent:
        return "sent with @silent"
    if rules.skip_prefix and content.lstrip().startswith(rules.skip_prefix):
        return "starts with the skip prefix"
    if rules.require_prefix and not content.lstrip().startswith(rules.require_prefix):
        return "does not start with the prefix this server requires"
    if stage_audience and rules.ignore_stage_audience:
        return "author is in a Stage's audience"
    if rules.voice_only and not author_in_voice:
        return "author is not in the voice channel"
    return None


def member_voice(settings: MemberSettings) -> str:
    """The member's chosen voice, or the one their id always gets."""
    return settings.voice or voice_for_user(settings.user_id).name


class AutoPrefix:
    """Marker: decide "Alice said" from who was heard last in the channel."""


AUTO = AutoPrefix()


@dataclass(frozen=True, slots=True)
class Reading:
    """What is said for one message: the words, and the "Alice said" they start with."""

    text: str
    prefix: str | None = None
    #: The speaker's name as it is said (a merged two-speaker call labels their lines with it).
    name: str = ""


class Narrator:
    """Composes what is said for each message, remembering who was last heard per channel.

    A turn is remembered only once the message is accepted for reading (`heard`): a message
    that is refused (quota, full queue) was never heard, so the next one from the same member
    still says "Alice said".
    """

    def __init__(
        self, *, window: float = SAME_SPEAKER_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._last: OrderedDict[int, tuple[int, float]] = OrderedDict()

    def compose(
        self,
        facts: MessageFacts,
        *,
        channel_id: int,
        author_id: int,
        author_name: str,
        rules: NarrationRules,
        prefix: str | AutoPrefix | None = AUTO,
    ) -> Reading:
        """The words to speak ("Alice said: …"); empty text when nothing is worth reading.

        `prefix` re-uses the one a message got when it arrived (an edit keeps its place).
        """
        name = clean_name(author_name) or "someone"
        if isinstance(prefix, AutoPrefix):
            prefix = self._prefix(channel_id, author_id, name, facts.is_reply, rules)
        room = rules.text_limit - (len(prefix) + 2 if prefix else 0)
        options = CleanupOptions(
            emoji=rules.emoji,
            max_length=max(1, min(rules.max_length, room)),
            max_repeat=rules.max_repeat,
        )
        if rules.require_prefix:
            facts = replace(facts, content=rules.without_prefix(facts.content))
        text = clean_message(facts, options)
        if not text:
            return Reading("", name=name)
        return Reading(with_prefix(prefix, text), prefix, name)

    def heard(self, channel_id: int, author_id: int) -> None:
        """Remember that `author_id` was the last one read in `channel_id`."""
        now = self._clock()
        while self._last:  # Forget channels quiet for longer than the window.
            oldest, (_, at) = next(iter(self._last.items()))
            if at >= now - self.window:
                break
            del self._last[oldest]
        self._last.pop(channel_id, None)
        self._last[channel_id] = (author_id, now)

    def _prefix(
        self, channel_id: int, author_id: int, author_name: str, reply: bool, rules: NarrationRules
    ) -> str | None:
        if not rules.say_names:
            return None
        last = self._last.get(channel_id)
        if last is not None and last[0] == author_id and self._clock() - last[1] <= self.window:
            return None
        return announce(author_name, rules.replied if reply else rules.said)


def announce(name: str, said: str, *, reply: bool = False) -> str:
    """ "Alice said" in the server's wording; with the default wording a reply is "replied"."""
    if said == DEFAULT_SAID and reply:
        said = DEFAULT_REPLIED
    return said.replace("{name}", name)
