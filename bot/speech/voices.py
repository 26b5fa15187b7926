"""The 30 Gemini TTS voices, with the one-word character that helps members choose."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from bot.locales import line

__all__ = [
    "DEFAULT_VOICE",
    "MENU_LIMIT",
    "VOICES",
    "UnknownVoiceError",
    "Voice",
    "find_voice",
    "get_voice",
    "search",
    "voice_for_user",
    "voice_menus",
]


@dataclass(frozen=True, slots=True)
class Voice:
    name: str
    character: str

    @property
    def label(self) -> str:
        """How a voice is shown in autocomplete and listings."""
        return f"{self.name} — {self.character}"


VOICES: tuple[Voice, ...] = tuple(
    Voice(name, character)
    for name, character in (
        ("Zephyr", "Bright"),
        ("Puck", "Upbeat"),
        ("Charon", "Informative"),
        ("Kore", "Firm"),
        ("Fenrir", "Excitable"),
        ("Leda", "Youthful"),
        ("Orus", "Firm"),
        ("Aoede", "Breezy"),
        ("Callirrhoe", "Easy-going"),
        ("Autonoe", "Bright"),
        ("Enceladus", "Breathy"),
        ("Iapetus", "Clear"),
        ("Umbriel", "Easy-going"),
        ("Algieba", "Smooth"),
        ("Despina", "Smooth"),
        ("Erinome", "Clear"),
        ("Algenib", "Gravelly"),
        ("Rasalgethi", "Informative"),
        ("Laomedeia", "Upbeat"),
        ("Achernar", "Soft"),
        ("Alnilam", "Firm"),
        ("Schedar", "Even"),
        ("Gacrux", "Mature"),
        ("Pulcherrima", "Forward"),
        ("Achird", "Friendly"),
        ("Zubenelgenubi", "Casual"),
        ("Vindemiatrix", "Gentle"),
        ("Sadachbia", "Lively"),
        ("Sadaltager", "Knowledgeable"),
        ("Sulafat", "Warm"),
    )
)

DEFAULT_VOICE = "Zephyr"

_BY_NAME = {voice.name.casefold(): voice for voice in VOICES}


class UnknownVoiceError(ValueError):
    """A voice name that is not one of the 30; carries close matches for a helpful message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.suggestions = [v.name for v in search(name, limit=3)] if name.strip() else []
        if self.suggestions:
            said = line("voices.unknown_hint", name=name, suggestions=", ".join(self.suggestions))
        else:
            said = line("voices.unknown", name=name)
        super().__init__(said)


def get_voice(name: str) -> Voice:
    """Look a voice up by name, ignoring case, surrounding spaces and an autocomplete label."""
    key = name.split("—", 1)[0].strip().casefold()
    try:
        return _BY_NAME[key]
    except KeyError:
        raise UnknownVoiceError(name) from None


def find_voice(name: str) -> Voice | None:
    try:
        return get_voice(name)
    except UnknownVoiceError:
        return None


def search(query: str, *, limit: int = 25) -> list[Voice]:
    """Rank voices for autocomplete: prefix, then substring (name or character), then fuzzy.

    An empty query lists voices in catalogue order, so the first page of autocomplete is useful.
    """
    q = query.split("—", 1)[0].strip().casefold()
    if not q:
        return list(VOICES[:limit])
    scored: list[tuple[float, int, Voice]] = []
    for index, voice in enumerate(VOICES):
        name = voice.name.casefold()
        character = voice.character.casefold()
        if name.startswith(q):
            score = 0.0
        elif character.startswith(q):
            score = 1.0
        elif q in name or q in character:
            score = 2.0
        else:
            ratio = max(
                difflib.SequenceMatcher(None, q, name).ratio(),
                difflib.SequenceMatcher(None, q, name[: len(q)]).ratio(),
                difflib.SequenceMatcher(None, q, character).ratio(),
            )
            if ratio < 0.7:
                continue
            score = 4.0 - ratio
        scored.append((score, index, voice))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [voice for _, _, voice in scored[:limit]]


def voice_for_user(user_id: int) -> Voice:
    """A voice picked stably from a member's id, so they sound the same until they choose one.

    A keyed hash rather than `hash()`: Python salts string hashes per process, and the same
    member must keep the same voice across restarts.
    """
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8, person=b"tts-voice").digest()
    return VOICES[int.from_bytes(digest, "big") % len(VOICES)]


#: The most options one Discord select menu holds.
MENU_LIMIT = 25


def voice_menus(limit: int = MENU_LIMIT) -> list[tuple[Voice, ...]]:
    """The voices grouped by character (Bright, Firm, …, in alphabetical order), cut into as
    few menus as `limit` allows, each about as long as the others and never splitting a
    character between two menus, so a member finds all the "Firm" voices side by side."""
    groups: dict[str, list[Voice]] = {}
    for voice in VOICES:
        groups.setdefault(voice.character, []).append(voice)
    count = -(-len(VOICES) // limit)
    target = -(-len(VOICES) // count)
    menus: list[tuple[Voice, ...]] = []
    current: list[Voice] = []
    for character in sorted(groups, key=str.casefold):
        group = groups[character]
        if current and (len(current) + len(group) > limit or len(current) >= target):
            menus.append(tuple(current))
            current = []
        current.extend(group)
    menus.append(tuple(current))
    return menus
