"""DAVE, Discord's end-to-end voice encryption, made safe for the bot's voice.

Two gaps in discord.py 2.7.1 with davey 0.1.7 are closed here without forking either:

- `connect()` returns before the bot is in the call's MLS group, and discord.py sends frames
  unencrypted until it is, which every DAVE client drops: the start of the first clip is
  lost. `wait_for_dave` holds a clip until the session is ready (bounded, then plays anyway).
- davey merges its *latest* pending commit when the voice server announces one of the bot's
  own commits, even an earlier one (two proposals in one epoch, two commits sent, the first
  announced). The bot's group then differs from everyone else's: nobody can decrypt it, and
  the next proposal raises inside discord.py's voice websocket reader, which dies, leaving
  the bot silently inaudible. `DaveVoiceClient` compares the announced commit with the ones
  it sent, catches every failure of DAVE processing, and recovers as the protocol provides:
  op 31 (invalid commit/welcome), a reset session and a fresh key package so the group adds
  the bot again. Past `MAX_RECOVERIES` it leaves voice rather than stay in the call
  unheard: whoever was waiting is told, and the next message connects afresh (a new voice
  session and group; discord.py's own reconnect-by-close path leaves the channel too, and
  stalls against the emulator).

See docs/dave.md for the reproduction and the upstream report.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import ConnectionFlowState, VoiceConnectionState

from bot.locales import line

__all__ = [
    "DAVE_LOST",
    "DAVE_READY_WAIT",
    "MAX_RECOVERIES",
    "DaveVoiceClient",
    "dave_ready",
    "wait_for_dave",
]

log = logging.getLogger(__name__)

#: Told to members whose messages were waiting when the bot left because DAVE failed.
DAVE_LOST = line("playback.dave_lost")
#: How long a clip waits for the bot to join the call's MLS group before it plays anyway.
DAVE_READY_WAIT = 2.0
#: Rejoins of the MLS group (op 31) per `RECOVERY_WINDOW` before the bot leaves voice.
MAX_RECOVERIES = 3
RECOVERY_WINDOW = 60.0
_POLL = 0.01
_PROPOSALS, _COMMIT_WELCOME, _ANNOUNCE_COMMIT, _WELCOME = 27, 28, 29, 30


def dave_ready(voice: object) -> bool:
    """Whether a frame sent now reaches the call's members: DAVE is off for the call, or
    the bot's session is in the group. Anything that is not a discord.py voice client (a
    test double) counts as ready."""
    connection = getattr(voice, "_connection", None)
    if connection is None or not getattr(connection, "dave_protocol_version", 0):
        return True
    return bool(getattr(connection, "can_encrypt", True))


async def wait_for_dave(voice: object, guild_id: int, within: float = DAVE_READY_WAIT) -> bool:
    """Wait until `dave_ready`, at most `within` s; False (and a log line) if it never was."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not dave_ready(voice):
        if loop.time() >= deadline:
            log.warning(
                "Guild %s: not in the call's end-to-end encryption group after %.1f s; "
                "playing anyway (members may miss the start)",
                guild_id,
                within,
            )
            return False
        await asyncio.sleep(_POLL)
    return True


class _Recovery:
    """What one connection sent and how often it had to rejoin its group."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []  # Op 28 payloads since the last commit or welcome.
        self.attempts: list[float] = []
        self.transition_id = 0


def _recovery(state: Any) -> _Recovery:
    recovery = getattr(state, "_tts_dave_recovery", None)
    if not isinstance(recovery, _Recovery):
        recovery = _Recovery()
        state._tts_dave_recovery = recovery
    return recovery


class DaveVoiceWebSocket(DiscordVoiceWebSocket):
    """discord.py's voice websocket, with DAVE failures caught and recovered from."""

    async def send_binary(self, opcode: int, data: bytes) -> None:
        if opcode == _COMMIT_WELCOME:
            _recovery(self._connection).sent.append(bytes(data))
        await super().send_binary(opcode, data)

    async def received_binary_message(self, msg: bytes) -> None:
        recovery = _recovery(self._connection)
        op = msg[2] if len(msg) > 2 else -1
        if op in (_ANNOUNCE_COMMIT, _WELCOME) and len(msg) >= 5:
            recovery.transition_id = struct.unpack_from(">H", msg, 3)[0]
        if op == _ANNOUNCE_COMMIT and _stale_own_commit(recovery.sent, msg[5:]):
            # davey would merge the later commit it holds, not this one.
            self.seq_ack = struct.unpack_from(">H", msg, 0)[0]
            await self._recover("the voice server announced an earlier commit of ours")
            return
        try:
            await super().received_binary_message(msg)
        except Exception as exc:  # davey raises ValueError; nothing may kill the reader.
            session = getattr(self._connection, "dave_session", None)
            if op == _PROPOSALS and session is not None and not session.ready:
                # Waiting to be added (after a rejoin): the group's proposals are not ours
                # to commit, as the protocol has a member without a group ignore them.
                log.debug("DAVE proposals ignored while waiting to be added: %s", exc)
                return
            await self._recover(f"op {op} failed: {type(exc).__name__}: {exc}")
            return
        if op in (_ANNOUNCE_COMMIT, _WELCOME):
            recovery.sent.clear()

    async def _recover(self, why: str) -> None:
        state = self._connection
        recovery = _recovery(state)
        recovery.sent.clear()
        now = time.monotonic()
        recovery.attempts = [t for t in recovery.attempts if now - t < RECOVERY_WINDOW]
        recovery.attempts.append(now)
        guild_id = getattr(state, "server_id", None)
        if len(recovery.attempts) > MAX_RECOVERIES:
            recovery.attempts.clear()
            await self._give_up(f"DAVE failed again ({why}) after {MAX_RECOVERIES} rejoins")
            return
        log.warning(
            "Guild %s: DAVE failed (%s); asking the voice server to add the bot again "
            "(attempt %d of %d)",
            guild_id,
            why,
            len(recovery.attempts),
            MAX_RECOVERIES,
        )
        try:
            await state._recover_from_invalid_commit(recovery.transition_id)
        except Exception as exc:
            await self._give_up(f"DAVE rejoin failed ({type(exc).__name__}: {exc})")

    async def _give_up(self, why: str) -> None:
        """Leave rather than stay in the call unheard: the player tells whoever was waiting,
        and the next message connects afresh (a new voice session, a new group)."""
        state = self._connection
        log.error(
            "Guild %s: %s; leaving voice, members with waiting messages are told",
            getattr(state, "server_id", None),
            why,
        )
        client = getattr(state, "voice_client", None)
        if isinstance(client, DaveVoiceClient):
            client.dave_gave_up = True
        await state.disconnect()


def _stale_own_commit(sent: list[bytes], announced: bytes) -> bool:
    """The announced commit is one the bot sent, but not the last one it sent."""
    if len(sent) < 2 or sent[-1].startswith(announced):
        return False
    return any(payload.startswith(announced) for payload in sent[:-1])


class _DaveConnectionState(VoiceConnectionState):
    async def _connect_websocket(self, resume: bool) -> DiscordVoiceWebSocket:
        seq_ack = -1
        if self.ws is not discord.utils.MISSING:
            seq_ack = self.ws.seq_ack
        ws = await DaveVoiceWebSocket.from_connection_state(
            self, resume=resume, hook=self.hook, seq_ack=seq_ack
        )
        self.state = ConnectionFlowState.websocket_connected
        return ws


class DaveVoiceClient(discord.VoiceClient):
    """discord.py's voice client, whose DAVE handling survives davey's failures."""

    #: Set when DAVE could not be recovered and the bot left: members are told why.
    dave_gave_up: bool = False

    def create_connection_state(self) -> VoiceConnectionState:
        return _DaveConnectionState(self)
