from __future__ import annotations

import pytest

from bot.speech.cleanup import MessageFacts
from bot.speech.narration import NarrationRules, Narrator, member_voice, skip_reason
from bot.speech.voices import voice_for_user
from bot.storage import GuildSettings, MemberSettings

RULES = NarrationRules()


@pytest.mark.parametrize(
    ("content", "bot", "in_voice", "rules", "reason"),
    [
        ("hello", False, True, RULES, None),
        ("hello", True, True, RULES, "written by a bot"),
        (";secret", False, True, RULES, "starts with the skip prefix"),
        ("  ;secret", False, True, RULES, "starts with the skip prefix"),
        ("hello", False, False, RULES, "author is not in the voice channel"),
        ("hello", False, False, NarrationRules(voice_only=False), None),
        (";hi", False, True, NarrationRules(skip_prefix=""), None),
    ],
)
def test_skip_reason(
    content: str, bot: bool, in_voice: bool, rules: NarrationRules, reason: str | None
) -> None:
    assert skip_reason(content, author_is_bot=bot, author_in_voice=in_voice, rules=rules) == reason


def test_rules_come_from_the_server_settings() -> None:
    guild = GuildSettings.defaults(1)
    rules = NarrationRules.from_guild(guild)
    assert rules.skip_prefix == guild.narration_skip_prefix
    assert rules.voice_only == guild.narration_voice_only
    assert rules.max_length == guild.narration_max_length


def test_name_said_once_per_minute_of_talking() -> None:
    now = [0.0]
    narrator = Narrator(clock=lambda: now[0])

    def say(author: int, name: str, content: str, rules: NarrationRules = RULES) -> str:
        return narrator.compose(
            MessageFacts(content), channel_id=5, author_id=author, author_name=name, rules=rules
        )

    assert say(1, "Alice", "hi all") == "Alice said: hi all"
    now[0] = 20
    assert say(1, "Alice", "how are you") == "how are you"
    now[0] = 30
    assert say(2, "Bob", "fine") == "Bob said: fine"
    now[0] = 35
    assert say(1, "Alice", "good") == "Alice said: good"
    now[0] = 200
    assert say(1, "Alice", "still here") == "Alice said: still here"
    assert say(1, "Alice", "no names", NarrationRules(say_names=False)) == "no names"


def test_compose_cleans_and_caps() -> None:
    narrator = Narrator(clock=lambda: 0.0)
    text = narrator.compose(
        MessageFacts("<@42> look https://example.com ||secret||", users={42: "Carol"}),
        channel_id=1,
        author_id=2,
        author_name="Dan",
        rules=NarrationRules(max_length=60),
    )
    assert text.startswith("Dan said: Carol look a link spoiler")
    assert "secret" not in text
    assert (
        narrator.compose(
            MessageFacts("   "), channel_id=1, author_id=2, author_name="Dan", rules=RULES
        )
        == ""
    )


def test_member_voice_is_chosen_or_stable() -> None:
    assert member_voice(MemberSettings(user_id=7, voice="Kore")) == "Kore"
    assert member_voice(MemberSettings.defaults(7)) == voice_for_user(7).name
