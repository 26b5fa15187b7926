from __future__ import annotations

import pytest

from bot.speech.cleanup import MessageFacts
from bot.speech.narration import NarrationRules, Narrator, member_voice, skip_reason
from bot.speech.request import text_limit
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
    rules = NarrationRules.from_guild(guild, text_limit=2000)
    assert rules.skip_prefix == guild.narration_skip_prefix
    assert rules.voice_only == guild.narration_voice_only
    assert rules.max_length == guild.narration_max_length


def test_name_said_once_per_minute_of_talking() -> None:
    now = [0.0]
    narrator = Narrator(clock=lambda: now[0])

    def say(author: int, name: str, content: str, rules: NarrationRules = RULES) -> str:
        reading = narrator.compose(
            MessageFacts(content), channel_id=5, author_id=author, author_name=name, rules=rules
        )
        narrator.heard(5, author)
        return reading.text

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
    ).text
    assert text.startswith("Dan said: Carol look a link spoiler")
    assert "secret" not in text
    assert (
        narrator.compose(
            MessageFacts("   "), channel_id=1, author_id=2, author_name="Dan", rules=RULES
        ).text
        == ""
    )


def test_member_voice_is_chosen_or_stable() -> None:
    assert member_voice(MemberSettings(user_id=7, voice="Kore")) == "Kore"
    assert member_voice(MemberSettings.defaults(7)) == voice_for_user(7).name


@pytest.mark.parametrize(
    ("system", "silent", "rules", "reason"),
    [
        (True, False, RULES, "a system message"),
        (False, True, RULES, None),  # Read by default: the server decides.
        (False, True, NarrationRules(skip_silent=True), "sent with @silent"),
    ],
)
def test_system_and_silent_messages(
    system: bool, silent: bool, rules: NarrationRules, reason: str | None
) -> None:
    assert (
        skip_reason(
            "Thread name",
            author_is_bot=False,
            author_in_voice=True,
            rules=rules,
            system=system,
            silent=silent,
        )
        == reason
    )


def test_a_message_that_was_never_heard_does_not_use_up_the_name() -> None:
    narrator = Narrator(clock=lambda: 0.0)

    def compose(content: str) -> str:
        return narrator.compose(
            MessageFacts(content), channel_id=5, author_id=1, author_name="Alice", rules=RULES
        ).text

    assert compose("first, refused by the quota") == "Alice said: first, refused by the quota"
    assert compose("second") == "Alice said: second"  # Nobody heard the first.
    narrator.heard(5, 1)
    assert compose("third") == "third"


def test_a_long_message_under_a_low_server_limit_is_read_from_its_start() -> None:
    guild = GuildSettings(1, max_text_length=80, narration_max_length=300)
    rules = NarrationRules.from_guild(guild, text_limit=text_limit(2000, guild.max_text_length))
    assert rules.text_limit == 80
    reading = Narrator().compose(
        MessageFacts("word " * 100), channel_id=5, author_id=1, author_name="Alice", rules=rules
    )
    assert len(reading.text) <= 80  # The whole request, "Alice said" included, fits.
    assert reading.text.startswith("Alice said: word word")
    assert reading.text.endswith("and more")


def test_a_server_limit_above_the_operators_is_not_the_one_in_force() -> None:
    assert text_limit(300, 1000) == 300
    assert text_limit(300, 80) == 80
    assert text_limit(300, None) == 300


def test_the_servers_wording_announces_a_speaker() -> None:
    narrator = Narrator(clock=lambda: 0.0)
    guild = GuildSettings(1, narration_said="{name} says")
    rules = NarrationRules.from_guild(guild, text_limit=2000)
    assert rules.said == "{name} says"
    reading = narrator.compose(
        MessageFacts("hi", is_reply=True), channel_id=1, author_id=2, author_name="Ann", rules=rules
    )
    assert reading.text == "Ann says: hi"  # The server's wording, for replies too.
    default = NarrationRules.from_guild(GuildSettings(1), text_limit=2000)
    replied = narrator.compose(
        MessageFacts("hi", is_reply=True), channel_id=1, author_id=2, author_name="Ann",
        rules=default,
    )  # fmt: skip
    assert replied.text == "Ann replied: hi"
