"""The emulated voice server's DAVE, against davey clients alone (no bot): it refuses what
Discord refuses, and a group it runs decrypts what its members send."""

from __future__ import annotations

import struct

import aiohttp
import davey
import pytest

from tests.e2e.discord_emulator import Emulator, mls
from tests.e2e.discord_emulator.state import ALICE, BOB, BOT_ID, GUILD_ID, VOICE_CHANNEL_ID


async def test_a_voice_client_without_dave_is_refused_with_4017(emulator: Emulator) -> None:
    server = await emulator._voice_server(GUILD_ID)
    grant = server.grant(GUILD_ID, BOT_ID, "session")
    assert emulator.certificate is not None
    context = emulator.certificate.client_context()
    url = f"wss://{server.endpoint}/?v=8"
    identify = {
        "server_id": str(GUILD_ID),
        "user_id": str(BOT_ID),
        "session_id": "session",
        "token": grant.token,
    }
    async with aiohttp.ClientSession() as session, session.ws_connect(url, ssl=context) as ws:
        await ws.receive_json(timeout=5)  # HELLO
        await ws.send_json({"op": 0, "d": identify | {"max_dave_protocol_version": 0}})
        closing = await ws.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4017)


def _package(user_id: int) -> bytes:
    return bytes(davey.DaveSession(1, user_id, VOICE_CHANNEL_ID).get_serialized_key_package())


def test_a_key_package_is_read_with_its_credential_lifetime_and_signatures() -> None:
    package = mls.read_key_package(_package(ALICE))
    assert package.user_id == ALICE
    assert (package.leaf.not_before, package.leaf.not_after) == (0, mls.LIFETIME_MAX)


def test_a_key_package_with_a_broken_signature_is_refused() -> None:
    data = bytearray(_package(ALICE))
    data[-3] ^= 0x01  # Inside the key package's own signature.
    with pytest.raises(mls.MlsError, match="signature"):
        mls.read_key_package(bytes(data))


async def test_a_group_the_server_runs_lets_its_members_decrypt_each_other(
    emulator: Emulator,
) -> None:
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    alice, bob = emulator.listeners[ALICE], emulator.listeners[BOB]
    await emulator.wait_for(lambda: alice.in_group and bob.in_group, within=5)
    group = emulator.current_voice[GUILD_ID].dave.groups[VOICE_CHANNEL_ID]
    assert sorted(u for u in group.leaves if u) == [ALICE, BOB]
    assert group.epoch == 1
    assert group.refused == [] or all("epoch" in why for why in group.refused)
    frame = alice.session.encrypt_opus(b"\xfc" + bytes(40))
    assert frame.endswith(b"\xfa\xfa")
    assert bob.session.decrypt(ALICE, davey.MediaType.audio, frame) == b"\xfc" + bytes(40)


async def test_a_member_who_leaves_is_removed_by_the_next_commit(emulator: Emulator) -> None:
    await emulator.member_voice(ALICE, VOICE_CHANNEL_ID)
    await emulator.member_voice(BOB, VOICE_CHANNEL_ID)
    alice, bob = emulator.listeners[ALICE], emulator.listeners[BOB]
    await emulator.wait_for(lambda: alice.in_group and bob.in_group, within=5)
    group = emulator.current_voice[GUILD_ID].dave.groups[VOICE_CHANNEL_ID]
    await emulator.member_voice(BOB, None)
    await emulator.wait_for(lambda: group.epoch == 2, within=5)
    assert [u for u in group.leaves if u] == [ALICE]
    assert struct.unpack(">Q", group.group_id)[0] == VOICE_CHANNEL_ID
