"""What the player plays: an utterance, the clips of one message as they are made, with the
ways to withdraw its calls and to tell its member; split from `bot.playback.player` for size
(import either)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from bot.errors import BotError
from bot.locales import line

__all__ = ["Utterance", "failure_line", "single_clip"]

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(eq=False)
class Utterance:
    """Something to say: who asked, the Ogg Opus clips in order as they arrive, and how to
    tell the member if it fails after it was queued."""

    #: Who is speaking, as /queue shows it (never the text: it may come from anywhere).
    label: str
    user_id: int
    clips: AsyncIterator[bytes]
    #: Withdraws synthesis already queued for this utterance (it may not have started playing).
    on_close: Callable[[], object] | None = None
    #: Tells the member a line about this message (a later chunk failed, the bot left…).
    notify: Callable[[str], Awaitable[object]] | None = None
    #: Estimated seconds of speech, for /queue; None when unknown.
    seconds: float | None = None
    #: The Discord message it reads (narration), so a delete or an edit can find it.
    source_id: int | None = None
    #: Queues its first call, for a message accepted while the bot could not be heard (a
    #: Stage's audience): the player calls it once the bot may be heard, so nothing is made
    #: for nobody. None: its calls were queued before it was (the usual case), or it ran.
    start: Callable[[], Awaitable[object]] | None = None
    #: Event-loop time it started waiting for the bot to be heard on a Stage (the player's).
    held_since: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    skipped: bool = False
    #: The number of clips played so far.
    parts_played: int = 0

    async def close(self) -> None:
        """Stop making clips nobody will hear (cancels synthesis still under way), and never
        start what was held unmade."""
        self.start = None
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()
        closer = getattr(self.clips, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()

    async def report(self, line: str) -> None:
        """Tell the member, if there is a way to; a failure to tell is logged, not raised."""
        if self.notify is None:
            return
        try:
            await self.notify(line)
        except Exception as exc:
            log.info("Could not tell user %s about utterance %s: %s", self.user_id, self.id, exc)


def failure_line(error: BotError, parts_played: int) -> str:
    """The member's line for a message that failed in voice; after its first part played,
    say which part, so the sudden silence is explained."""
    if parts_played == 0:
        return line("playback.warning", message=error.user_message)
    return line("playback.part_failed", part=parts_played + 1, message=error.user_message)


def single_clip(label: str, user_id: int, clip: bytes) -> Utterance:
    async def one() -> AsyncIterator[bytes]:
        yield clip

    return Utterance(label=label, user_id=user_id, clips=one())
