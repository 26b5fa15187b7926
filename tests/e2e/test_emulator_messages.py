"""The emulator's messages: who sees them, what the bot may post, what a reply may point at,
and the permissions an interaction carries. Were these looser than Discord, an e2e test could
pass with a file only its member sees, or a voice message from a member who may not send one."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import discord
import pytest

from tests.e2e.discord_emulator import Emulator, Interaction
from tests.e2e.discord_emulator.messages import EPHEMERAL, LOADING
from tests.e2e.discord_emulator.state import (
    ALICE,
    BOB,
    BOT_ID,
    BOT_ROLE_ID,
    READ_MESSAGE_HISTORY,
    SEND_VOICE_MESSAGES,
    TEXT_CHANNEL_ID,
    VOICE_CHANNEL_ID,
)
from tests.e2e.test_emulator import call, callback_url, original_url, voice_message_form


def followup_url(emulator: Emulator, interaction: Interaction) -> str:
    app = interaction.payload["application_id"]
    return f"{emulator.base_url}/webhooks/{app}/{interaction.token}?wait=true"


def with_file(payload: dict[str, Any]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    form.add_field("files[0]", b"OggS", filename="speech.ogg", content_type="audio/ogg")
    return form


async def test_a_follow_up_to_a_deferral_still_thinking_becomes_the_answer_and_keeps_its_privacy(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    deferral = {"type": 5, "data": {"flags": EPHEMERAL}}
    assert (await call(http, "POST", callback_url(emulator, interaction), json=deferral))[0] == 204
    thinking = interaction.original
    assert thinking is not None

    # Asked for publicly (no flags), but it resolves the private "thinking…" answer.
    status, first = await call(
        http, "POST", followup_url(emulator, interaction), data=with_file({"content": "<@1>"})
    )
    assert status == 200
    assert first["id"] == thinking["id"]
    assert first["flags"] & EPHEMERAL
    assert not first["flags"] & LOADING
    assert first["attachments"][0]["filename"] == "speech.ogg"
    assert first["edited_timestamp"] is None
    assert interaction.original == first
    assert interaction.followups == []

    # The answer is no longer thinking: the next follow-up is a message of its own.
    status, second = await call(
        http, "POST", followup_url(emulator, interaction), json={"content": "more"}
    )
    assert status == 200
    assert second["id"] != thinking["id"]
    assert not second["flags"] & EPHEMERAL
    assert interaction.followups == [second]


async def test_once_a_deferred_answer_is_edited_a_follow_up_is_a_new_message(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    interaction = await emulator.interact("speak", user_id=ALICE, text="hi")
    await call(http, "POST", callback_url(emulator, interaction), json={"type": 5})
    progress = {"content": "⏳ Queued"}
    assert (await call(http, "PATCH", original_url(emulator, interaction), json=progress))[0] == 200
    private = {"content": "just for you", "flags": EPHEMERAL}
    status, message = await call(http, "POST", followup_url(emulator, interaction), json=private)
    assert status == 200
    assert message["flags"] & EPHEMERAL
    assert interaction.original is not None
    assert interaction.original["content"] == "⏳ Queued"
    assert not interaction.original["flags"] & EPHEMERAL
    assert interaction.followups == [message]


async def test_an_interaction_carries_permissions_resolved_in_its_channel(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = emulator.world
    quiet = world.add_role("No voice notes", members=(ALICE, BOB))
    world.overwrite(TEXT_CHANNEL_ID, quiet, deny=SEND_VOICE_MESSAGES)
    world.overwrite(TEXT_CHANNEL_ID, BOB, allow=SEND_VOICE_MESSAGES)  # A member's own wins.
    world.overwrite(TEXT_CHANNEL_ID, BOT_ROLE_ID, deny=READ_MESSAGE_HISTORY)
    sent: list[dict[str, Any]] = []

    async def dispatch(event: str, data: dict[str, Any], guild_id: int | None) -> None:
        sent.append(data)

    monkeypatch.setattr(emulator.gateway, "dispatch", dispatch)

    def sent_permissions() -> tuple[discord.Permissions, discord.Permissions]:
        (payload,) = sent
        member = discord.Permissions(int(payload["member"]["permissions"]))
        return member, discord.Permissions(int(payload["app_permissions"]))

    await emulator.interact("speak", user_id=ALICE, text="hi")
    alice, app = sent_permissions()
    assert not alice.send_voice_messages
    assert alice.send_messages
    assert not app.read_message_history
    assert app.send_voice_messages
    sent.clear()
    await emulator.interact("speak", user_id=BOB, text="hi")
    bob, _ = sent_permissions()
    assert bob.send_voice_messages
    sent.clear()
    await emulator.interact("speak", user_id=ALICE, text="hi", channel_id=VOICE_CHANNEL_ID)
    alice_elsewhere, app_elsewhere = sent_permissions()
    assert alice_elsewhere.send_voice_messages
    assert app_elsewhere.read_message_history


async def test_the_bot_posts_only_what_its_permissions_in_the_channel_allow(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.base_url}/channels/{TEXT_CHANNEL_ID}/messages"
    voice = {"flags": 8192, "attachments": [{"id": "0", "duration_secs": 1.0, "waveform": "AAEC"}]}
    emulator.world.overwrite(TEXT_CHANNEL_ID, BOT_ROLE_ID, deny=SEND_VOICE_MESSAGES)
    assert emulator.world.channel_permissions(BOT_ID, TEXT_CHANNEL_ID) & SEND_VOICE_MESSAGES == 0
    status, body = await call(http, "POST", url, data=voice_message_form(voice))
    assert (status, body["code"]) == (403, 50013)
    status, posted = await call(http, "POST", url, json={"content": "text is fine"})
    assert status == 200

    emulator.world.overwrite(TEXT_CHANNEL_ID, BOT_ROLE_ID, deny=READ_MESSAGE_HISTORY)
    assert (await call(http, "POST", url, data=voice_message_form(voice)))[0] == 200
    reply = {"content": "re", "message_reference": {"message_id": posted["id"]}}
    status, body = await call(http, "POST", url, json=reply)
    assert (status, body["code"]) == (403, 50013)  # Replying needs Read Message History.


async def test_a_reply_points_at_a_message_everyone_in_the_channel_can_see(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.base_url}/channels/{TEXT_CHANNEL_ID}/messages"
    public = await emulator.interact("speak", user_id=ALICE, text="hi")
    await call(http, "POST", callback_url(emulator, public), json={"type": 5})
    assert public.original is not None
    voice = {
        "flags": 8192,
        "attachments": [{"id": "0", "duration_secs": 1.0, "waveform": "AAEC"}],
        "message_reference": {"message_id": public.original["id"], "fail_if_not_exists": False},
    }
    status, body = await call(http, "POST", url, data=voice_message_form(voice))
    assert status == 200
    assert body["type"] == 19
    assert body["message_reference"]["message_id"] == public.original["id"]
    assert body["referenced_message"]["id"] == public.original["id"]

    private = await emulator.interact("speak", user_id=ALICE, text="hi")
    deferral = {"type": 5, "data": {"flags": EPHEMERAL}}
    await call(http, "POST", callback_url(emulator, private), json=deferral)
    assert private.original is not None
    to_private: dict[str, Any] = {
        "content": "re",
        "message_reference": {"message_id": private.original["id"]},
    }
    status, body = await call(http, "POST", url, json=to_private)
    assert (status, body["code"]) == (400, 50035)
    assert "message_reference" in body["errors"]
    to_private["message_reference"]["fail_if_not_exists"] = False
    status, body = await call(http, "POST", url, json=to_private)
    assert status == 200
    assert body["type"] == 0
    assert "message_reference" not in body
