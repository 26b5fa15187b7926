"""A voice server: the voice gateway (v8, over TLS) and its UDP media socket.

With `dave_version` 1 (the default, as Discord requires since March 2026) the server runs
DAVE (`dave`): a client without it is refused (4017), and the bot's frames reach the
members' simulated clients (`listeners`), each decrypting them with its own MLS group state.
With `dave_version` 0 the call is transport-encrypted only, as Discord runs a call some
member cannot do DAVE in, and what the server receives is what is heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMsgType, web

from tests.e2e.discord_emulator import dave, rtp

if TYPE_CHECKING:
    from tests.e2e.discord_emulator.certs import Certificate
    from tests.e2e.discord_emulator.listeners import Listener
    from tests.e2e.discord_emulator.server import Emulator

IDENTIFY, SELECT_PROTOCOL, READY, HEARTBEAT, SESSION_DESCRIPTION, SPEAKING = 0, 1, 2, 3, 4, 5
HEARTBEAT_ACK, RESUME, HELLO, RESUMED, CLIENT_CONNECT = 6, 7, 8, 9, 11
#: Seconds the emulated network takes to carry an IP discovery answer back.
DISCOVERY_DELAY = 0.005


@dataclass
class VoiceGrant:
    """What the main gateway told the bot (VOICE_SERVER_UPDATE) and the voice server expects."""

    guild_id: int
    user_id: int
    session_id: str
    token: str


@dataclass
class VoiceConnection:
    grant: VoiceGrant
    ws: web.WebSocketResponse
    ssrc: int
    seq: int = 0
    mode: str | None = None
    secret_key: bytes | None = None
    speaking: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    dave: BotClient | None = None

    async def send(self, op: int, data: Any) -> None:
        self.seq += 1
        await self.ws.send_str(json.dumps({"op": op, "d": data, "seq": self.seq}))


class BotClient:
    """The bot as a DAVE participant: its voice websocket, `latency` seconds away."""

    def __init__(self, connection: VoiceConnection, channel_id: int, latency: float) -> None:
        self.connection = connection
        self.user_id = connection.grant.user_id
        self.channel_id = channel_id
        self.latency = latency
        self._outbox: asyncio.Queue[tuple[float, int, Any, bool]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def send_json(self, op: int, data: dict[str, Any]) -> None:
        self._outbox.put_nowait((_due(self.latency), op, data, False))

    async def send_binary(self, op: int, payload: bytes) -> None:
        self._outbox.put_nowait((_due(self.latency), op, payload, True))

    async def _run(self) -> None:
        while True:
            due, op, data, binary = await self._outbox.get()
            await _until(due)
            connection = self.connection
            if connection.ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                if binary:
                    connection.seq += 1
                    header = struct.pack(">HB", connection.seq & 0xFFFF, op)
                    await connection.ws.send_bytes(header + data)
                else:
                    await connection.send(op, data)

    def close(self) -> None:
        self._task.cancel()


def _due(latency: float) -> float:
    """When a message sent now arrives: messages are in flight together, in order."""
    return asyncio.get_running_loop().time() + latency


async def _until(due: float) -> None:
    delay = due - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: VoiceServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server.datagram(data, addr)


class VoiceServer:
    """One endpoint. `identify_delay` holds back READY, like a slow or overloaded server."""

    def __init__(self, emulator: Emulator, certificate: Certificate) -> None:
        self.emu = emulator
        self.certificate = certificate
        self.grants: dict[str, VoiceGrant] = {}
        self.connections: list[VoiceConnection] = []
        self.identify_delay = 0.0
        self.dave = dave.DaveServer(emulator.changes.notify)
        self.listeners: list[Listener] = []
        #: Clients the SFU forwards frames to although they are not in the call (a test
        #: proving that a client outside the group decrypts nothing).
        self.eavesdroppers: list[Listener] = []
        self.port = 0
        self.udp_port = 0
        self._runner: web.AppRunner | None = None
        self._udp: _Udp | None = None
        self._streams: dict[int, rtp.OpusStream] = {}

    @property
    def dave_version(self) -> int:
        """1: DAVE, as Discord requires; 0: a call Discord runs with transport encryption
        only. The emulator's, as of each handshake."""
        return self.emu.dave_version

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", 0, ssl_context=self.certificate.server_context()
        )
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=("127.0.0.1", 0)
        )
        self._udp = protocol
        assert protocol.transport is not None
        self.udp_port = protocol.transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        await self.dave.stop()
        for connection in self.connections:
            if connection.dave is not None:
                connection.dave.close()
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.ws.close(code=1001), 1.0)
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def add_listener(self, listener: Listener) -> None:
        """A member's client connects to this server and its channel's DAVE group."""
        listener.reset()  # A new server, a new call: nothing of the old group is kept.
        listener.server = self.dave
        self.listeners.append(listener)
        await self.dave.join(listener, listener.channel_id)

    async def remove_listener(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
            await self.dave.leave(listener)
        listener.server = None

    def grant(self, guild_id: int, user_id: int, session_id: str) -> VoiceGrant:
        grant = VoiceGrant(guild_id, user_id, session_id, secrets.token_hex(8))
        self.grants[grant.token] = grant
        return grant

    def revoke(self, guild_id: int) -> None:
        for token in [t for t, g in self.grants.items() if g.guild_id == guild_id]:
            del self.grants[token]

    async def close_guild(self, guild_id: int, code: int) -> None:
        for connection in self.connections:
            if connection.grant.guild_id == guild_id and not connection.ws.closed:
                await connection.ws.close(code=code)

    # -- websocket ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if request.query.get("v") != "8":
            await ws.close(code=4012, message=b"Unknown protocol version")
            return ws
        await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": 13_750}}))
        connection: VoiceConnection | None = None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    # DAVE's MLS messages: an opcode byte, then the message.
                    if connection is not None and connection.dave is not None and msg.data:
                        await self.dave.binary(connection.dave, msg.data[0], msg.data[1:])
                    continue
                if msg.type is not WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                connection = await self._receive(ws, connection, payload)
                if connection is not None:
                    connection.received.append(payload)
                self.emu.changes.notify()
        finally:
            if connection is not None and connection.dave is not None and connection.ws is ws:
                await self.dave.leave(connection.dave)
                connection.dave.close()
                connection.dave = None
            self.emu.changes.notify()
        return ws

    async def _receive(
        self, ws: web.WebSocketResponse, connection: VoiceConnection | None, payload: dict[str, Any]
    ) -> VoiceConnection | None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK, "d": {"t": data.get("t")}}))
            return connection
        if op == IDENTIFY:
            return await self._identify(ws, data)
        if op == RESUME:
            grant = self.grants.get(str(data.get("token")))
            old = next((c for c in self.connections if c.grant is grant), None)
            if grant is None or old is None or data.get("session_id") != grant.session_id:
                await ws.close(code=4006, message=b"Session no longer valid")
                return None
            old.ws = ws
            await old.send(RESUMED, None)
            return old
        if connection is None:
            await ws.close(code=4003, message=b"Not authenticated")
            return None
        if op == SELECT_PROTOCOL:
            await self._select(connection, data)
        elif op == SPEAKING:
            connection.speaking.append(int(data.get("speaking", 0)))
        elif op == CLIENT_CONNECT:
            pass
        elif op in (dave.TRANSITION_READY, dave.INVALID_COMMIT_WELCOME):
            if connection.dave is not None:
                await self.dave.json(connection.dave, op, data)
        elif op is None or not isinstance(op, int) or op > 31:
            await ws.close(code=4001, message=b"Unknown opcode")
        return connection

    async def _identify(
        self, ws: web.WebSocketResponse, data: dict[str, Any]
    ) -> VoiceConnection | None:
        grant = self.grants.get(str(data.get("token")))
        if (
            grant is None
            or data.get("server_id") != str(grant.guild_id)
            or data.get("user_id") != str(grant.user_id)
            or data.get("session_id") != grant.session_id
        ):
            await ws.close(code=4004, message=b"Authentication failed")
            return None
        if self.dave_version and int(data.get("max_dave_protocol_version") or 0) < 1:
            await ws.close(code=4017, message=b"E2EE/DAVE protocol required")
            return None
        if self.identify_delay:
            await asyncio.sleep(self.identify_delay)
        connection = VoiceConnection(grant, ws, ssrc=secrets.randbits(31) + 1)
        self.connections.append(connection)
        await connection.send(
            READY,
            {
                "ssrc": connection.ssrc,
                "ip": "127.0.0.1",
                "port": self.udp_port,
                "modes": rtp.modes_available(),
                "experiments": [],
                "heartbeat_interval": 1,
            },
        )
        return connection

    async def _select(self, connection: VoiceConnection, data: dict[str, Any]) -> None:
        inner = data.get("data") or {}
        mode = inner.get("mode")
        if data.get("protocol") != "udp" or mode not in rtp.modes_available():
            await connection.ws.close(code=4016, message=b"Unknown encryption mode")
            return
        if not inner.get("address") or not isinstance(inner.get("port"), int):
            await connection.ws.close(code=4002, message=b"Failed to decode payload")
            return
        connection.mode = mode
        connection.secret_key = secrets.token_bytes(32)
        await connection.send(
            SESSION_DESCRIPTION,
            {
                "mode": mode,
                "secret_key": list(connection.secret_key),
                "audio_codec": "opus",
                "video_codec": None,
                "media_session_id": secrets.token_hex(16),
                "dave_protocol_version": self.dave_version,
            },
        )
        state = self.emu.guild(connection.grant.guild_id).voice_states.get(connection.grant.user_id)
        if self.dave_version and state is not None and state.channel_id is not None:
            if connection.dave is not None:
                await self.dave.leave(connection.dave)
                connection.dave.close()
            connection.dave = BotClient(connection, state.channel_id, self.emu.dave_latency)
            await self.dave.join(connection.dave, state.channel_id)

    # -- UDP ------------------------------------------------------------------------------

    def datagram(self, data: bytes, addr: tuple[Any, int]) -> None:
        if len(data) == 74 and data[:4] == b"\x00\x01\x00\x46":
            (ssrc,) = struct.unpack_from(">I", data, 4)
            answer = bytearray(74)
            struct.pack_into(">HHI", answer, 0, 2, 70, ssrc)
            address = str(addr[0]).encode()
            answer[8 : 8 + len(address)] = address
            struct.pack_into(">H", answer, 72, addr[1])
            loop = asyncio.get_running_loop()
            loop.call_later(DISCOVERY_DELAY, self._send, bytes(answer), addr)
            return
        if len(data) < 12:
            return
        (ssrc,) = struct.unpack_from(">I", data, 8)
        connection = next((c for c in self.connections if c.ssrc == ssrc), None)
        if connection is None or connection.secret_key is None or connection.mode is None:
            return  # Discord drops media from unknown or not yet described SSRCs.
        guild_id, user_id = connection.grant.guild_id, connection.grant.user_id
        state = self.emu.guild(guild_id).voice_states.get(user_id)
        if state is not None and state.suppress:  # On a Stage, in the audience: not heard.
            audio = self.emu.unheard_audio_for(guild_id)
        else:
            audio = self.emu.audio_for(guild_id)
        try:
            packet = rtp.decrypt(connection.mode, connection.secret_key, data)
        except rtp.RtpError as exc:
            audio.problems.append(str(exc))
            return
        if connection.dave is not None:
            opened = self._through_dave(connection.dave, packet, audio)
            if opened is None:
                return
            packet = opened
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = rtp.OpusStream(ssrc)
        stream.feed(packet, audio)
        self.emu.changes.notify()

    def _through_dave(
        self, sender: BotClient, packet: rtp.RtpPacket, audio: rtp.ReceivedAudio
    ) -> rtp.RtpPacket | None:
        """The SFU forwards the frame to every client in the sender's channel; it counts as
        heard (in `audio`) with the Opus the first of them decrypted."""
        if packet.opus == rtp.OPUS_SILENCE:  # DAVE passes Opus silence through as it is.
            for listener in self.listeners:
                if listener.channel_id == sender.channel_id:
                    listener.hear(packet)
            return packet
        for outsider in self.eavesdroppers:
            outsider.hear(packet)
        opened: bytes | None = None
        listening = [m for m in self.listeners if m.channel_id == sender.channel_id]
        for listener in listening:
            opus = listener.hear(packet)
            if opened is None:
                opened = opus
        if opened is None:
            if listening:
                audio.problems.append(f"packet {packet.sequence}: no member could decrypt it")
            return None
        return rtp.RtpPacket(packet.sequence, packet.timestamp, packet.ssrc, packet.nonce, opened)

    def _send(self, data: bytes, addr: tuple[Any, int]) -> None:
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.sendto(data, addr)
