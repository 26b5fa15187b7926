"""The emulator itself: it must refuse what Discord refuses, or e2e tests prove nothing.

Driven with plain aiohttp (REST, raw gateway) and with a bare discord.py client."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import aiohttp
import discord
import pytest
import yarl

from tests.e2e.discord_emulator import Emulator, Interaction, RoleChoice
from tests.e2e.discord_emulator.state import (
    ALICE,
    BOB,
    BOT_ID,
    BOT_ROLE_ID,
    GUILD_ID,
    MUTE_MEMBERS,
    REQUEST_TO_SPEAK,
    STAGE_CHANNEL_ID,
    TEXT_CHANNEL_ID,
    VOICE_CHANNEL_ID,
)


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as response:
        if response.status == 204:
            return 204, None
        assert response.headers["Content-Type"] == "application/json"  # No charset.
        assert "X-RateLimit-Remaining" in response.headers
        return response.status, await response.json()


def callback_url(emulator: Emulator, interaction: Interaction) -> str:
    return f"{emulator.base_url}/interactions/{interaction.id}/{interaction.token}/callback"


def original_url(emulator: Emulator, interaction: Interaction) -> str:
    app = interaction.payload["application_id"]
    return f"{emulator.base_url}/webhooks/{app}/{interaction.token}/messages/@original"


async def test_wrong_or_missing_token_is_unauthorized(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        assert await call(anonymous, "GET", f"{emulator.base_url}/users/@me") == (
            401,
            {"message": "401: Unauthorized", "code": 0},
        )
        wrong = {"Authorization": "Bot not-the-token"}
        status, _ = await call(anonymous, "GET", f"{emulator.base_url}/users/@me", headers=wrong)
        assert status == 401


async def test_unknown_route_is_404(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{emulator.base_url}/guilds/1/bans")
    assert (status, body["code"]) == (404, 0)


async def test_content_over_2000_characters_is_invalid_form_body(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.base_url}/channels/{TEXT_CHANNEL_ID}/messages"
    status, body = await call(http, "POST", url, json={"content": "x" * 2001})
    assert (status, body["code"]) == (400, 50035)
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert (await call(http, "POST", url, json={"content": "x" * 2000}))[0] == 200
    assert emulator.channel_messages[-1]["content"] == "x" * 2000


async def test_callback_after_3_seconds_is_unknown_interaction(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    emulator.clock.advance(3.1)
    status, body = await call(http, "POST", callback_url(emulator, interaction), json={"type": 5})
    assert (status, body["code"]) == (404, 10062)


async def test_second_callback_is_already_acknowledged(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    url = callback_url(emulator, interaction) + "?with_response=1"
    status, body = await call(http, "POST", url, json={"type": 5})
    assert status == 200
    assert body["interaction"]["response_message_loading"] is True
    status, body = await call(http, "POST", url, json={"type": 4, "data": {"content": "x"}})
    assert (status, body["code"]) == (400, 40060)


async def test_more_than_25_autocomplete_choices_are_refused(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, focused="voice", voice="k")
    choices = [{"name": str(n), "value": str(n)} for n in range(26)]
    payload: dict[str, Any] = {"type": 8, "data": {"choices": choices}}
    status, body = await call(http, "POST", callback_url(emulator, interaction), json=payload)
    assert (status, body["code"]) == (400, 50035)
    payload = {"type": 8, "data": {"choices": choices[:25]}}
    assert (await call(http, "POST", callback_url(emulator, interaction), json=payload))[0] == 204


def multipart(payload: dict[str, Any], size: int) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    form.add_field("files[0]", b"\0" * size, filename="speech.ogg", content_type="audio/ogg")
    return form


async def test_uploads_are_recorded_and_oversize_ones_refused(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    await call(http, "POST", callback_url(emulator, interaction), json={"type": 5})
    url = original_url(emulator, interaction)
    too_big = multipart({"content": "big"}, emulator.upload_limit + 1)
    status, body = await call(http, "PATCH", url, data=too_big)
    assert (status, body["code"]) == (413, 40005)
    status, body = await call(http, "PATCH", url, data=multipart({"content": "ok"}, 1000))
    assert status == 200
    assert body["attachments"][0]["filename"] == "speech.ogg"
    (upload,) = emulator.requests[-1].files
    assert (upload.filename, upload.data) == ("speech.ogg", b"\0" * 1000)
    assert emulator.requests[-1].json == {"content": "ok"}


async def test_editing_the_original_after_the_token_expires_is_refused(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    await call(http, "POST", callback_url(emulator, interaction), json={"type": 5})
    url = original_url(emulator, interaction)
    assert (await call(http, "PATCH", url, json={"content": "in time"}))[0] == 200
    emulator.clock.advance(15 * 60 + 1)
    status, body = await call(http, "PATCH", url, json={"content": "too late"})
    assert (status, body["code"]) == (401, 50027)


async def test_gateway_frames_are_one_zlib_stream_flushed_per_message(
    emulator: Emulator,
) -> None:
    url = yarl.URL(emulator.gateway_url).with_query(v=10, encoding="json", compress="zlib-stream")
    inflate = zlib.decompressobj()
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        hello = await ws.receive_bytes(timeout=5)
        assert hello.endswith(b"\x00\x00\xff\xff")
        assert json.loads(inflate.decompress(hello))["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})
        closing = await ws.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4004)


async def test_bare_discord_py_client_logs_in_and_sees_the_guild(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", emulator.base_url)
    gateway = yarl.URL(emulator.gateway_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", gateway)
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)  # Before the bot: in GUILD_CREATE.
    intents = discord.Intents.none()
    intents.guilds = intents.voice_states = True
    client = discord.Client(intents=intents)
    ready = asyncio.Event()
    client.event(_set_on_ready(ready))
    runner = asyncio.create_task(client.start(emulator.token))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        guild = client.get_guild(GUILD_ID)
        assert guild is not None
        voice = guild.get_channel(VOICE_CHANNEL_ID)
        assert isinstance(voice, discord.VoiceChannel)
        assert [m.id for m in voice.members] == [ALICE]
        permissions = voice.permissions_for(guild.me)
        assert permissions.connect
        assert permissions.speak
        assert not permissions.manage_guild
        assert isinstance(guild.get_channel(TEXT_CHANNEL_ID), discord.TextChannel)
        assert emulator.gateway.sessions[0].compressor is not None  # zlib-stream was asked.
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)


def _set_on_ready(ready: asyncio.Event) -> Any:
    async def on_ready() -> None:
        ready.set()

    return on_ready


async def test_bare_client_with_a_wrong_token_cannot_log_in(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", emulator.base_url)
    client = discord.Client(intents=discord.Intents.none())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()


def voice_message_form(payload: dict[str, Any], files: int = 1) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for n in range(files):
        form.add_field(
            f"files[{n}]", b"OggS", filename="voice-message.ogg", content_type="audio/ogg"
        )
    return form


@pytest.mark.parametrize(
    ("change", "files", "code"),
    [
        ({"content": "hi"}, 1, 50161),
        ({}, 2, 50159),
        ({}, 0, 50159),
        ({"attachments": [{"id": "0", "waveform": "AAA="}]}, 1, 50160),
        ({"attachments": [{"id": "0", "duration_secs": 1.0, "waveform": "AA" * 200}]}, 1, 50035),
    ],
)
async def test_a_voice_message_is_refused_unless_as_discord_documents(
    emulator: Emulator,
    http: aiohttp.ClientSession,
    change: dict[str, Any],
    files: int,
    code: int,
) -> None:
    url = f"{emulator.base_url}/channels/{TEXT_CHANNEL_ID}/messages"
    good = {
        "flags": 8192,
        "attachments": [{"id": "0", "duration_secs": 1.0, "waveform": "AAEC"}],
    }
    status, body = await call(http, "POST", url, data=voice_message_form(good))
    assert status == 200
    assert body["attachments"][0]["duration_secs"] == 1.0
    status, body = await call(http, "POST", url, data=voice_message_form(good | change, files))
    assert (status, body["code"]) == (400, code)


def voice_state_url(emulator: Emulator) -> str:
    return f"{emulator.base_url}/guilds/{GUILD_ID}/voice-states/@me"


def suppressed(emulator: Emulator) -> bool:
    return emulator.world.voice_states[BOT_ID].suppress


def raised_hand(emulator: Emulator) -> str | None:
    return emulator.world.voice_states[BOT_ID].request_to_speak_timestamp


async def test_becoming_a_stage_speaker_needs_mute_members_in_that_stage(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = voice_state_url(emulator)
    unsuppress = {"channel_id": str(STAGE_CHANNEL_ID), "suppress": False}
    status, body = await call(http, "PATCH", url, json=unsuppress)
    assert (status, body["code"]) == (404, 10065)  # Not in voice at all.
    emulator.world.set_voice(BOT_ID, STAGE_CHANNEL_ID, "session")
    assert suppressed(emulator)  # A Stage is joined in the audience.
    status, body = await call(http, "PATCH", url, json=unsuppress)
    assert (status, body) == (403, {"message": "Missing Permissions", "code": 50013})
    assert suppressed(emulator)
    emulator.world.role_permissions[BOT_ROLE_ID] |= MUTE_MEMBERS
    # Mute Members guild-wide, but denied on this Stage: still refused.
    deny = {"id": str(BOT_ROLE_ID), "type": 0, "allow": "0", "deny": str(MUTE_MEMBERS)}
    emulator.world.overwrites[STAGE_CHANNEL_ID] = [deny]
    status, body = await call(http, "PATCH", url, json=unsuppress)
    assert (status, body["code"]) == (403, 50013)
    emulator.world.overwrites.clear()
    assert await call(http, "PATCH", url, json=unsuppress) == (204, None)
    assert not suppressed(emulator)
    # Suppressing oneself is always allowed.
    emulator.world.role_permissions[BOT_ROLE_ID] &= ~MUTE_MEMBERS
    suppress = {"channel_id": str(STAGE_CHANNEL_ID), "suppress": True}
    assert await call(http, "PATCH", url, json=suppress) == (204, None)
    assert suppressed(emulator)


async def test_the_channel_must_be_the_stage_the_user_is_in(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.world.role_permissions[BOT_ROLE_ID] |= MUTE_MEMBERS
    url = voice_state_url(emulator)
    emulator.world.set_voice(BOT_ID, STAGE_CHANNEL_ID, "session")
    for wrong in (VOICE_CHANNEL_ID, TEXT_CHANNEL_ID, None):
        status, body = await call(http, "PATCH", url, json={"channel_id": wrong, "suppress": False})
        assert (status, body["code"]) == (400, 50035), wrong
        assert "channel_id" in body["errors"]
    # In a plain voice channel, there is no Stage to speak on.
    emulator.world.set_voice(BOT_ID, VOICE_CHANNEL_ID, "session")
    body_json = {"channel_id": VOICE_CHANNEL_ID, "suppress": False}
    status, body = await call(http, "PATCH", url, json=body_json)
    assert (status, body["code"]) == (400, 50035)
    status, body = await call(http, "PATCH", f"{emulator.base_url}/guilds/1/voice-states/@me")
    assert (status, body["code"]) == (404, 10004)


async def test_raising_a_hand_needs_request_to_speak_and_is_dispatched(
    emulator: Emulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = voice_state_url(emulator)
    emulator.world.set_voice(BOT_ID, STAGE_CHANNEL_ID, "session")
    deny = {"id": str(GUILD_ID), "type": 0, "allow": "0", "deny": str(REQUEST_TO_SPEAK)}
    emulator.world.overwrites[STAGE_CHANNEL_ID] = [deny]
    hand = {"channel_id": STAGE_CHANNEL_ID, "request_to_speak_timestamp": "2030-01-01T00:00:00"}
    status, body = await call(http, "PATCH", url, json=hand)
    assert (status, body["code"]) == (403, 50013)
    assert raised_hand(emulator) is None
    emulator.world.overwrites.clear()
    status, body = await call(http, "PATCH", url, json=hand | {"request_to_speak_timestamp": "x"})
    assert (status, body["code"]) == (400, 50035)
    updates: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(emulator.gateway, "dispatch", _recorder(updates))
    assert await call(http, "PATCH", url, json=hand) == (204, None)
    assert raised_hand(emulator) == "2030-01-01T00:00:00"
    assert suppressed(emulator)  # A raised hand is not a speaker yet.
    ((event, data),) = updates
    assert event == "VOICE_STATE_UPDATE"
    assert data["user_id"] == str(BOT_ID)
    assert data["channel_id"] == str(STAGE_CHANNEL_ID)
    assert data["suppress"] is True
    assert data["request_to_speak_timestamp"] == hand["request_to_speak_timestamp"]


def _recorder(into: list[Any]) -> Any:
    async def dispatch(event: str, data: dict[str, Any], guild_id: int | None) -> None:
        into.append((event, data))

    return dispatch


async def test_a_role_option_carries_the_role_resolved_as_in_guild_create(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = emulator.world.add_role("Speakers", members=(BOB,))
    guild = emulator.world.guild_create()
    (sent,) = [r for r in guild["roles"] if r["id"] == str(role)]
    members = {m["user"]["id"]: m["roles"] for m in guild["members"]}
    assert (members[str(BOB)], members[str(ALICE)]) == ([str(role)], [])
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(emulator.gateway, "dispatch", _recorder(events))
    await emulator.interact("settings", user_id=ALICE, subcommand="access", role=RoleChoice(role))
    ((_, payload),) = events
    (subcommand,) = payload["data"]["options"]
    assert subcommand["options"] == [{"name": "role", "type": 8, "value": str(role)}]
    assert payload["data"]["resolved"] == {"roles": {str(role): sent}}
    with pytest.raises(ValueError, match="no role"):  # A client offers only existing roles.
        await emulator.interact("settings", user_id=ALICE, role=RoleChoice(12345))


async def test_a_message_command_targets_the_message_it_was_picked_on(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.commands[GUILD_ID] = [
        {"id": "1", "name": "speak", "type": 1},
        {"id": "2", "name": "Speak this message", "type": 3},
    ]
    message = await emulator.send_message("Read me", author_id=ALICE)
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(emulator.gateway, "dispatch", _recorder(events))
    interaction = await emulator.interact_with_message("Speak this message", message, user_id=BOB)
    ((event, payload),) = events
    assert (event, payload["type"], interaction.kind) == ("INTERACTION_CREATE", 2, 2)
    data = payload["data"]
    assert (data["id"], data["type"], data["target_id"]) == ("2", 3, message["id"])
    resolved = data["resolved"]["messages"][message["id"]]
    assert resolved["content"] == "Read me"
    assert resolved["author"]["id"] == str(ALICE)
    assert "member" not in resolved  # Resolved messages carry their author, not the member.
    assert payload["member"]["user"]["id"] == str(BOB)
    with pytest.raises(ValueError, match="no message command"):
        await emulator.interact_with_message("speak", message, user_id=BOB)
