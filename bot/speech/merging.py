"""Narration that is behind reads several waiting messages in one call: what that call says.

On a free key (5 calls a minute, ~18 s each) a lively channel writes faster than calls can be
made; every call saved is a message heard sooner. Merging never reorders: only the message
last queued, still waiting for its call, takes the next one. One member's messages simply
follow each other; two members' (a server setting, off by default because Segmind's mapping
of `voice_1`/`voice_2` onto the names in the text is unconfirmed) become a two-speaker
dialogue, one "Name: …" line per turn, each voice bound to its speaker's name as Gemini does.

"Alice said" stays inside each message's words: the labels only choose the voice, so what is
announced is exactly what would be announced without merging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from bot.speech.cleanup import with_prefix

__all__ = [
    "JoinWaiting",
    "MergeDecision",
    "Merged",
    "Part",
    "ReadAlone",
    "decide_merge",
    "dialogue_voices",
    "speaker_label",
]

#: What may appear in a speaker's label: a colon or a line break would end it early.
_LABEL_UNSAFE = re.compile(r"[^\w' -]+")


@dataclass(frozen=True, slots=True)
class Part:
    """One message inside a merged call."""

    message_id: int
    author_id: int
    #: How the member's name is said (their /voice name where they may change their
    #: nickname, else their display name).
    name: str
    #: What is said for it, its "Alice said" included.
    text: str
    #: The "Alice said" it starts with, if any (kept so a deletion can hand it on).
    prefix: str | None = None


def speaker_label(name: str, fallback: str) -> str:
    """A name fit to label dialogue lines: no colon or line break, never empty."""
    label = " ".join(_LABEL_UNSAFE.sub(" ", name).split())[:40].strip()
    return label or fallback


@dataclass(frozen=True, slots=True)
class Merged:
    """The messages one call reads, in the order they were written."""

    parts: tuple[Part, ...]

    @property
    def message_ids(self) -> tuple[int, ...]:
        return tuple(part.message_id for part in self.parts)

    @property
    def speakers(self) -> tuple[int, ...]:
        """The members heard, in the order they first speak (the first is the caller)."""
        return tuple(dict.fromkeys(part.author_id for part in self.parts))

    def labels(self) -> dict[int, str]:
        """Each speaker's label, distinct even for two members with the same name."""
        labels: dict[int, str] = {}
        for n, author_id in enumerate(self.speakers, start=1):
            part = next(p for p in self.parts if p.author_id == author_id)
            label = speaker_label(part.name, f"Speaker {n}")
            if any(label.casefold() == other.casefold() for other in labels.values()):
                label = f"{label} {n}"
            labels[author_id] = label
        return labels

    def text(self, *, dialogue: bool) -> str:
        """What the call says: the words one after another, or (`dialogue`, for two voices)
        one "Name: …" line per turn, a member's consecutive messages on one line."""
        if not dialogue or len(self.speakers) < 2:
            return " ".join(part.text for part in self.parts)
        labels = self.labels()
        turns: list[tuple[int, list[str]]] = []
        for part in self.parts:
            if turns and turns[-1][0] == part.author_id:
                turns[-1][1].append(part.text)
            else:
                turns.append((part.author_id, [part.text]))
        return "\n".join(f"{labels[who]}: {' '.join(words)}" for who, words in turns)

    def with_part(self, part: Part) -> Merged:
        return Merged((*self.parts, part))

    def part(self, message_id: int) -> Part | None:
        return next((p for p in self.parts if p.message_id == message_id), None)

    def with_text(self, message_id: int, text: str) -> Merged:
        """The call with one message's words as edited (its "Alice said" kept in `text`)."""
        return Merged(
            tuple(replace(p, text=text) if p.message_id == message_id else p for p in self.parts)
        )

    def without(self, message_id: int) -> Merged | None:
        """The call without one message (deleted before its turn); None if nothing is left.

        "Alice said" follows the rules it would have without merging: a removed message that
        announced its speaker hands the announcement on to the speaker's next message when
        that one directly follows it, and a speaker who now directly follows themself is not
        announced twice.
        """
        index = next((n for n, p in enumerate(self.parts) if p.message_id == message_id), None)
        if index is None:
            return self
        gone = self.parts[index]
        kept = [*self.parts[:index], *self.parts[index + 1 :]]
        if index < len(kept):
            after = kept[index]
            if gone.prefix and after.prefix is None and after.author_id == gone.author_id:
                after = replace(
                    after, text=with_prefix(gone.prefix, after.text), prefix=gone.prefix
                )
            before = kept[index - 1] if index > 0 else None
            lead = f"{after.prefix}: "
            repeated = before is not None and before.author_id == after.author_id
            if repeated and after.prefix and after.text.startswith(lead):
                after = replace(after, text=after.text[len(lead) :], prefix=None)
            kept[index] = after
        return Merged(tuple(kept)) if kept else None


def dialogue_voices(merged: Merged, voices: Mapping[int, str]) -> tuple[str, str] | None:
    """The two voices of a two-speaker call, or None to read it in one voice: one speaker,
    or two members who happen to share a voice (their "X said" tells them apart)."""
    if len(merged.speakers) != 2:
        return None
    first, second = (voices[member] for member in merged.speakers)
    return None if first == second else (first, second)


@dataclass(frozen=True, slots=True)
class JoinWaiting:
    """Read the message in the waiting call: `merged` is what that call now says."""

    merged: Merged
    #: The two voices of a dialogue, or None for one voice.
    voices: tuple[str, str] | None

    def text(self) -> str:
        return self.merged.text(dialogue=self.voices is not None)


@dataclass(frozen=True, slots=True)
class ReadAlone:
    """Read the message in a call of its own, and why (for the log)."""

    reason: str


MergeDecision = JoinWaiting | ReadAlone


def decide_merge(
    waiting: Merged | None,
    part: Part,
    *,
    enabled: bool,
    unmade: bool,
    two_speakers: bool,
    voices: Mapping[int, str],
    limit: int,
) -> MergeDecision:
    """Whether a new message joins the call waiting at the tail of narration's queue.

    It does only when merging is on, that call has not been started (`unmade`: once a call is
    being made, or came from the cache, there is nothing left to save), the speakers stay
    within what the server allows (one member, or two with its setting: never a third), and
    the merged text, labels included, fits `limit` (the text limit in force, no larger than
    one chunk: a merged call is one call). `voices` maps each speaker to their voice.
    """
    if not enabled:
        return ReadAlone("merging is off")
    if waiting is None:
        return ReadAlone("nothing is waiting")
    if not unmade:
        return ReadAlone("the waiting call is already being made")
    merged = waiting.with_part(part)
    if len(merged.speakers) > (2 if two_speakers else 1):
        return ReadAlone("another speaker")
    join = JoinWaiting(merged, dialogue_voices(merged, voices))
    if len(join.text()) > limit:
        return ReadAlone("too long to share a call")
    return join
