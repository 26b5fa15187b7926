"""The gateway websocket, speaking v10 JSON with zlib-stream transport compression.

discord.py 2.7 asks for `compress=zlib-stream` (or `zstd-stream` when a zstd module is
installed): one compressor per connection, each message flushed with Z_SYNC_FLUSH so its
frame ends in 00 00 ff ff, which is how the client knows a message is complete.

Sharding as Discord does it: IDENTIFY's `shard` is `[shard_id, shard_count]`, and a guild's
events (READY's guild list, GUILD_CREATE, messages, interactions, voice) go only to the shard
`(guild_id >> 22) % shard_count`; events of no guild (DMs) to shard 0. Refused: a shard that is
malformed, out of range or counted differently from the shards already connected (4010
Invalid shard), too few shards for the emulator's `required_shards` (4011 Sharding required),
and a second IDENTIFY for a shard that is already connected. Discord documents no close code
for that last one (it lets both sessions run and both get the shard's events): the emulator
refuses it with 4005 Already authenticated, the documented code closest in meaning ("more than
one identify"), which discord.py treats as retryable, so a restarted process takes its shard
over once the old connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.e2e.discord_emulator.state import APP_ID, BOT_ID, PRIVILEGED_INTENTS

if TYPE_CHECKING:
    from tests.e2e.discord_emulator.server import Emulator

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE, RESUME, RECONNECT = 0, 1, 2, 3, 4, 6, 7
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
HEARTBEAT_INTERVAL_MS = 41_250
INTENT_GUILDS = 1 << 0
ALREADY_AUTHENTICATED, INVALID_SHARD, SHARDING_REQUIRED = 4005, 4010, 4011


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's sharding formula: which shard receives a guild's events."""
    return (guild_id >> 22) % shard_count


def _shard(data: dict[str, Any]) -> tuple[int, int] | None:
    """IDENTIFY's `shard` as (id, count); (0, 1) when absent; None when malformed."""
    raw = data.get("shard")
    if raw is None:
        return (0, 1)
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    shard_id, count = raw
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in raw):
        return None
    if not (count >= 1 and 0 <= shard_id < count):
        return None
    return shard_id, count


class GatewaySession:
    """One connection: its compressor, sequence and the events it was sent (for RESUME)."""

    def __init__(self, emulator: Emulator, ws: web.WebSocketResponse, compress: str | None):
        self.emu = emulator
        self.ws = ws
        self.compressor = zlib.compressobj() if compress == "zlib-stream" else None
        self.session_id = ""
        self.intents = 0
        self.seq = 0
        self.sent: list[dict[str, Any]] = []
        self.identified = False
        self.received: list[dict[str, Any]] = []
        #: (shard_id, shard_count) from IDENTIFY; (0, 1) unsharded.
        self.shard = (0, 1)

    def owns(self, guild_id: int | None) -> bool:
        """Whether this connection receives the guild's events (None: DMs, on shard 0)."""
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload)
        if self.compressor is None:
            await self.ws.send_str(data)
            return
        frame = self.compressor.compress(data.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        await self.ws.send_bytes(frame)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.sent.append(payload)
        if not self.ws.closed:
            await self.send(payload)


class Gateway:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.sessions: list[GatewaySession] = []
        #: Sessions by id, kept after their socket closes so RESUME can find them.
        self.by_id: dict[str, GatewaySession] = {}

    @property
    def live(self) -> list[GatewaySession]:
        return [s for s in self.sessions if s.identified and not s.ws.closed]

    async def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        """Send an event to the connections of the shard that owns `guild_id` (None: an event
        of no guild, such as a DM, which Discord sends to shard 0)."""
        for session in self.live:
            if session.owns(guild_id):
                await session.dispatch(event, data)

    def shard_session(self, shard_id: int) -> GatewaySession | None:
        """The live connection of one shard, if it is connected."""
        return next((s for s in self.live if s.shard[0] == shard_id), None)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=4096 * 1024, autoping=True)
        await ws.prepare(request)
        if request.query.get("v") != "10" or request.query.get("encoding", "json") != "json":
            await ws.close(code=4012, message=b"Invalid API version")
            return ws
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            # zstd-stream is what discord.py asks for when zstandard is installed; it is not
            # here, so refusing it loudly beats sending frames the client cannot read.
            await ws.close(code=4000, message=b"Unsupported compression")
            return ws
        session = GatewaySession(self.emu, ws, compress)
        self.sessions.append(session)
        await session.send({"op": HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Decode error")
                    break
                payload = json.loads(msg.data)
                session.received.append(payload)
                self.emu.changes.notify()
                await self._receive(session, payload)
        finally:
            self.emu.changes.notify()
        return ws

    async def _receive(self, session: GatewaySession, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            await session.send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(session, data or {})
        elif op == RESUME:
            await self._resume(session, data or {})
        elif not session.identified:
            await session.ws.close(code=4003, message=b"Not authenticated")
        elif op == VOICE_STATE:
            # discord.py records that it asked only after its send returns, so an answer in
            # microseconds is dropped (voice connect then hangs 20 s; leaving waits 20 s for a
            # confirmation it already got). Real Discord is never that fast: model the network.
            await asyncio.sleep(self.emu.gateway_latency)
            await self.emu.voice_state_from_bot(session, data or {})
            self.emu.changes.notify()
        elif op == PRESENCE:
            pass
        else:
            await session.ws.close(code=4001, message=b"Unknown opcode")

    async def _identify(self, session: GatewaySession, data: dict[str, Any]) -> None:
        self.emu.identifies.append(data)  # Refused ones too: tests look at what was asked.
        if session.identified:
            await session.ws.close(code=4005, message=b"Already authenticated")
            return
        if data.get("token") != self.emu.token:
            await session.ws.close(code=4004, message=b"Authentication failed")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            await session.ws.close(code=4013, message=b"Invalid intent(s)")
            return
        if intents & PRIVILEGED_INTENTS & ~self.emu.allowed_privileged_intents:
            await session.ws.close(code=4014, message=b"Disallowed intent(s)")
            return
        refusal = self._shard_refusal(_shard(data))
        if refusal is not None:
            code, reason = refusal
            self.emu.refused_identifies.append((data, code))
            await session.ws.close(code=code, message=reason)
            return
        session.shard = _shard(data) or (0, 1)
        session.intents = intents
        session.session_id = secrets.token_hex(16)
        session.identified = True
        self.by_id[session.session_id] = session
        world = self.emu.world
        owned = [w for w in self.emu.worlds.values() if session.owns(w.guild_id)]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**world.bot.user(), "verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(w.guild_id), "unavailable": True} for w in owned],
                "session_id": session.session_id,
                "resume_gateway_url": self.emu.gateway_url,
                "application": {"id": str(APP_ID), "flags": world.application()["flags"]},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": ["local"],
                "shard": list(session.shard),
            },
        )
        if intents & INTENT_GUILDS:
            for guild in owned:
                await session.dispatch("GUILD_CREATE", guild.guild_create())

    def _shard_refusal(self, shard: tuple[int, int] | None) -> tuple[int, bytes] | None:
        """Why Discord would refuse this IDENTIFY's shard (close code, reason), or None."""
        if shard is None:
            return INVALID_SHARD, b"Invalid shard"
        shard_id, count = shard
        if count < self.emu.required_shards:
            return SHARDING_REQUIRED, b"Sharding required"
        if any(s.shard[1] != count for s in self.live):
            return INVALID_SHARD, b"Invalid shard"
        if self.shard_session(shard_id) is not None:
            return ALREADY_AUTHENTICATED, b"Already authenticated"
        return None

    async def _resume(self, session: GatewaySession, data: dict[str, Any]) -> None:
        old = self.by_id.get(str(data.get("session_id")))
        if data.get("token") != self.emu.token:
            await session.ws.close(code=4004, message=b"Authentication failed")
            return
        if old is None or not isinstance(data.get("seq"), int):
            await session.send({"op": INVALID_SESSION, "d": False})
            return
        session.session_id, session.intents, session.seq = old.session_id, old.intents, old.seq
        session.sent, session.identified, session.shard = old.sent, True, old.shard
        self.by_id[session.session_id] = session
        for payload in [p for p in old.sent if p["s"] > data["seq"]]:
            await session.send(payload)
        await session.dispatch("RESUMED", {})

    async def close_all(self, code: int = 1001) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.ws.close(code=code), 1.0)

    def voice_state_ops(self) -> list[dict[str, Any]]:
        """Every opcode 4 the bot sent, in order."""
        return [p["d"] for s in self.sessions for p in s.received if p.get("op") == VOICE_STATE]


__all__ = ["BOT_ID", "Gateway", "GatewaySession"]
