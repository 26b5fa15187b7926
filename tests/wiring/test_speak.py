"""The whole bot, wired: real interactions through the real command tree and real cogs.

discord.com is answered by aioresponses (tests.discord_fakes.FakeDiscord); Segmind is the fake
server on 127.0.0.1, reached over real HTTP.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot import audio
from bot.audio import AudioFormat
from tests import discord_fakes as df
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.wiring.harness import ALICE, BOB, DISCORD_TOKEN, Wired


def _ogg_duration(call: df.RestCall) -> float:
    ((name, data),) = call.files.items()
    assert name.endswith(".ogg")
    assert audio.sniff_format("audio/ogg", data[:64]) is AudioFormat.OGG
    return audio.decode(data, AudioFormat.OGG).duration


async def test_speak_defers_first_then_posts_decodable_ogg_opus(wired: Wired) -> None:
    text = "Hello everyone, welcome to the server!"
    calls = await wired.invoke(
        df.slash_command("speak", user_id=ALICE, text=text, voice="kore", temperature=0.7)
    )
    first, last = calls[0], calls[-1]
    assert (first.method, first.json) == ("POST", {"type": 5})  # Deferred, within 3 s.
    assert last.method == "PATCH"
    assert last.path.endswith("/messages/@original")
    assert _ogg_duration(last) == pytest.approx(wired.segmind.expected_duration(text), abs=0.05)
    assert last.json is not None
    assert "**Kore**" in last.json["content"]
    assert last.json["allowed_mentions"] == {"parse": []}
    # Anything between is a progress edit without files.
    assert all(c.method == "PATCH" and not c.files for c in calls[1:-1])
    assert wired.segmind.tts_calls == 1
    assert wired.segmind.requests[0].json_body == {
        "text": text,
        "voice_1": "Kore",
        "temperature": 0.7,
    }


async def test_two_speakers_and_style_reach_the_api(wired: Wired) -> None:
    await wired.invoke(
        df.slash_command(
            "speak",
            user_id=ALICE,
            text="Joe: Ready? / Jane: Always.",
            voice="Puck",
            voice_2="Kore",
            style="cheerful",
        )
    )
    assert wired.segmind.requests[0].json_body == {
        "text": "Say cheerfully: Joe: Ready? / Jane: Always.",
        "voice_1": "Puck",
        "voice_2": "Kore",
        "temperature": 0.4,
    }


async def test_voice_autocomplete_returns_matching_voices(wired: Wired) -> None:
    calls = await wired.invoke(
        df.autocomplete("speak", "voice", user_id=ALICE, text="hi", voice="ach")
    )
    (call,) = calls
    assert call.json is not None
    assert call.json["type"] == 8
    assert call.json["data"]["choices"] == [
        {"name": "Achernar — Soft", "value": "Achernar"},
        {"name": "Achird — Friendly", "value": "Achird"},
        {"name": "Sadachbia — Lively", "value": "Sadachbia"},  # Substring after prefixes.
    ]
    assert wired.segmind.tts_calls == 0


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"text": "hi", "voice": "Bob"}, "not one of the 30 voices"),
        ({"text": "hi", "voice_2": "Korr"}, "Did you mean Kore"),
        ({"text": "   "}, "no text to speak"),
        ({"text": "x" * 2001}, "the limit is 2,000"),
        ({"text": "hi", "style": "s" * 101}, "keep it under 100"),
    ],
)
async def test_invalid_input_answers_privately_and_costs_nothing(
    wired: Wired, options: dict[str, Any], fragment: str
) -> None:
    (call,) = await wired.invoke(df.slash_command("speak", user_id=ALICE, **options))
    assert call.json is not None
    assert call.json["type"] == 4
    assert call.json["data"]["flags"] & df.EPHEMERAL
    assert fragment in call.json["data"]["content"]
    assert wired.segmind.tts_calls == 0


async def test_a_429_from_the_api_delays_then_delivers(wired: Wired) -> None:
    wired.segmind.enqueue(fs.rate_limited(retry_after=1.0))
    text = "Patience is a virtue."
    calls = await wired.invoke(df.slash_command("speak", user_id=BOB, text=text))
    assert wired.segmind.statuses() == [429, 200]
    gap = wired.segmind.requests[1].received - wired.segmind.requests[0].received
    assert gap >= 0.95
    assert _ogg_duration(calls[-1]) == pytest.approx(
        wired.segmind.expected_duration(text), abs=0.05
    )


async def test_cooldown_is_private_with_a_relative_timestamp(
    wired: Wired,
) -> None:
    object.__setattr__(wired.bot.services.scheduler.config, "user_cooldown", 30.0)
    await wired.invoke(df.slash_command("speak", user_id=ALICE, text="one"))
    (call,) = await wired.invoke(df.slash_command("speak", user_id=ALICE, text="two"))
    assert call.json is not None
    assert call.json["data"]["flags"] & df.EPHEMERAL
    assert re.search(r"cooldown; try again <t:\d+:R>", call.json["data"]["content"])
    assert wired.segmind.tts_calls == 1


async def test_speak_this_message(wired: Wired) -> None:
    message = df.message_payload("Read me out loud, please.", author_id=BOB)
    calls = await wired.invoke(df.message_command("Speak this message", message, user_id=ALICE))
    assert calls[0].json == {"type": 5}
    assert calls[-1].json is not None
    assert "/channels/" in calls[-1].json["content"]  # A link to the spoken message.
    assert wired.segmind.requests[0].json_body is not None
    assert wired.segmind.requests[0].json_body["text"] == "Read me out loud, please."


async def test_upstream_refusal_replaces_the_placeholder(wired: Wired) -> None:
    wired.segmind.enqueue(fs.status(400, "text violates policy"))
    calls = await wired.invoke(df.slash_command("speak", user_id=ALICE, text="something"))
    assert calls[0].json == {"type": 5}
    assert calls[-1].json is not None
    assert "text violates policy" in calls[-1].json["content"]
    assert not calls[-1].files
    assert wired.segmind.tts_calls == 1


async def test_shutdown_tells_members_whose_requests_were_waiting(wired: Wired) -> None:
    wired.segmind.latency = 30.0  # Nothing finishes before the shutdown.
    object.__setattr__(wired.bot.settings, "shutdown_grace", 0.2)
    payload = df.slash_command("speak", user_id=ALICE, text="never finished")
    wired.bot._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
    await wired.discord.wait_for(lambda calls: any(c.json == {"type": 5} for c in calls))
    await wired.bot.close()
    last = wired.discord.for_interaction(payload)[-1]
    assert last.json is not None
    assert "restarting" in last.json["content"]


async def test_the_token_and_key_never_reach_discord_messages(wired: Wired) -> None:
    wired.segmind.enqueue(fs.status(401, f"bad key {TEST_API_KEY}"))
    calls = await wired.invoke(df.slash_command("speak", user_id=ALICE, text="hello"))
    text = repr([c.json for c in calls])
    assert TEST_API_KEY not in text
    assert DISCORD_TOKEN not in text
    assert "misconfigured" in text


async def test_out_of_credits_pauses_everyone_with_one_alert(wired: Wired) -> None:
    wired.segmind.credits = 0
    first = await wired.invoke(df.slash_command("speak", user_id=ALICE, text="one"))
    assert first[-1].json is not None
    assert "out of credits" in first[-1].json["content"]
    # Later requests are refused privately without calling the API at all.
    (second,) = await wired.invoke(df.slash_command("speak", user_id=BOB, text="two"))
    assert second.json is not None
    assert second.json["data"]["flags"] & df.EPHEMERAL
    assert "out of credits" in second.json["data"]["content"]
    assert wired.segmind.tts_calls == 1
    await wired.discord.wait_for(lambda calls: wired.discord.channel_messages())
    (alert,) = wired.discord.channel_messages()
    assert alert.json is not None
    assert "paused for everyone" in alert.json["content"]


async def test_long_text_in_chat_is_made_in_chunks_and_posted_as_one_file(
    wired: Wired,
) -> None:
    sentence = "Every sentence here adds to a text that is far too long for one call. "
    text = sentence * 12  # About 840 characters: two chunks of at most 500.
    calls = await wired.invoke(df.slash_command("speak", user_id=ALICE, text=text))
    bodies = [r.json_body["text"] for r in wired.segmind.requests if r.json_body]
    assert len(bodies) == 2
    assert "".join(bodies).replace(" ", "") == text.replace(" ", "")
    expected = sum(wired.segmind.expected_duration(body) for body in bodies)
    assert _ogg_duration(calls[-1]) == pytest.approx(expected, abs=0.05)


async def test_a_repeated_speak_is_free_and_identical_unless_fresh(wired: Wired) -> None:
    first = await wired.invoke(df.slash_command("speak", user_id=ALICE, text="Hello again!"))
    await wired.bot.services.speech.source.drain()
    second = await wired.invoke(df.slash_command("speak", user_id=BOB, text="Hello again!"))
    assert wired.segmind.tts_calls == 1
    assert second[-1].files == first[-1].files
    await wired.invoke(df.slash_command("speak", user_id=BOB, text="Hello again!", fresh=True))
    assert wired.segmind.tts_calls == 2
