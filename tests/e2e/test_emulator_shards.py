"""The emulator shards as Discord does: a guild's events reach only the shard that owns it,
`(guild_id >> 22) % shard_count`, and the IDENTIFYs Discord refuses are refused with its codes.

Driven over raw websockets (one per shard) and with a bare discord.py AutoShardedClient."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
import yarl

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.gateway import shard_of
from tests.e2e.discord_emulator.state import ALICE, BOT_ID, GUILD_ID, VOICE_CHANNEL_ID

#: One shard past GUILD_ID's: with two shards GUILD_ID is on shard 0 and this one on shard 1.
OTHER_GUILD = GUILD_ID + (1 << 22)
INTENTS = (1 << 0) | (1 << 7) | (1 << 9)  # guilds, voice states, guild messages


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "certs", shards=2) as emulator:
        emulator.add_guild(OTHER_GUILD)
        yield emulator


class Shard:
    """One raw gateway connection, identified with a shard, keeping what it is sent."""

    def __init__(self, emulator: Emulator, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.emulator = emulator
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                payload = json.loads(msg.data)
                if payload.get("op") == 0:
                    self.events.append(payload)
                    self.emulator.changes.notify()  # Tests wait on what a shard was sent.
        self.close_code = self.ws.close_code

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event["d"] for event in self.events if event["t"] == name]

    async def closed(self) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), 5)
        return self.close_code

    async def send(self, op: int, data: dict[str, Any]) -> None:
        await self.ws.send_json({"op": op, "d": data})


@asynccontextmanager
async def connected(
    emulator: Emulator, shard: list[Any] | None, *, wait_ready: bool = True
) -> AsyncIterator[Shard]:
    url = yarl.URL(emulator.gateway_url).with_query(v=10, encoding="json")
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        identify: dict[str, Any] = {"token": emulator.token, "intents": INTENTS, "properties": {}}
        if shard is not None:
            identify["shard"] = shard
        await ws.send_json({"op": 2, "d": identify})
        connection = Shard(emulator, ws)
        if wait_ready:
            await emulator.wait_for(lambda: connection.named("READY"), within=5)
        try:
            yield connection
        finally:
            await ws.close()


async def test_gateway_bot_recommends_the_emulators_shard_count(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{emulator.base_url}/gateway/bot") as response:
        assert response.status == 200
        body = await response.json()
    assert body["shards"] == 2
    assert body["url"] == emulator.gateway_url


def test_the_two_guilds_land_on_different_shards() -> None:
    assert (shard_of(GUILD_ID, 2), shard_of(OTHER_GUILD, 2)) == (0, 1)


async def test_each_shard_is_told_only_of_its_own_guilds(emulator: Emulator) -> None:
    async with connected(emulator, [0, 2]) as zero, connected(emulator, [1, 2]) as one:
        await emulator.wait_for(lambda: zero.named("GUILD_CREATE") and one.named("GUILD_CREATE"))
        (ready0,), (ready1,) = zero.named("READY"), one.named("READY")
        assert (ready0["shard"], ready1["shard"]) == ([0, 2], [1, 2])
        assert [g["id"] for g in ready0["guilds"]] == [str(GUILD_ID)]
        assert [g["id"] for g in ready1["guilds"]] == [str(OTHER_GUILD)]
        assert [g["id"] for g in zero.named("GUILD_CREATE")] == [str(GUILD_ID)]
        assert [g["id"] for g in one.named("GUILD_CREATE")] == [str(OTHER_GUILD)]
        other = emulator.guild(OTHER_GUILD)
        (channel,) = [c for c in one.named("GUILD_CREATE")[0]["channels"] if c["type"] == 0]
        assert int(channel["id"]) == other.text_channel_id != emulator.world.text_channel_id


async def test_interactions_messages_and_voice_states_reach_the_guilds_shard_only(
    emulator: Emulator,
) -> None:
    async with connected(emulator, [0, 2]) as zero, connected(emulator, [1, 2]) as one:
        await emulator.interact("speak", user_id=ALICE, text="first guild")
        await emulator.interact("speak", user_id=ALICE, text="second guild", guild_id=OTHER_GUILD)
        await emulator.send_message("hello second", author_id=ALICE, guild_id=OTHER_GUILD)
        other_voice = emulator.guild(OTHER_GUILD).voice_channel_id
        await emulator.member_voice(ALICE, other_voice, guild_id=OTHER_GUILD)
        await emulator.interact("speak", user_id=ALICE, text="from a DM", dm=True)
        await emulator.wait_for(lambda: len(one.named("VOICE_STATE_UPDATE")) == 1)
        await emulator.wait_for(lambda: len(zero.named("INTERACTION_CREATE")) == 2)

        def texts(shard: Shard) -> list[str]:
            return [i["data"]["options"][0]["value"] for i in shard.named("INTERACTION_CREATE")]

        assert texts(zero) == ["first guild", "from a DM"]  # DMs go to shard 0.
        assert texts(one) == ["second guild"]
        assert [m["guild_id"] for m in one.named("MESSAGE_CREATE")] == [str(OTHER_GUILD)]
        assert zero.named("MESSAGE_CREATE") == []
        (state,) = one.named("VOICE_STATE_UPDATE")
        assert (state["guild_id"], state["channel_id"]) == (str(OTHER_GUILD), str(other_voice))
        assert zero.named("VOICE_STATE_UPDATE") == []


async def test_a_voice_state_sent_on_a_shard_not_owning_the_guild_is_ignored(
    emulator: Emulator,
) -> None:
    async with connected(emulator, [0, 2]) as zero, connected(emulator, [1, 2]) as one:
        other_voice = emulator.guild(OTHER_GUILD).voice_channel_id
        wrong = {"guild_id": str(OTHER_GUILD), "channel_id": str(other_voice)}
        await zero.send(4, wrong | {"self_mute": False, "self_deaf": False})
        await emulator.wait_for(lambda: emulator.misrouted_voice_states)
        assert emulator.bot_voice_channel(OTHER_GUILD) is None
        right = {"guild_id": str(GUILD_ID), "channel_id": str(VOICE_CHANNEL_ID)}
        await zero.send(4, right | {"self_mute": False, "self_deaf": False})
        await emulator.wait_for(lambda: zero.named("VOICE_SERVER_UPDATE"))
        assert [s["guild_id"] for s in zero.named("VOICE_STATE_UPDATE")] == [str(GUILD_ID)]
        assert emulator.bot_voice_channel() == VOICE_CHANNEL_ID
        assert one.named("VOICE_STATE_UPDATE") == one.named("VOICE_SERVER_UPDATE") == []


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], ["0", 2], [True, 2]])
async def test_a_shard_out_of_range_or_malformed_is_invalid(
    emulator: Emulator, shard: list[Any]
) -> None:
    async with connected(emulator, shard, wait_ready=False) as refused:
        assert await refused.closed() == 4010
    assert refused.named("READY") == []


async def test_a_shard_count_unlike_the_connected_shards_is_invalid(emulator: Emulator) -> None:
    async with connected(emulator, [0, 2]):
        async with connected(emulator, [1, 3], wait_ready=False) as refused:
            assert await refused.closed() == 4010
        async with connected(emulator, None, wait_ready=False) as unsharded:
            assert await unsharded.closed() == 4010


async def test_too_few_shards_for_the_guilds_is_sharding_required(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "certs", shards=2, required_shards=2) as emulator:
        async with connected(emulator, None, wait_ready=False) as unsharded:
            assert await unsharded.closed() == 4011
        async with connected(emulator, [0, 1], wait_ready=False) as one_shard:
            assert await one_shard.closed() == 4011
        async with connected(emulator, [1, 2]) as enough:
            assert enough.named("READY")


async def test_a_second_identify_for_a_connected_shard_is_refused_until_it_leaves(
    emulator: Emulator,
) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(connected(emulator, [1, 2]))
        async with connected(emulator, [1, 2], wait_ready=False) as second:
            assert await second.closed() == 4005
        assert second.named("READY") == []
        await emulator.interact("speak", user_id=ALICE, text="still one", guild_id=OTHER_GUILD)
        await emulator.wait_for(lambda: first.named("INTERACTION_CREATE"))
    # The first connection is gone: the shard may be taken again.
    async with connected(emulator, [1, 2]) as again:
        assert [g["id"] for g in again.named("GUILD_CREATE")] == [str(OTHER_GUILD)]
    refused = [(data["shard"], code) for data, code in emulator.refused_identifies]
    assert refused == [([1, 2], 4005)]


@asynccontextmanager
async def sharded_client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> AsyncIterator[tuple[discord.AutoShardedClient, asyncio.Event]]:
    """A bare discord.py AutoShardedClient, started; the event is set on `on_ready`."""
    monkeypatch.setattr(discord.http.Route, "BASE", emulator.base_url)
    # Given a shard count, discord.py asks no gateway of `/gateway/bot`: it opens this one.
    gateway = yarl.URL(emulator.gateway_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", gateway)
    intents = discord.Intents.none()
    intents.guilds = intents.voice_states = True
    client = discord.AutoShardedClient(intents=intents, **options)
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    async def identify_at_once(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before each IDENTIFY but a process's first (Discord's
        identify rate limit, which the emulator does not enforce)."""

    client.event(on_ready)
    monkeypatch.setattr(client, "before_identify_hook", identify_at_once)
    runner = asyncio.create_task(client.start(emulator.token))
    try:
        yield client, ready
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)


async def test_discord_py_shards_as_gateway_bot_recommends_and_sees_every_guild(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sharded_client(emulator, monkeypatch) as (client, ready):
        await asyncio.wait_for(ready.wait(), 15)
        assert client.shard_count == 2
        assert sorted(g.id for g in client.guilds) == [GUILD_ID, OTHER_GUILD]
        shards = {g.id: g.shard_id for g in client.guilds}
        assert shards == {GUILD_ID: 0, OTHER_GUILD: 1}
        assert sorted(s.shard for s in emulator.gateway.live) == [(0, 2), (1, 2)]
        assert all(g.me.id == BOT_ID for g in client.guilds)


async def test_discord_py_retries_a_refused_shard_and_takes_it_once_it_is_free(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4005 is not one of the codes discord.py gives up on: a second process for a shard
    keeps identifying, and gets the shard when the first one's connection is gone."""
    holder = connected(emulator, [1, 2])
    await holder.__aenter__()
    try:
        async with sharded_client(emulator, monkeypatch, shard_count=2, shard_ids=[1]) as (
            client,
            ready,
        ):
            await emulator.wait_for(lambda: len(emulator.refused_identifies) >= 2, within=10)
            assert not ready.is_set()
            assert {code for _, code in emulator.refused_identifies} == {4005}
            await holder.__aexit__(None, None, None)  # The first process's connection ends.
            await asyncio.wait_for(ready.wait(), 15)
            assert [g.id for g in client.guilds] == [OTHER_GUILD]
    finally:
        await holder.__aexit__(None, None, None)


async def test_a_resumed_shard_keeps_receiving_only_its_own_guilds(emulator: Emulator) -> None:
    async with connected(emulator, [1, 2]) as first:
        (ready,) = first.named("READY")
        seq = max(event["s"] for event in first.events)
    url = yarl.URL(emulator.gateway_url).with_query(v=10, encoding="json")
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        assert (await ws.receive_json(timeout=5))["op"] == 10
        resume = {"token": emulator.token, "session_id": ready["session_id"], "seq": seq}
        await ws.send_json({"op": 6, "d": resume})
        resumed = Shard(emulator, ws)
        await emulator.wait_for(lambda: resumed.named("RESUMED"), within=5)
        await emulator.interact("speak", user_id=ALICE, text="not this shard's")
        await emulator.interact("speak", user_id=ALICE, text="this one's", guild_id=OTHER_GUILD)
        await emulator.wait_for(lambda: resumed.named("INTERACTION_CREATE"), within=5)
        (interaction,) = resumed.named("INTERACTION_CREATE")
        assert interaction["guild_id"] == str(OTHER_GUILD)
        assert emulator.gateway.shard_session(1) is not None
        await ws.close()
